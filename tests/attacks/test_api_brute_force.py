"""Attack: guess passwords online, and turn the defence against the user.

Refused on both backend sets: the per-account limit (429), the per account-and-IP delay
(401 with ``Retry-After``, else the same answer as a wrong password), the proof-of-work
challenge after repeated failures, the lock at the threshold with its admin unlock,
credential stuffing from one IP; and the user's own device cookie keeps working through
all of it (no malicious lockout, ASVS 6.1.1).
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx

from bastion.testing import capture_events
from tests.conftest import STRONG_PASSWORD, AppMaker
from tests.helpers import add_user, solve, user, without_request_id

WRONG = "not the password at all 0"
DEVICE_COOKIE = "__Host-bastion-device"


async def defended(make: AppMaker, **rules: Any) -> Any:
    values: dict[str, Any] = {
        "login_defence_enabled": True,
        "login_challenge_difficulty": 2000,
        "rate_limit_enabled": True,
        "rate_limits": {"login": "1000/minute", "login-ip": "1000/minute"},
    }
    values.update(rules)
    return await make.app(**values)


async def attempt(
    client: httpx.AsyncClient,
    email: str,
    password: str,
    *,
    device: str | None = None,
    solution: str | None = None,
) -> httpx.Response:
    body: dict[str, Any] = {"email": email, "password": password}
    if solution:
        body["altcha"] = solution
    headers = {"Cookie": f"{DEVICE_COOKIE}={device}"} if device else {}
    return await client.post("/auth/login", json=body, headers=headers)


def device_cookie(response: httpx.Response) -> str:
    header = response.headers["set-cookie"]
    assert header.startswith(f"{DEVICE_COOKIE}=")
    for attribute in ("Secure", "HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute.lower() in header.lower()
    assert "domain=" not in header.lower()
    return header.split(";", 1)[0].split("=", 1)[1]


async def test_past_the_per_account_limit_a_new_client_must_solve_a_challenge(
    make: AppMaker,
) -> None:
    app = await defended(make, rate_limits={"login": "3/minute", "login-ip": "1000/minute"})
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    await add_user(app, "bob@example.com")

    answers = [(await attempt(client, "alice@example.com", WRONG)).status_code for _ in range(3)]
    over = await attempt(client, "alice@example.com", STRONG_PASSWORD)
    bob = await attempt(client, "bob@example.com", STRONG_PASSWORD)
    solved = await attempt(
        client, "alice@example.com", STRONG_PASSWORD, solution=solve(over.json()["challenge"])
    )

    assert answers == [401, 401, 401]
    assert over.status_code == 401
    assert "challenge" in over.json()
    assert bob.status_code == 200  # another account's quota is its own
    assert solved.status_code == 200


async def test_an_attacker_cannot_keep_the_user_out_with_the_account_limit(
    make: AppMaker,
) -> None:
    """Many failures on the victim's email: no 429 block ever reaches the victim."""
    app = await defended(
        make,
        rate_limits={"login": "5/minute", "login-ip": "1000/minute"},
        rate_limit_block_after=3,
    )
    await add_user(app, "alice@example.com")
    attacker = await make.client(app, ip="198.51.100.66")
    home = await make.client(app, ip="192.0.2.10")
    cookie = device_cookie(await attempt(home, "alice@example.com", STRONG_PASSWORD))

    with capture_events() as events:
        for _ in range(20):
            await attempt(attacker, "alice@example.com", WRONG)
        with_cookie = await attempt(home, "alice@example.com", STRONG_PASSWORD, device=cookie)
        for _ in range(20):
            await attempt(attacker, "alice@example.com", WRONG)
    asked = await attempt(home, "alice@example.com", STRONG_PASSWORD)
    solved = await attempt(
        home, "alice@example.com", STRONG_PASSWORD, solution=solve(asked.json()["challenge"])
    )

    assert with_cookie.status_code == 200
    assert asked.status_code == 401
    assert solved.status_code == 200
    assert not [e for e in events if e.event_type == "suspicious_activity"]


