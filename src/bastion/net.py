"""The client's address, believing forwarding headers only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

__all__ = ["TrustedProxies"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TrustedProxies:
    """Decide the client IP of a request (ASVS 4.1.3; OWASP API8 "uniform processing").

    The socket peer is the client unless it is one of the configured proxy networks;
    then the right-most address of ``X-Forwarded-For`` that is not itself a trusted
    proxy is. Everything left of it was written by the client and is not believed, so
    a spoofed header from an untrusted peer changes nothing.
    """

    def __init__(self, networks: Sequence[str] = ()) -> None:
        self._networks: list[_Network] = [ipaddress.ip_network(n, strict=False) for n in networks]

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def client_ip(self, peer: str | None, forwarded_for: str | None) -> str | None:
        if not self._networks or peer is None or not self._trusted(peer) or not forwarded_for:
            return peer
        for hop in reversed([h.strip() for h in forwarded_for.split(",")]):
            try:
                address = str(ipaddress.ip_address(hop.strip("[]")))
            except ValueError:
                return peer  # a malformed hop: stop believing the header
            if not self._trusted(address):
                return address
        return peer
