"""The client's address, believing forwarding headers only from trusted proxies."""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Sequence
from typing import Literal

_log = logging.getLogger("bastion")

__all__ = [
    "FORWARDING_HEADERS",
    "ForwardingHeader",
    "TrustedProxies",
    "forwarded_for",
    "rate_partition",
]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def forwarded_for(header: str) -> list[str]:
    """The ``for=`` nodes of an RFC 7239 ``Forwarded`` header, in order, unquoted and
    without ports (``"[2001:db8::1]:4711"`` → ``2001:db8::1``); an element without
    ``for=`` gives ``""``, which no address matches."""
    nodes = []
    for element in header.split(","):
        node = ""
        for pair in element.split(";"):
            name, _, value = pair.strip().partition("=")
            if name.strip().lower() == "for":
                node = value.strip().strip('"')
        if node.startswith("["):
            node = node[1 : node.find("]")] if "]" in node else ""
        elif node.count(":") == 1:
            node = node.split(":")[0]  # IPv4 with a port
        nodes.append(node)
    return nodes


@functools.lru_cache(maxsize=65_536)  # parsing an address costs more than the limit check
def rate_partition(ip: str | None) -> str:
    """The rate-limit key of an address: IPv6 by its /64, since one host holds a whole
    /64 and would otherwise get 2^64 quotas."""
    if not ip:
        return "unknown"
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


FORWARDING_HEADERS = ("x-forwarded-for", "forwarded", "x-real-ip")
ForwardingHeader = Literal["x-forwarded-for", "forwarded", "x-real-ip"]


class TrustedProxies:
    """Decide the client IP of a request (ASVS 4.1.3; OWASP API8 "uniform processing").

    The socket peer is the client unless it is one of the configured proxy networks;
    then the right-most address of the one forwarding header the proxy sets (``header``:
    ``X-Forwarded-For`` by default, ``Forwarded`` of RFC 7239, or ``X-Real-IP``) that is
    not itself a trusted proxy is. Every other forwarding header is ignored: proxies
    append to their own header and pass the others through untouched, so those are the
    client's own words. Everything left of the right-most untrusted hop was written by
    the client too and is not believed.
    """

    def __init__(
        self, networks: Sequence[str] = (), *, header: ForwardingHeader = "x-forwarded-for"
    ) -> None:
        if header not in FORWARDING_HEADERS:
            raise ValueError(f"unknown forwarding header {header!r}; one of {FORWARDING_HEADERS}")
        self._networks: list[_Network] = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.header = header
        self.header_key = header.encode("latin-1")  # as ASGI scopes carry header names
        self._warned = False

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address.strip().strip("[]"))
        except ValueError:
            return False
        return any(ip in network for network in self._networks)

    def _hops(self, values: Sequence[str]) -> list[str]:
        # Several lines of one field are one comma-separated list, in order (RFC 9110 §5.3).
        joined = ",".join(values)
        if self.header == "forwarded":
            return forwarded_for(joined)
        return [hop.strip().strip("[]") for hop in joined.split(",")]

    def server_took_it(
        self, peer: str | None, port: int | None, forwarded_for: Sequence[str]
    ) -> bool:
        """Whether the server in front took the peer ``peer``:``port`` from
        ``X-Forwarded-For`` although no proxy is trusted here (uvicorn believes that
        header from 127.0.0.1 unless run with ``--no-proxy-headers``): then the address
        is the client's own words.

        So it is when the peer is no IP address at all (no socket peer looks like
        ``a:x``), or when it is one of the header's hops as the server reads a hop, its
        port included (no port there: 0, which no socket peer has). A client naming its
        own address in the header keeps it: its socket port is not the header's."""
        if self._networks or peer is None or not forwarded_for:
            return False
        try:
            ipaddress.ip_address(peer)
        except ValueError:
            taken = True
        else:
            hops = ",".join(forwarded_for).split(",")
            taken = any(_host_port(hop) == (peer, port or 0) for hop in hops)
        if taken and not self._warned:  # once for this app, not for every request
            self._warned = True
            _log.warning(
                "insecure setting BASTION_TRUSTED_PROXIES: the server took client "
                "addresses from X-Forwarded-For, which no trusted proxy sets here, so a "
                "client could choose its own; those requests share one rate-limit quota "
                "and log no address. Run uvicorn with --no-proxy-headers, or name your "
                "proxies in BASTION_TRUSTED_PROXIES"
            )
        return taken

    def client_ip(self, peer: str | None, values: Sequence[str] = ()) -> str | None:
        """The client address, given the socket ``peer`` and every value of the
        configured forwarding header, in the order received."""
        if not self._networks or peer is None or not self._trusted(peer):
            return peer
        if not values:
            return peer
        for hop in reversed(self._hops(values)):
            try:
                address = str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # a malformed or obfuscated hop: stop believing the header
            if not self._trusted(address):
                return address
        return peer


def _host_port(hop: str) -> tuple[str, int]:
    """One X-Forwarded-For hop as uvicorn reads it (its ``_parse_host_port``, with
    ``int()`` as it parses a port): the address and port of ``[v6]:port`` and
    ``v4:port``, else the hop itself and 0."""
    hop = hop.strip()
    if hop.startswith("["):
        end = hop.find("]")
        if end == -1:
            return hop, 0
        host, rest = hop[1:end], hop[end + 1 :]
        if not rest:
            return host, 0
        if not rest.startswith(":"):
            return hop, 0
        return host, _port(rest[1:])
    if hop.count(":") == 1:
        host, _, port = hop.partition(":")
        try:
            return host, int(port)
        except ValueError:
            return hop, 0
    return hop, 0


def _port(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return 0