async def test_a_crafted_solution_is_refused_not_an_error(make: AppMaker) -> None:
    app = await defended(make, login_challenge_after=1, login_delay_after=50)
    client = await make.client(app)
    await attempt(client, "alice@example.com", WRONG)
    crafted = [
        {"algorithm": "SHA-256", "challenge": "x", "number": 1, "salt": 5, "signature": "y"},
        {"algorithm": "SHA-256", "challenge": "x", "number": True, "salt": "s", "signature": "y"},
        {"algorithm": "MD5", "challenge": "x", "number": 10**30, "salt": "s", "signature": "y"},
        ["not", "an", "object"],
    ]
    for payload in crafted:
        encoded = base64.b64encode(json.dumps(payload).encode()).decode()
        response = await attempt(client, "alice@example.com", STRONG_PASSWORD, solution=encoded)
        assert response.status_code == 401, payload
        assert "challenge" in response.json()


async def test_a_locked_account_answers_a_right_guess_as_a_wrong_one(make: AppMaker) -> None:
    app = await defended(make, login_lock_after=3, login_delay_after=1, login_challenge_after=50)
    await add_user(app, "alice@example.com")
    for n in range(3):
        await attempt(await make.client(app, ip=f"198.51.100.{n}"), "alice@example.com", WRONG)

    right = await attempt(
        await make.client(app, ip="192.0.2.1"), "alice@example.com", STRONG_PASSWORD
    )
    wrong = await attempt(await make.client(app, ip="192.0.2.2"), "alice@example.com", WRONG)

    assert right.status_code == wrong.status_code == 401
    assert right.headers.get("Retry-After") == wrong.headers.get("Retry-After")
    assert without_request_id(right.json()) == without_request_id(wrong.json())


async def test_ipv6_addresses_of_one_64_share_the_stuffing_count(make: AppMaker) -> None:
    app = await defended(make, login_stuffing_accounts=3)
    hosts = [await make.client(app, ip=f"2001:db8:1:2::{n:x}") for n in range(1, 5)]

    answers = [
        (await attempt(host, f"leaked{n}@example.com", WRONG)).status_code
        for n, host in enumerate(hosts)
    ]

    assert answers == [401, 401, 401, 429]


async def test_the_login_ip_limit_counts_every_login_from_one_ip(make: AppMaker) -> None:
    app = await defended(make, rate_limits={"login": "1000/minute", "login-ip": "3/minute"})
    client = await make.client(app)
    emails = [f"user{i}@example.com" for i in range(4)]

    answers = [(await attempt(client, email, WRONG)).status_code for email in emails]

    assert answers == [401, 401, 401, 429]


async def test_repeated_failures_from_one_ip_wait_but_the_user_elsewhere_does_not(
    make: AppMaker,
) -> None:
    app = await defended(make, login_delay_after=3, login_delay_seconds=30)
    attacker = await make.client(app, ip="198.51.100.66")
    victim = await make.client(app, ip="192.0.2.10")
    await add_user(app, "alice@example.com")

    failures = [await attempt(attacker, "alice@example.com", WRONG) for _ in range(3)]
    with capture_events() as events:
        held = await attempt(attacker, "alice@example.com", STRONG_PASSWORD)  # right, but held
    wrong = await attempt(attacker, "nobody@example.com", WRONG)

    assert [f.status_code for f in failures] == [401, 401, 401]
    assert "Retry-After" not in failures[0].headers
    assert failures[-1].headers["Retry-After"] == "30"  # the third failure starts the wait
    assert held.status_code == 401
    assert 1 <= int(held.headers["Retry-After"]) <= 30
    assert [e.extra.get("outcome") for e in events] == ["delayed"]
    # The same answer as a wrong password, but for Retry-After.
    assert without_request_id(held.json()) == without_request_id(wrong.json())
    # The user, from their own network, is not held back.
    assert (await attempt(victim, "alice@example.com", STRONG_PASSWORD)).status_code == 200


async def test_delays_double_up_to_the_cap(make: AppMaker) -> None:
    app = await defended(
        make, login_delay_after=1, login_delay_seconds=1, login_delay_max_seconds=2
    )
    client = await make.client(app)
    first = await attempt(client, "alice@example.com", WRONG)
    assert first.headers["Retry-After"] == "1"
    await asyncio.sleep(1.05)
    second = await attempt(client, "alice@example.com", WRONG)
    assert second.headers["Retry-After"] == "2"
    await asyncio.sleep(2.05)
    third = await attempt(client, "alice@example.com", WRONG)
    assert third.headers["Retry-After"] == "2"  # capped


