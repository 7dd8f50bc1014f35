"""Attack: forge forwarding headers to escape a rate limit or to log someone else's IP
(ASVS 4.1.3, 15.3.4). Refused: only a configured proxy's headers are believed, and
then only the right-most address the proxies did not add."""

from __future__ import annotations

import httpx
import pytest

from bastion.testing import capture_events
from tests.conftest import AppMaker

SPOOFS = [
    {"X-Forwarded-For": "198.51.100.1"},
    {"X-Forwarded-For": "198.51.100.2, 10.0.0.1"},
    {"Forwarded": "for=198.51.100.3"},
    {"Forwarded": 'for="[2001:db8::1]:4711"'},
    {"X-Real-IP": "198.51.100.4"},
]


async def test_spoofed_headers_from_an_untrusted_peer_change_neither_key_nor_log(
    make: AppMaker,
) -> None:
    app = await make.app(rate_limit_enabled=True, rate_limits={"reads": "3/minute"})
    client = await make.client(app)  # peer 203.0.113.7, no trusted proxies

    with capture_events() as events:
        answers = [(await client.get("/tasks", headers=h)).status_code for h in SPOOFS]
        await app.state.security.events.drain()

    # One quota for every spoofed address: the peer's. 3 pass (401: no token), then 429.
    assert answers == [401, 401, 401, 429, 429]
    assert {e.ip_address for e in events} == {"203.0.113.7"}


@pytest.mark.parametrize(
    ("forwarded_header", "headers", "client_ip"),
    [
        ("x-forwarded-for", {"X-Forwarded-For": "198.51.100.1"}, "198.51.100.1"),
        # The left part is the client's own claim; the right-most untrusted hop is believed.
        ("x-forwarded-for", {"X-Forwarded-For": "192.0.2.66, 198.51.100.1"}, "198.51.100.1"),
        ("x-forwarded-for", {"X-Forwarded-For": "198.51.100.1, 10.0.0.5"}, "198.51.100.1"),
        (
            "forwarded",
            {"Forwarded": 'for=192.0.2.66, for="198.51.100.1:443";proto=https'},
            "198.51.100.1",
        ),
        ("forwarded", {"Forwarded": 'for="[2001:db8::7]"'}, "2001:db8::7"),
        # An obfuscated hop stops the walk: the proxy itself is the client.
        ("forwarded", {"Forwarded": "for=_hidden"}, "203.0.113.7"),
        ("x-real-ip", {"X-Real-IP": "198.51.100.1"}, "198.51.100.1"),
    ],
)
async def test_behind_a_trusted_proxy_the_right_most_untrusted_hop_is_the_client(
    make: AppMaker, forwarded_header: str, headers: dict[str, str], client_ip: str
) -> None:
    app = await make.app(
        rate_limit_enabled=True,
        rate_limits={"reads": "1/minute"},
        trusted_proxies=["203.0.113.7/32", "10.0.0.0/8"],
        forwarded_header=forwarded_header,
    )
    proxy = await make.client(app)
    other = {"forwarded": "Forwarded", "x-real-ip": "X-Real-IP"}.get(
        forwarded_header, "X-Forwarded-For"
    )
    other_value = "for=192.0.2.200" if forwarded_header == "forwarded" else "192.0.2.200"

    with capture_events() as events:
        first = await proxy.get("/tasks", headers=headers)
        second = await proxy.get("/tasks", headers=headers)
        other_client = await proxy.get("/tasks", headers={other: other_value})
        await app.state.security.events.drain()

    assert first.status_code == 401
    assert second.status_code == 429  # the same client, seen through the proxy
    assert other_client.status_code == 401  # another client has its own quota
    assert events[0].ip_address == client_ip


# What a client adds of its own, passed through untouched by a proxy that sets
# X-Forwarded-For: every one of them is ignored, whatever it says.
CLIENT_OWN_HEADERS = [
    {"Forwarded": "for=198.51.100.{n}"},
    {"Forwarded": 'for="[2001:db8::{n}]"'},
    {"X-Real-IP": "198.51.100.{n}"},
    {"X-Client-IP": "198.51.100.{n}"},
    {"True-Client-IP": "198.51.100.{n}"},
]


