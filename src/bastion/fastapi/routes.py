"""The route table: what each route declares, read from the routes themselves.

A route declares its security requirement with one of the guard's dependencies
(``guard.public(...)``, ``guard.authenticated()``, ``guard.require(...)``,
``guard.require_object(...)``). The requirement travels on the dependency callable, so
the route table carries it: :func:`route_table` lists every route of an app with its
requirement (None when it declares nothing, which the guard refuses), and
:func:`match_route` finds the route a method and path would reach.

:class:`RouteTable` is that table compiled once for the guard (each route's requirement,
rate class and accepted media types), matched once a request: the rate limit,
the body cap, the media-type check and deny-by-default all read its one match.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from re import Pattern
from typing import Any

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, Mount, compile_path

from bastion.authz import Requirement
from bastion.fastapi.media_types import accepted_media_types

__all__ = [
    "RATE_ATTRIBUTE",
    "REQUIREMENT_ATTRIBUTE",
    "RouteEntry",
    "RouteIndex",
    "RouteTable",
    "match_route",
    "rate_class_of",
    "requirement_of",
    "route_table",
]

REQUIREMENT_ATTRIBUTE = "__bastion_requirement__"
RATE_ATTRIBUTE = "__bastion_rate_class__"


def _calls(dependant: Any) -> Iterator[Any]:
    for child in getattr(dependant, "dependencies", ()) or ():
        yield child.call
        yield from _calls(child)


def requirement_of(route: BaseRoute | None) -> Requirement | None:
    """The requirement a route declares, or None (a plain Starlette route declares none)."""
    if not isinstance(route, APIRoute):
        return None
    for call in _calls(route.dependant):
        requirement = getattr(call, REQUIREMENT_ATTRIBUTE, None)
        if isinstance(requirement, Requirement):
            return requirement
    return None


def rate_class_of(route: BaseRoute | None) -> str | None:
    """The rate-limit class a route declares (``guard.public(..., rate="login-ip")``)."""
    if not isinstance(route, APIRoute):
        return None
    for call in _calls(route.dependant):
        rate = getattr(call, RATE_ATTRIBUTE, None)
        if isinstance(rate, str):
            return rate
    return None


@dataclass(frozen=True)
class RouteEntry:
    path: str
    methods: frozenset[str]
    requirement: Requirement | None
    route: BaseRoute = field(compare=False, repr=False)
    regex: Pattern[str] = field(compare=False, repr=False)
    convertors: dict[str, Any] = field(compare=False, repr=False)
    rate: str | None = None
    media_types: frozenset[str] = field(default=frozenset(), compare=False, repr=False)
    every_method: bool = field(default=False, compare=False, repr=False)

    def params(self, path: str) -> dict[str, Any] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return {k: self.convertors[k].convert(v) for k, v in found.groupdict().items()}


def route_table(routes: Iterable[BaseRoute]) -> list[RouteEntry]:
    """Every route of an app, routers included, with the requirement it declares."""
    entries = []
    for context in iter_route_contexts(list(routes)):
        path = context.path
        route = context.original_route
        if isinstance(route, Mount):
            # A mounted app declares nothing: every path under it, every method.
            regex, convertors = route.path_regex, route.param_convertors
            entries.append(
                RouteEntry(
                    route.path, frozenset(), None, route, regex, convertors, every_method=True
                )
            )
            continue
        if not path:
            continue  # a router without a path of its own
        regex, _, convertors = compile_path(path)
        entries.append(
            RouteEntry(
                path=path,
                methods=frozenset(context.methods or ()),
                requirement=requirement_of(route),
                route=route,
                regex=regex,
                convertors=convertors,
                rate=rate_class_of(route),
                media_types=accepted_media_types(route),
            )
        )
    return entries


def match_route(
    table: Iterable[RouteEntry], method: str, path: str
) -> tuple[RouteEntry | None, dict[str, Any], int]:
    """The route ``method path`` reaches, its path parameters, and 200, 404 or 405.

    Matching is exact, as the router's: no case folding (of the method either: HTTP
    methods are case-sensitive, RFC 9110 §9.1), no trailing-slash redirect.
    """
    path_only = False
    for entry in table:
        params = entry.params(path)
        if params is None:
            continue
        if method in entry.methods or entry.every_method:
            return entry, params, 200
        path_only = True
    return None, {}, 405 if path_only else 404


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else path


class RouteIndex:
    """:func:`match_route` over the entries that could match a path's first segment:
    those whose first segment is that literal text, and those whose first segment holds
    a parameter, in the table's order (so the answer is the whole table's)."""

    def __init__(self, table: Iterable[RouteEntry]) -> None:
        entries = [(_first_segment(e.path), e) for e in table]
        self._wild = [e for first, e in entries if "{" in first]
        literal = {first for first, _ in entries if "{" not in first}
        self._buckets = {
            segment: [e for first, e in entries if first == segment or "{" in first]
            for segment in literal
        }

    def match(self, method: str, path: str) -> tuple[RouteEntry | None, dict[str, Any], int]:
        candidates = self._buckets.get(_first_segment(path), self._wild)
        return match_route(candidates, method, path)


class RouteTable:
    """An app's route table, compiled on the first request (routes are added until the
    app serves) and again whenever the app's route list changes length (a route added
    later is matched too, and refused when it declares nothing)."""

    def __init__(self) -> None:
        self._routes: list[BaseRoute] | None = None
        self._count = -1
        self._index = RouteIndex(())

    def match(
        self, routes: list[BaseRoute], method: str, path: str
    ) -> tuple[RouteEntry | None, dict[str, Any], int]:
        """The entry ``method path`` reaches in ``routes`` (the app's live route list)."""
        if routes is not self._routes or len(routes) != self._count:
            self._index = RouteIndex(route_table(routes))
            self._routes, self._count = routes, len(routes)
        return self._index.match(method, path)