async def test_after_many_failures_a_new_client_must_solve_a_challenge(make: AppMaker) -> None:
    app = await defended(make, login_challenge_after=3, login_delay_after=50)
    await add_user(app, "alice@example.com")
    attackers = [await make.client(app, ip=f"198.51.100.{n}") for n in range(3)]
    for attacker in attackers:  # spread over IPs: only the account-wide count sees them
        assert (await attempt(attacker, "alice@example.com", WRONG)).status_code == 401
    user_client = await make.client(app, ip="192.0.2.10")

    with capture_events() as events:
        asked = await attempt(user_client, "alice@example.com", STRONG_PASSWORD)
    unknown = [await attempt(attackers[0], "ghost@example.com", WRONG) for _ in range(4)]

    assert asked.status_code == 401
    challenge = asked.json()["challenge"]
    assert set(challenge) == {"algorithm", "challenge", "maxnumber", "salt", "signature"}
    assert events[0].details == "login needs a proof-of-work challenge after repeated failures"
    assert events[0].extra["outcome"] == "challenge"  # what the metrics count
    # An unknown email is challenged alike: the challenge reveals no account.
    assert set(unknown[-1].json()["challenge"]) == set(challenge)

    solution = solve(challenge)
    allowed = await attempt(user_client, "alice@example.com", STRONG_PASSWORD, solution=solution)
    assert allowed.status_code == 200


async def test_a_solution_is_single_use_and_bound_to_its_account(make: AppMaker) -> None:
    app = await defended(make, login_challenge_after=1, login_delay_after=50)
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    await add_user(app, "bob@example.com")
    for email in ("alice@example.com", "bob@example.com"):
        await attempt(client, email, WRONG)
    challenge = (await attempt(client, "alice@example.com", WRONG)).json()["challenge"]
    solution = solve(challenge)

    for_bob = await attempt(client, "bob@example.com", STRONG_PASSWORD, solution=solution)
    wrong_password = await attempt(client, "alice@example.com", WRONG, solution=solution)
    replayed = await attempt(client, "alice@example.com", STRONG_PASSWORD, solution=solution)
    forged = await attempt(
        client, "alice@example.com", STRONG_PASSWORD, solution=base64.b64encode(b"{}").decode()
    )

    assert "challenge" in for_bob.json()  # alice's solution does not open bob's account
    assert wrong_password.status_code == 401
    assert "challenge" not in wrong_password.json()  # solved: the password was checked
    assert "challenge" in replayed.json()  # used once already
    assert "challenge" in forged.json()


async def test_the_lock_holds_strangers_out_and_an_admin_unlocks(make: AppMaker) -> None:
    app = await defended(make, login_lock_after=4, login_challenge_after=50, login_delay_after=50)
    client = await make.client(app)
    admin = await user(client, app, "admin@example.com", role="admin")
    account = await add_user(app, "alice@example.com")

    with capture_events() as events:
        for _ in range(4):
            await attempt(client, "alice@example.com", WRONG)
        await app.state.security.events.drain()
    locked = await attempt(client, "alice@example.com", STRONG_PASSWORD)
    wrong = await attempt(client, "alice@example.com", WRONG)
    listed = await client.get("/admin/users", headers=admin["auth"])

    [event] = [e for e in events if e.event_type == "account_locked"]
    assert event.user_id == str(account.id)
    assert locked.status_code == 401
    assert "Retry-After" not in locked.headers
    assert without_request_id(locked.json()) == without_request_id(wrong.json())
    [row] = [u for u in listed.json()["items"] if u["email"] == "alice@example.com"]
    assert row["locked_at"] is not None

    with capture_events() as events:
        unlocked = await client.post(f"/admin/users/{account.id}/unlock", headers=admin["auth"])
    assert unlocked.status_code == 204
    assert [e.event_type for e in events] == ["account_unlocked"]
    assert (await attempt(client, "alice@example.com", STRONG_PASSWORD)).status_code == 200


