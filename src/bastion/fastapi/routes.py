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

import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from re import Pattern
from typing import Any

from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from starlette.routing import BaseRoute, Match, WebSocketRoute, compile_path

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


def rate_class_of(route: BaseRoute | None, dependant: Any = None) -> str | None:
    """The rate-limit class a route declares (``guard.public(..., rate="login-ip")``),
    read from ``dependant`` when given (the route's, with its including routers')."""
    if not isinstance(route, APIRoute):
        return None
    for call in _calls(dependant if dependant is not None else route.dependant):
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
    # A route whose matching the table does not reproduce (a host, a mount, a plain
    # Starlette route, a route class of its own): matched by its own ``matches``.
    opaque: Any = field(default=None, compare=False, repr=False)

    def reaches(self, scope: Any) -> bool | None:
        """Whether the router would dispatch ``scope`` to this opaque route; None when
        its matching raises (then it counts as reached, and is refused)."""
        try:
            found, _ = self.opaque.matches(dict(scope))
        except Exception:
            return None
        return found is Match.FULL

    def params(self, path: str) -> dict[str, Any] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return {k: self.convertors[k].convert(v) for k, v in found.groupdict().items()}


def route_table(routes: Iterable[BaseRoute]) -> list[RouteEntry]:
    """Every route of an app, routers included, in the router's order, with the
    requirements it declares. Only FastAPI's own routes are matched by the table's
    regexes; every other kind keeps its place as an opaque entry that declares nothing,
    so the table reaches the route the router would dispatch to, or refuses."""
    entries = []
    for context in iter_route_contexts(list(routes)):
        route = context.original_route
        if isinstance(route, WebSocketRoute | APIWebSocketRoute):
            continue  # never matches an HTTP request; the guard refuses WebSockets
        path = context.path
        if not isinstance(route, APIRoute) or not path:
            matcher = getattr(context, "_effective_route", route)  # prefixes applied
            if not hasattr(matcher, "matches"):
                matcher = route
            regex, _, convertors = compile_path("/")
            entries.append(
                RouteEntry(
                    getattr(route, "path", "") or "",
                    frozenset(),
                    None,
                    route,
                    regex,
                    convertors,
                    every_method=True,
                    opaque=matcher,
                )
            )
            continue
        regex, _, convertors = compile_path(path)
        dependant = getattr(context, "dependant", None)  # with the including routers'
        requirements = requirements_of(dependant)
        # A route class of the app's own (its matching, its regex or its path may differ
        # from FastAPI's), or a route whose ``matches`` was replaced: asked itself.
        own = type(route) is not APIRoute or "matches" in vars(route)
        entries.append(
            RouteEntry(
                path=path,
                methods=frozenset(context.methods or ()),
                requirement=_decisive(requirements),
                route=route,
                regex=regex,
                convertors=convertors,
                rate=rate_class_of(route, dependant),
                media_types=accepted_media_types(route),
                requirements=requirements,
                opaque=_OwnMatching(route, context) if own else None,
            )
        )
    return entries


class _OwnMatching:
    """Asks a route of its own class (e.g. one that matches in any letter case) whether
    it matches, as FastAPI's router asks it: with the route's place in its included
    router (prefix, methods) in the scope."""

    def __init__(self, route: APIRoute, context: Any) -> None:
        self._route = route
        self._context = getattr(context, "_route_context", None)  # FastAPI's lazy include

    def matches(self, scope: Any) -> tuple[Match, Any]:
        if self._context is None or _EFFECTIVE_KEYS is None:
            return self._route.matches(scope)
        outer, key = _EFFECTIVE_KEYS
        inner = {**scope.get(outer, {}), key: self._context}
        return self._route.matches({**scope, outer: inner})


def _effective_keys() -> tuple[str, str] | None:
    """FastAPI's scope keys for the route context of an included route (0.165's lazy
    include; None where FastAPI copies included routes and needs none)."""
    import fastapi.routing as fastapi_routing

    outer = getattr(fastapi_routing, "_FASTAPI_SCOPE_KEY", None)
    key = getattr(fastapi_routing, "_FASTAPI_EFFECTIVE_ROUTE_CONTEXT_KEY", None)
    return (outer, key) if isinstance(outer, str) and isinstance(key, str) else None


_EFFECTIVE_KEYS = _effective_keys()


