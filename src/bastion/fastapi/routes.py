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
from starlette.routing import BaseRoute, Match, Mount, compile_path

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
    "requirements_of",
    "route_table",
    "router_serves",
]

REQUIREMENT_ATTRIBUTE = "__bastion_requirement__"
RATE_ATTRIBUTE = "__bastion_rate_class__"


def _calls(dependant: Any) -> Iterator[Any]:
    for child in getattr(dependant, "dependencies", ()) or ():
        yield child.call
        yield from _calls(child)


def requirements_of(dependant: Any) -> tuple[Requirement, ...]:
    """Every requirement declared in ``dependant`` (the route's own dependencies, its
    routers' and its parameters'), each once, in the order declared: all must hold."""
    found: list[Requirement] = []
    for call in _calls(dependant):
        requirement = getattr(call, REQUIREMENT_ATTRIBUTE, None)
        if isinstance(requirement, Requirement) and requirement not in found:
            found.append(requirement)
    return tuple(found)


def _decisive(requirements: tuple[Requirement, ...]) -> Requirement | None:
    """The requirement that decides whether a caller must sign in: the first that is not
    public, else the public one (None: the route declares nothing)."""
    for requirement in requirements:
        if requirement.kind != "public":
            return requirement
    return requirements[0] if requirements else None


def requirement_of(route: BaseRoute | None) -> Requirement | None:
    """The requirement a route declares, or None (a plain Starlette route declares none)."""
    if not isinstance(route, APIRoute):
        return None
    return _decisive(requirements_of(route.dependant))


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
    # Every requirement the route declares (its routers' included): all must hold.
    requirements: tuple[Requirement, ...] = field(default=(), compare=False, repr=False)

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
            continue  # a router without a path of its own (the router is asked on a miss)
        regex, _, convertors = compile_path(path)
        dependant = getattr(context, "dependant", None)  # with the including routers'
        requirements = requirements_of(dependant) if isinstance(route, APIRoute) else ()
        entries.append(
            RouteEntry(
                path=path,
                methods=frozenset(context.methods or ()),
                requirement=_decisive(requirements),
                route=route,
                regex=regex,
                convertors=convertors,
                rate=rate_class_of(route),
                media_types=accepted_media_types(route),
                # A plain route without methods (an HTTPEndpoint) takes every method.
                every_method=context.methods is None,
                requirements=requirements,
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
    app serves) and again whenever the app's routes change (FastAPI counts every change,
    in included routers too; without that count, a change of the list's length)."""

    def __init__(self) -> None:
        self._routes: list[BaseRoute] | None = None
        self._version: tuple[int, int] = (-1, -1)
        self._index = RouteIndex(())

    def match(
        self, router: Any, method: str, path: str
    ) -> tuple[RouteEntry | None, dict[str, Any], int]:
        """The entry ``method path`` reaches among the live routes of ``router`` (or of a
        route list)."""
        routes = router if isinstance(router, list) else router.routes
        count = getattr(router, "_get_routes_version", None)
        version = (len(routes), count() if count is not None else 0)
        if routes is not self._routes or version != self._version:
            self._index = RouteIndex(route_table(routes))
            self._routes, self._version = routes, version
        return self._index.match(method, path)


def router_serves(router: Any, scope: Any) -> bool:
    """Whether ``router`` would serve ``scope`` with some route (a full match), asked
    with the router's own matching: on a miss of the table, a route of a kind the table
    does not model (a host, a mount, a low-priority route) is found here and refused."""
    low = getattr(router, "_match_low_priority", None)  # FastAPI's own, prefixes included
    if low is not None:
        try:
            if low(dict(scope))[0] is Match.FULL:
                return True
        except Exception:
            return True
    for route in router.routes:
        matches = getattr(route, "matches", None)
        if matches is None:
            return True  # cannot tell: fail closed
        try:
            found, _ = matches(dict(scope))
        except Exception:
            return True
        if found is Match.FULL:
            return True
    return False
