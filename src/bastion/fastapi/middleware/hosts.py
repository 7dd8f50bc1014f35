"""Allowed hosts: a request whose ``Host`` is not one of ours is refused (400 problem).

Links and redirects the service builds never come from ``Host`` (they come from
``BASTION_PUBLIC_URL``), but a host check still stops DNS-rebinding pages from talking
to a service on a private address, and requests that reach the wrong virtual host
(OWASP Web Security Testing Guide, "Testing for Host Header Injection").
Entries are host names or addresses, ``*.example.com`` for every subdomain.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from bastion.fastapi.problems import send_problem

__all__ = ["AllowedHostsMiddleware", "host_allowed"]


# RFC 9110 §7.2 / RFC 3986 §3.2.2: a name or IPv4 address, or a bracketed IPv6 address,
# then an optional port of digits. Anything else (userinfo, a path, a second colon)
# names no host of ours.
_HOST = re.compile(r"(?:(?P<name>[a-z0-9.-]+)|\[(?P<ipv6>[0-9a-f:.]+)\])(?::[0-9]{1,5})?")


def _host_of(value: str) -> str:
    found = _HOST.fullmatch(value.strip().lower())
    if found is None:
        return ""
    return found["ipv6"] or found["name"].rstrip(".")


def host_allowed(host_header: str, allowed: Iterable[str]) -> bool:
    host = _host_of(host_header)
    if not host:
        return False
    for pattern in allowed:
        pattern = pattern.strip().lower().rstrip(".")
        if pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]) and host != pattern[2:]:
            return True
    return False


class AllowedHostsMiddleware:
    def __init__(self, app: ASGIApp, *, hosts: Iterable[str]) -> None:
        self.app = app
        self._hosts = tuple(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = ""
        for name, value in scope["headers"]:
            if name == b"host":
                host = value.decode("latin-1")
                break
        if host_allowed(host, self._hosts):
            await self.app(scope, receive, send)
            return
        await send_problem(
            send,
            400,
            "invalid-host",
            "Invalid host",
            "The Host header names no host this service answers for.",
            scope.get("state", {}).get("request_id"),
        )
