"""The client address: forwarding headers believed only from trusted proxies."""

from __future__ import annotations

import pytest

from bastion.net import ForwardingHeader, TrustedProxies, forwarded_for, rate_partition


@pytest.mark.parametrize(
    ("header", "nodes"),
    [
        ("for=192.0.2.60;proto=http;by=203.0.113.43", ["192.0.2.60"]),
        ('for="[2001:db8:cafe::17]:4711"', ["2001:db8:cafe::17"]),
        ("for=192.0.2.43, for=198.51.100.17", ["192.0.2.43", "198.51.100.17"]),
        ('For="192.0.2.1:8080"', ["192.0.2.1"]),
        ("proto=https", [""]),
        ("for=_hidden, for=unknown", ["_hidden", "unknown"]),
        ('for="[2001:db8::1', [""]),
    ],
)
def test_forwarded_for_nodes(header: str, nodes: list[str]) -> None:
    assert forwarded_for(header) == nodes


def test_untrusted_peers_are_the_client_whatever_they_claim() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])

    assert proxies.client_ip("198.51.100.1", ["192.0.2.1"]) == "198.51.100.1"
    assert TrustedProxies().client_ip("10.0.0.1", ["192.0.2.1"]) == "10.0.0.1"


@pytest.mark.parametrize(
    ("header", "values", "client"),
    [
        ("x-forwarded-for", ["192.0.2.9, 10.1.1.1"], "192.0.2.9"),
        ("x-forwarded-for", ["192.0.2.66", "192.0.2.9"], "192.0.2.9"),  # two lines, in order
        ("x-forwarded-for", ["not-an-ip"], "10.0.0.1"),
        ("x-forwarded-for", ["10.2.2.2"], "10.0.0.1"),
        ("x-forwarded-for", [], "10.0.0.1"),
        ("forwarded", ['for=192.0.2.66, for="192.0.2.9:443"'], "192.0.2.9"),
        ("forwarded", ["for=_hidden"], "10.0.0.1"),
        ("x-real-ip", ["192.0.2.9"], "192.0.2.9"),
        ("x-real-ip", ["[2001:db8::5]"], "2001:db8::5"),
    ],
)
def test_the_right_most_untrusted_hop_of_the_configured_header_is_the_client(
    header: ForwardingHeader, values: list[str], client: str
) -> None:
    proxies = TrustedProxies(["10.0.0.0/8"], header=header)

    assert proxies.client_ip("10.0.0.1", values) == client


def test_an_unknown_forwarding_header_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown forwarding header"):
        TrustedProxies(["10.0.0.0/8"], header="x-client-ip")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("ip", "partition"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        (None, "unknown"),
    ],
)
def test_rate_partitions(ip: str | None, partition: str) -> None:
    assert rate_partition(ip) == partition


@pytest.mark.parametrize(
    "hop",
    [
        "198.51.100.1",
        " 198.51.100.1 ",
        "198.51.100.1:80",
        "198.51.100.1:+80",
        "198.51.100.1:-1",
        "198.51.100.1: 80",
        "198.51.100.1:\u0668\u0660",  # Arabic-Indic digits: int() reads them
        "198.51.100.1:",
        "a:x",
        "[::1]",
        "[::1]:443",
        "[::1]x",
        "[::1",
        "::1",
        "[::1]:",
        "[::1]:x",
        "",
        "198.51.100.1:80:90",
    ],
)
def test_a_hop_is_read_as_uvicorn_reads_it(hop: str) -> None:
    """The check for an address uvicorn took from X-Forwarded-For must read each hop as
    uvicorn does: a hop read otherwise is an address a client could still choose."""
    from uvicorn.middleware.proxy_headers import _parse_host_port

    from bastion.net import _host_port

    assert _host_port(hop) == _parse_host_port(hop.strip())