@pytest.mark.parametrize("spoof", CLIENT_OWN_HEADERS, ids=lambda h: next(iter(h)))
async def test_a_clients_own_forwarding_header_behind_the_proxy_does_not_choose_its_address(
    make: AppMaker, spoof: dict[str, str]
) -> None:
    """25 failed logins on 25 accounts, each with a fresh address of the client's
    choosing, through a proxy that appends the real address to X-Forwarded-For: the
    per-IP login quota (20/minute) still counts them as one client."""
    app = await make.app(
        rate_limit_enabled=True, trusted_proxies=["203.0.113.7/32"]
    )  # the default: the proxy sets X-Forwarded-For
    proxy = await make.client(app)

    with capture_events() as events:
        answers = []
        for n in range(25):
            forged = {name: value.format(n=n + 1) for name, value in spoof.items()}
            response = await proxy.post(
                "/auth/login",
                json={"email": f"victim{n}@example.com", "password": "Wrong password 12345"},
                headers={**forged, "X-Forwarded-For": "192.0.2.44"},
            )
            answers.append(response.status_code)
        await app.state.security.events.drain()

    assert answers[:20] == [401] * 20
    assert set(answers[20:]) == {429}
    assert {e.ip_address for e in events if e.endpoint == "/auth/login"} == {"192.0.2.44"}


async def test_ipv6_clients_share_a_quota_per_64(make: AppMaker) -> None:
    app = await make.app(rate_limit_enabled=True, rate_limits={"reads": "2/minute"})
    hosts = [await make.client(app, ip=f"2001:db8:1:2::{n}") for n in (1, 2, 3)]
    elsewhere = await make.client(app, ip="2001:db8:1:3::1")

    answers = [(await h.get("/healthz")).status_code for h in hosts]

    assert answers == [200, 200, 429]
    assert (await elsewhere.get("/healthz")).status_code == 200


async def test_without_limits_the_logged_ip_is_still_the_peers(client: httpx.AsyncClient) -> None:
    """Limits off (the default test settings): the logged IP is still the peer's."""
    with capture_events() as events:
        await client.get("/tasks", headers={"X-Forwarded-For": "198.51.100.1"})
    assert events[0].ip_address == "203.0.113.7"


# The hop shapes a client may send, each read by uvicorn as its address: plain, with a
# port, bracketed IPv6, and text no socket peer has.
HOPS = [
    "198.51.100.{i}",
    "198.51.100.{i}:8080",
    "[2001:db8::{i}]:443",
    "a{i}:x",
    "[198.51.100.{i}",
    "[::{i}]junk",
    "evil{i}",
]


@pytest.mark.parametrize("hop", HOPS)
async def test_an_address_the_server_took_from_a_header_nobody_trusts_is_not_believed(
    make: AppMaker, caplog: pytest.LogCaptureFixture, hop: str
) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default (``uvicorn app:app``)
    and puts its address in the scope: a client on the same host then picks its own
    address for every request. With no proxy trusted here, such an address is nobody's:
    the requests share one quota, log no chosen address, and the operator is told why."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    app = await make.app(rate_limit_enabled=True, rate_limits={"reads": "3/minute"})
    served = ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1")  # uvicorn's default
    local = await make.client(served, ip="127.0.0.1")
    chosen = [hop.format(i=i) for i in range(1, 6)]

    with capture_events() as events, caplog.at_level("WARNING", logger="bastion"):
        answers = [
            (await local.get("/tasks", headers={"X-Forwarded-For": address})) for address in chosen
        ]
        await app.state.security.events.drain()

    assert [a.status_code for a in answers] == [401, 401, 401, 429, 429]
    logged = {e.ip_address for e in events}
    assert logged == {None}, logged  # no chosen text, and no address of anyone's
    warnings = [
        r.getMessage() for r in caplog.records if "BASTION_TRUSTED_PROXIES" in r.getMessage()
    ]
    assert len(warnings) == 1  # once, not per request
    assert "--no-proxy-headers" in warnings[0]


async def test_a_client_naming_itself_in_the_header_keeps_its_address_and_quota(
    make: AppMaker,
) -> None:
    """Without a server that rewrote the peer, a client that writes its own address
    into X-Forwarded-For is still itself: it neither hides from the log nor joins
    another quota."""
    app = await make.app(rate_limit_enabled=True, rate_limits={"reads": "2/minute"})
    client = await make.client(app, ip="203.0.113.7")
    other = await make.client(app, ip="203.0.113.8")
    header = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}

    with capture_events() as events:
        mine = [(await client.get("/tasks", headers=header)).status_code for _ in range(3)]
        theirs = (await other.get("/tasks", headers={"X-Forwarded-For": "203.0.113.8"})).status_code
        await app.state.security.events.drain()

    assert mine == [401, 401, 429]
    assert theirs == 401  # a quota of its own
    assert {e.ip_address for e in events} == {"203.0.113.7", "203.0.113.8"}


async def test_a_local_client_without_forwarding_headers_keeps_its_address(
    make: AppMaker,
) -> None:
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    app = await make.app(rate_limit_enabled=True, rate_limits={"reads": "3/minute"})
    local = await make.client(
        ProxyHeadersMiddleware(app, trusted_hosts="127.0.0.1"), ip="127.0.0.1"
    )
    with capture_events() as events:
        await local.get("/tasks")
        await app.state.security.events.drain()
    assert {e.ip_address for e in events} == {"127.0.0.1"}