async def test_the_users_device_cookie_gets_through_challenge_delay_and_lock(
    make: AppMaker,
) -> None:
    app = await defended(make, login_lock_after=6, login_challenge_after=2, login_delay_after=2)
    await add_user(app, "alice@example.com")
    home = await make.client(app, ip="192.0.2.10")
    first = await attempt(home, "alice@example.com", STRONG_PASSWORD)
    cookie = device_cookie(first)
    # The attacker fails from the user's own network too, past every threshold.
    attacker = await make.client(app, ip="192.0.2.10")
    for _ in range(6):
        await attempt(attacker, "alice@example.com", WRONG)

    without = await attempt(home, "alice@example.com", STRONG_PASSWORD)
    with_cookie = await attempt(home, "alice@example.com", STRONG_PASSWORD, device=cookie)
    stolen_for_bob = await attempt(home, "bob@example.com", WRONG, device=cookie)

    assert without.status_code == 401
    assert with_cookie.status_code == 200
    assert device_cookie(with_cookie) != cookie  # a fresh one each login
    assert stolen_for_bob.status_code == 401


async def test_a_device_cookie_that_keeps_failing_waits_too(make: AppMaker) -> None:
    app = await defended(make, login_delay_after=2, login_delay_seconds=60)
    await add_user(app, "alice@example.com")
    client = await make.client(app)
    cookie = device_cookie(await attempt(client, "alice@example.com", STRONG_PASSWORD))

    failures = [await attempt(client, "alice@example.com", WRONG, device=cookie) for _ in range(2)]
    held = await attempt(client, "alice@example.com", STRONG_PASSWORD, device=cookie)

    assert failures[-1].headers["Retry-After"] == "60"
    assert held.status_code == 401
    assert "Retry-After" in held.headers


async def test_a_success_resets_the_accounts_counters(make: AppMaker) -> None:
    app = await defended(make, login_delay_after=3, login_challenge_after=3)
    await add_user(app, "alice@example.com")
    client = await make.client(app)

    for _ in range(2):
        await attempt(client, "alice@example.com", WRONG)
    assert (await attempt(client, "alice@example.com", STRONG_PASSWORD)).status_code == 200
    again = [await attempt(client, "alice@example.com", WRONG) for _ in range(2)]

    assert all("Retry-After" not in r.headers for r in again)
    assert all("challenge" not in r.json() for r in again)


async def test_credential_stuffing_from_one_ip_is_blocked_and_raised(make: AppMaker) -> None:
    app = await defended(make, login_stuffing_accounts=3, login_stuffing_block_seconds=600)
    await add_user(app, "victim@example.com")
    stuffer = await make.client(app, ip="198.51.100.99")
    other = await make.client(app, ip="192.0.2.10")

    with capture_events() as events:
        for n in range(3):
            await attempt(stuffer, f"leaked{n}@example.com", WRONG)
        blocked = await attempt(stuffer, "victim@example.com", STRONG_PASSWORD)

    [raised] = [e for e in events if e.event_type == "suspicious_activity"]
    outcomes = [e.extra.get("outcome") for e in events if e.event_type == "auth_failure"]
    assert outcomes == ["failure", "failure", "failure", "blocked"]
    assert raised.ip_address == "198.51.100.99"
    assert "3 accounts" in raised.details
    assert blocked.status_code == 429
    assert blocked.json()["violated-policies"] == ["credential-stuffing"]
    assert 500 < int(blocked.headers["Retry-After"]) <= 600
    assert (await attempt(other, "victim@example.com", STRONG_PASSWORD)).status_code == 200


async def test_no_secret_reaches_the_events_of_the_defence(make: AppMaker) -> None:
    app = await defended(make, login_challenge_after=1, login_delay_after=1)
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    with capture_events() as events:
        first = await attempt(client, "alice@example.com", STRONG_PASSWORD)
        await attempt(client, "alice@example.com", WRONG)
        await attempt(client, "alice@example.com", WRONG)
    text = json.dumps([e.__dict__ for e in events], default=str)
    assert WRONG not in text
    assert STRONG_PASSWORD not in text
    assert device_cookie(first) not in text