def match_route(
    table: Iterable[RouteEntry], method: str, path: str, scope: Any = None
) -> tuple[RouteEntry | None, dict[str, Any], int]:
    """The route ``method path`` reaches, its path parameters, and 200, 404 or 405.

    Matching is exact, as the router's: no case folding (of the method either: HTTP
    methods are case-sensitive, RFC 9110 §9.1), no trailing-slash redirect. An opaque
    entry is asked with ``scope`` (without one, a minimal scope of ``method path``).
    """
    path_only = False
    for entry in table:
        if entry.opaque is not None:
            reached = entry.reaches(scope if scope is not None else _scope_of(method, path))
            if reached is None:  # its matching raised: whatever it declares, refuse
                return replace(entry, requirement=None, requirements=()), {}, 200
            if reached:
                return entry, {}, 200
            continue
        params = entry.params(path)
        if params is None:
            continue
        if method in entry.methods:
            return entry, params, 200
        path_only = True
    return None, {}, 405 if path_only else 404


def _scope_of(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}


def _first_segment(path: str) -> str:
    return path.split("/", 2)[1] if path.startswith("/") else path


def _bucket_of(entry: RouteEntry) -> str:
    """The first segment an entry's paths start with; ``{...}`` when it may be any."""
    return "{opaque}" if entry.opaque is not None else _first_segment(entry.path)


class RouteIndex:
    """:func:`match_route` over the entries that could match a path's first segment:
    those whose first segment is that literal text, and those whose first segment holds
    a parameter, in the table's order (so the answer is the whole table's)."""

    def __init__(self, table: Iterable[RouteEntry]) -> None:
        # An opaque entry may match any path: it stands in every bucket, in its place.
        entries = [
            ("{opaque}" if e.opaque is not None else _first_segment(e.path), e) for e in table
        ]
        self._wild = [e for first, e in entries if "{" in first]
        literal = {first for first, _ in entries if "{" not in first}
        self._buckets = {
            segment: [e for first, e in entries if first == segment or "{" in first]
            for segment in literal
        }

    def match(
        self, method: str, path: str, scope: Any = None
    ) -> tuple[RouteEntry | None, dict[str, Any], int]:
        candidates = self._buckets.get(_first_segment(path), self._wild)
        return match_route(candidates, method, path, scope)


class RouteTable:
    """An app's route table, compiled on the first request (routes are added until the
    app serves) and again whenever a route list of the app changes: a route added,
    removed or replaced, in the app's router or in any router included in it."""

    def __init__(self) -> None:
        self._routes: list[BaseRoute] | None = None
        self._snapshot: tuple[tuple[Any, list[Any], list[Any], int], ...] = ()
        self._index = RouteIndex(())

    def match(
        self, router: Any, method: str, path: str, scope: Any = None
    ) -> tuple[RouteEntry | None, dict[str, Any], int]:
        """The entry ``method path`` reaches among the live routes of ``router`` (or of a
        route list)."""
        routes = router if isinstance(router, list) else router.routes
        if routes is not self._routes or self._changed():
            self._index = RouteIndex(route_table(routes))
            self._snapshot = _snapshot(router)
            self._routes = routes
        return self._index.match(method, path, scope)

    def _changed(self) -> bool:
        # The same route objects, compared by identity in C (routes compare equal by
        # path, endpoint and methods: an equal one may match otherwise); a route added,
        # removed or replaced makes them differ, as does FastAPI's count of changes
        # (which its own copies of included routes follow).
        for owner, routes, low, version in self._snapshot:
            if (
                getattr(owner, "_routes_version", 0) != version
                or not _same(owner.routes, routes)
                or not _same(getattr(owner, "_low_priority_routes", low), low)
            ):
                return True
        return False


def _same(live: list[Any], kept: list[Any]) -> bool:
    return len(live) == len(kept) and all(map(operator.is_, live, kept))


def _snapshot(router: Any) -> tuple[tuple[Any, list[Any], list[Any], int], ...]:
    """A copy of the route lists of ``router`` and of every router included in it
    (FastAPI serves an included router's routes from its own live list)."""
    if isinstance(router, list):
        holder = _ListHolder(router)
        return ((holder, list(router), [], 0),)
    found: dict[int, tuple[Any, list[Any], list[Any], int]] = {}

    def walk(current: Any) -> None:
        if id(current) in found:
            return
        low = getattr(current, "_low_priority_routes", [])  # FastAPI's frontend routes
        version = getattr(current, "_routes_version", 0)
        found[id(current)] = (current, list(current.routes), list(low), version)
        for route in [*current.routes, *low]:
            included = getattr(route, "original_router", None)  # FastAPI's lazy include
            if included is not None:
                walk(included)

    walk(router)
    return tuple(found.values())


class _ListHolder:
    """A bare route list, held as a router holds its routes."""

    def __init__(self, routes: list[Any]) -> None:
        self.routes = routes


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
