"""The client address: forwarding headers believed only from trusted proxies."""

from __future__ import annotations

import pytest

from bastion.net import TrustedProxies, forwarded_for, rate_partition


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

    assert proxies.client_ip("198.51.100.1", "192.0.2.1", "for=192.0.2.2") == "198.51.100.1"
    assert TrustedProxies().client_ip("10.0.0.1", "192.0.2.1") == "10.0.0.1"


def test_forwarded_wins_over_x_forwarded_for_from_a_trusted_proxy() -> None:
    proxies = TrustedProxies(["10.0.0.0/8"])

    assert proxies.client_ip("10.0.0.1", "192.0.2.1", "for=192.0.2.2") == "192.0.2.2"
    assert proxies.client_ip("10.0.0.1", "192.0.2.9, 10.1.1.1", None) == "192.0.2.9"
    assert proxies.client_ip("10.0.0.1", "not-an-ip", None) == "10.0.0.1"
    assert proxies.client_ip("10.0.0.1", "10.2.2.2", None) == "10.0.0.1"


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
