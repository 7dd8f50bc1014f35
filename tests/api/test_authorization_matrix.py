"""The authorization matrix: every route, every kind of caller, the expected status,
checked over HTTP and against the database afterwards.

The routes come from the app's route table, so a route without an entry here fails
``test_every_route_has_a_matrix_entry``. The world of each case: a task T owned by
``owner`` (a member), shared ``read`` with ``reader`` and ``edit`` with ``editor`` (both
members) and with ``viewer`` (a viewer: the role caps the share); ``stranger`` is an
unrelated member; ``admin`` an admin; ``anonymous`` sends no token.

A refused call must leave the database exactly as it was; an allowed call must make the
change the route promises, and nothing else.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import httpx
import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

from bastion.fastapi import route_table
from bastion.stores import AccountChange
from tests.helpers import STRONG_PASSWORD, user

ACTORS = ["anonymous", "viewer", "owner", "reader", "editor", "stranger", "admin"]
TITLE = "T: the matrix task"

# Each table with the columns a call may change, as compared before and after a call.
_SNAPSHOT = {
    "accounts": "id, role, is_active, token_version, display_name, locked_at",
    "tasks": "id, owner_id, title, status, description, tags, updated_at",
    "task_shares": "task_id, user_id, permission",
    "auth_sessions": "id, user_id, revoked_at",
    "refresh_tokens": "digest, used_at",
    "task_attachments": "id, task_id, filename",
}
Snapshot = dict[str, set[tuple[Any, ...]]]


@dataclass
class World:
    client: httpx.AsyncClient
    app: Any
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    task_id: str = ""
    attachment_id: str = ""

    def id(self, actor: str) -> str:
        return str(self.users[actor]["id"])

    def headers(self, actor: str) -> dict[str, str]:
        return {} if actor == "anonymous" else dict(self.users[actor]["auth"])

    async def snapshot(self) -> Snapshot:
        engine = self.app.state.security.stores.engine
        taken: Snapshot = {}
        async with engine.connect() as conn:
            for name, columns in _SNAPSHOT.items():
                table = SQLModel.metadata.tables[name]
                query = sa.select(*[table.c[c.strip()] for c in columns.split(",")])
                taken[name] = {tuple(str(v) for v in row) for row in await conn.execute(query)}
        return taken


def changed(before: Snapshot, after: Snapshot) -> set[str]:
    return {table for table in before if before[table] != after[table]}


def statuses(**by_actor: int) -> dict[str, int]:
    assert set(by_actor) == set(ACTORS), set(ACTORS) ^ set(by_actor)
    return by_actor


PUBLIC_200 = statuses(**dict.fromkeys(ACTORS, 200))
SIGNED_IN = statuses(**{**dict.fromkeys(ACTORS, 200), "anonymous": 401})
ADMIN_ONLY = statuses(**{**dict.fromkeys(ACTORS, 403), "anonymous": 401, "admin": 200})

# What a successful call does to the database: the tables it changes, and a check.
Effect = Callable[[World, str, Snapshot, Snapshot], Awaitable[None]]


async def no_change(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    assert changed(before, after) == set()


def changes(*tables: str, check: Callable[[World, str, Snapshot, Snapshot], None] | None = None):  # type: ignore[no-untyped-def]
    async def effect(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
        assert changed(before, after) == set(tables)
        if check is not None:
            check(world, actor, before, after)

    return effect


def _rows(snapshot: Snapshot, table: str, **where: str) -> list[tuple[Any, ...]]:
    columns = [c.strip() for c in _SNAPSHOT[table].split(",")]
    return [
        row
        for row in snapshot[table]
        if all(row[columns.index(name)] == value for name, value in where.items())
    ]


def _session_revoked(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    live = [r for r in _rows(after, "auth_sessions", user_id=world.id(actor)) if r[2] == "None"]
    assert len(live) < len(
        [r for r in _rows(before, "auth_sessions", user_id=world.id(actor)) if r[2] == "None"]
    )


def _session_revoked_and_opened(
    world: World, actor: str, before: Snapshot, after: Snapshot
) -> None:
    mine_before = _rows(before, "auth_sessions", user_id=world.id(actor))
    mine_after = _rows(after, "auth_sessions", user_id=world.id(actor))
    assert len(mine_after) == len(mine_before) + 1  # the new session
    _session_revoked_live = [r for r in mine_after if r[2] == "None"]
    assert len(_session_revoked_live) == len([r for r in mine_before if r[2] == "None"])


def _task_title_changed(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    [row] = _rows(after, "tasks", id=world.task_id)
    assert row[2] == f"changed by {actor}"


def _task_deleted(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    assert _rows(after, "tasks", id=world.task_id) == []
    assert _rows(after, "task_shares", task_id=world.task_id) == []
    assert _rows(after, "task_attachments", task_id=world.task_id) == []


def _attachment_added(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    [new] = after["task_attachments"] - before["task_attachments"]
    assert new[1:] == (world.task_id, f"by {actor}.txt")


def _attachment_removed(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    [gone] = before["task_attachments"] - after["task_attachments"]
    assert gone[0] == world.attachment_id


def _task_created_for_actor(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    [new] = after["tasks"] - before["tasks"]
    assert new[1] == world.id(actor)


def _stranger_shared(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    assert after["task_shares"] - before["task_shares"] == {
        (world.task_id, world.id("stranger"), "read")
    }


def _reader_unshared(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    assert before["task_shares"] - after["task_shares"] == {
        (world.task_id, world.id("reader"), "read")
    }


def _stranger_demoted(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    [row] = _rows(after, "accounts", id=world.id("stranger"))
    assert row[1] == "viewer"


def _stranger_signed_out(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    assert _rows(after, "auth_sessions", user_id=world.id("stranger"), revoked_at="None") == []


def _locked_unlocked(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    [row] = _rows(after, "accounts", id=world.id("locked"))
    assert row[5] == "None"
    [was] = _rows(before, "accounts", id=world.id("locked"))
    assert was[5] != "None"


def _display_name_set(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    [row] = _rows(after, "accounts", id=world.id(actor))
    assert row[4] == f"{actor} renamed"


def _account_added(world: World, actor: str, before: Snapshot, after: Snapshot) -> None:
    assert len(after["accounts"]) == len(before["accounts"]) + 1


# A request builder: the method and path come from the entry; it returns the concrete
# path and the keyword arguments of ``client.request``.
Build = Callable[[World, str], tuple[str, dict[str, Any]]]


def plain(path: str, **kwargs: Any) -> Build:
    def build(world: World, actor: str) -> tuple[str, dict[str, Any]]:
        concrete = path.format(
            task_id=world.task_id,
            attachment_id=world.attachment_id,
            user_id=world.id(
                "reader" if "shares" in path else "locked" if "unlock" in path else "stranger"
            ),
        )
        return concrete, {
            key: (value(world, actor) if callable(value) else value)
            for key, value in kwargs.items()
        }

    return build


@dataclass(frozen=True)
class Entry:
    expect: dict[str, int]
    build: Build
    effect: Effect = no_change


def _credentials(world: World, actor: str) -> dict[str, str]:
    return {"email": world.users["stranger"]["email"], "password": STRONG_PASSWORD}


def _refresh(world: World, actor: str) -> dict[str, str]:
    # The refresh token is the credential: an anonymous caller presents the owner's.
    holder = "owner" if actor == "anonymous" else actor
    return {"refresh_token": world.users[holder]["refresh_token"]}


def _own_session(world: World, actor: str) -> tuple[str, dict[str, Any]]:
    # The session id is the access token's ``sid``; anonymous callers name the owner's.
    token = world.users["owner" if actor == "anonymous" else actor]["access_token"]
    payload = token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return f"/auth/sessions/{claims['sid']}", {}


BOGUS_LINK = {"token": "bogusselector0000.bogusverifierbogusverifierbogusverifier00000"}
PUBLIC_202 = statuses(**dict.fromkeys(ACTORS, 202))
# A public route that redeems an emailed link: the same refusal for every caller.
LINK_REFUSED = statuses(**dict.fromkeys(ACTORS, 400))
SIGNED_IN_204 = statuses(**{**dict.fromkeys(ACTORS, 204), "anonymous": 401})


def _decision_query(world: World, actor: str) -> dict[str, str]:
    return {"user_id": world.id("reader"), "method": "GET", "path": f"/tasks/{world.task_id}"}


MATRIX: dict[tuple[str, str], Entry] = {
    # Public routes.
    ("POST", "/auth/register"): Entry(
        statuses(**dict.fromkeys(ACTORS, 202)),
        plain(
            "/auth/register",
            json=lambda w, a: {"email": f"new-{a}@example.com", "password": STRONG_PASSWORD},
        ),
        changes("accounts", check=_account_added),
    ),
    ("POST", "/auth/login"): Entry(
        PUBLIC_200,
        plain("/auth/login", json=_credentials),
        changes("auth_sessions", "refresh_tokens"),
    ),
    ("POST", "/auth/token"): Entry(
        PUBLIC_200,
        plain(
            "/auth/token",
            data=lambda w, a: {
                "username": w.users["stranger"]["email"],
                "password": STRONG_PASSWORD,
            },
        ),
        changes("auth_sessions", "refresh_tokens"),
    ),
    ("POST", "/auth/refresh"): Entry(
        PUBLIC_200, plain("/auth/refresh", json=_refresh), changes("refresh_tokens")
    ),
    ("GET", "/.well-known/jwks.json"): Entry(PUBLIC_200, plain("/.well-known/jwks.json")),
    ("GET", "/auth/csrf"): Entry(PUBLIC_200, plain("/auth/csrf")),
    # The account lifecycle: links that go by email, the pages they open, sessions.
    ("POST", "/auth/password/forgot"): Entry(
        PUBLIC_202,
        plain("/auth/password/forgot", json=lambda w, a: {"email": w.users["stranger"]["email"]}),
    ),
    ("POST", "/auth/email/verify/request"): Entry(
        PUBLIC_202,
        plain(
            "/auth/email/verify/request", json=lambda w, a: {"email": w.users["stranger"]["email"]}
        ),
    ),
    ("POST", "/auth/password/reset"): Entry(
        LINK_REFUSED,
        plain("/auth/password/reset", json={**BOGUS_LINK, "new_password": "a new passphrase 77"}),
    ),
    ("POST", "/auth/email/verify"): Entry(
        LINK_REFUSED, plain("/auth/email/verify", json=BOGUS_LINK)
    ),
    ("POST", "/auth/unlock"): Entry(LINK_REFUSED, plain("/auth/unlock", json=BOGUS_LINK)),
    ("POST", "/auth/login/confirm"): Entry(
        LINK_REFUSED, plain("/auth/login/confirm", json=BOGUS_LINK)
    ),
    ("GET", "/auth/email/verify"): Entry(PUBLIC_200, plain("/auth/email/verify")),
    ("GET", "/auth/password/reset"): Entry(PUBLIC_200, plain("/auth/password/reset")),
    ("GET", "/auth/unlock"): Entry(PUBLIC_200, plain("/auth/unlock")),
    ("GET", "/auth/link.js"): Entry(PUBLIC_200, plain("/auth/link.js")),
    ("GET", "/auth/sessions"): Entry(SIGNED_IN, plain("/auth/sessions")),
    ("DELETE", "/auth/sessions/{session_id}"): Entry(
        SIGNED_IN_204, _own_session, changes("auth_sessions", check=_session_revoked)
    ),
    ("POST", "/auth/password/change"): Entry(
        SIGNED_IN_204,
        plain(
            "/auth/password/change",
            json={"current_password": STRONG_PASSWORD, "new_password": "a new passphrase 77"},
        ),
        changes("accounts"),
    ),
    # The second factor (docs/mfa.md): none is on in this world.
    ("POST", "/auth/mfa/verify"): Entry(
        statuses(**dict.fromkeys(ACTORS, 401)),
        plain("/auth/mfa/verify", json={"mfa_token": "m1.bogus.bogus", "code": "123456"}),
    ),
    ("POST", "/auth/mfa/totp/setup"): Entry(SIGNED_IN, plain("/auth/mfa/totp/setup")),
    ("POST", "/auth/mfa/totp/confirm"): Entry(
        statuses(**dict.fromkeys(ACTORS, 401)),  # no pending factor: the code is refused
        plain("/auth/mfa/totp/confirm", json={"code": "123456"}),
    ),
    ("POST", "/auth/mfa/totp/disable"): Entry(
        statuses(**{**dict.fromkeys(ACTORS, 409), "anonymous": 401}),
        plain("/auth/mfa/totp/disable", json={"password": STRONG_PASSWORD, "code": "123456"}),
    ),
    ("POST", "/auth/mfa/recovery-codes"): Entry(
        statuses(**{**dict.fromkeys(ACTORS, 409), "anonymous": 401}),
        plain("/auth/mfa/recovery-codes"),
    ),
    ("POST", "/auth/reauthenticate"): Entry(
        SIGNED_IN,
        plain("/auth/reauthenticate", json={"password": STRONG_PASSWORD}),
        changes("auth_sessions", "refresh_tokens", check=_session_revoked_and_opened),
    ),
    ("GET", "/healthz"): Entry(PUBLIC_200, plain("/healthz")),
    ("GET", "/readyz"): Entry(PUBLIC_200, plain("/readyz")),
    ("GET", "/metrics"): Entry(PUBLIC_200, plain("/metrics")),  # no token in development
    ("GET", "/openapi.json"): Entry(PUBLIC_200, plain("/openapi.json")),
    ("GET", "/docs"): Entry(PUBLIC_200, plain("/docs")),
    ("GET", "/docs/oauth2-redirect"): Entry(PUBLIC_200, plain("/docs/oauth2-redirect")),
    ("GET", "/docs/assets/{name}"): Entry(PUBLIC_200, plain("/docs/assets/swagger-ui.css")),
    ("GET", "/redoc"): Entry(PUBLIC_200, plain("/redoc")),
    # Any signed-in account, for its own data.
    ("POST", "/auth/logout"): Entry(
        statuses(**{**dict.fromkeys(ACTORS, 204), "anonymous": 401}),
        plain("/auth/logout"),
        changes("auth_sessions", check=_session_revoked),
    ),
    ("POST", "/auth/logout-all"): Entry(
        statuses(**{**dict.fromkeys(ACTORS, 204), "anonymous": 401}),
        plain("/auth/logout-all"),
        changes("auth_sessions", "accounts", check=_session_revoked),
    ),
    ("GET", "/users/me"): Entry(SIGNED_IN, plain("/users/me")),
    ("PATCH", "/users/me"): Entry(
        SIGNED_IN,
        plain("/users/me", json=lambda w, a: {"display_name": f"{a} renamed"}),
        changes("accounts", check=_display_name_set),
    ),
    # Tasks.
    ("POST", "/tasks"): Entry(
        statuses(
            anonymous=401, viewer=403, owner=201, reader=201, editor=201, stranger=201, admin=201
        ),
        plain("/tasks", json={"title": "new"}),
        changes("tasks", check=_task_created_for_actor),
    ),
    ("GET", "/tasks"): Entry(SIGNED_IN, plain("/tasks")),
    ("GET", "/tasks/{task_id}"): Entry(
        statuses(
            anonymous=401, viewer=200, owner=200, reader=200, editor=200, stranger=404, admin=200
        ),
        plain("/tasks/{task_id}"),
    ),
    ("PATCH", "/tasks/{task_id}"): Entry(
        statuses(
            anonymous=401, viewer=403, owner=200, reader=403, editor=200, stranger=404, admin=200
        ),
        plain("/tasks/{task_id}", json=lambda w, a: {"title": f"changed by {a}"}),
        changes("tasks", check=_task_title_changed),
    ),
    ("DELETE", "/tasks/{task_id}"): Entry(
        statuses(
            anonymous=401, viewer=403, owner=204, reader=403, editor=403, stranger=404, admin=204
        ),
        plain("/tasks/{task_id}"),
        changes("tasks", "task_shares", "task_attachments", check=_task_deleted),
    ),
    ("GET", "/tasks/{task_id}/shares"): Entry(
        statuses(
            anonymous=401, viewer=403, owner=200, reader=403, editor=403, stranger=404, admin=200
        ),
        plain("/tasks/{task_id}/shares"),
    ),
    ("POST", "/tasks/{task_id}/shares"): Entry(
        statuses(
            anonymous=401, viewer=403, owner=201, reader=403, editor=403, stranger=404, admin=201
        ),
        plain(
            "/tasks/{task_id}/shares",
            json=lambda w, a: {"email": w.users["stranger"]["email"], "permission": "read"},
        ),
        changes("task_shares", check=_stranger_shared),
    ),
    ("DELETE", "/tasks/{task_id}/shares/{user_id}"): Entry(
        statuses(
            anonymous=401, viewer=403, owner=204, reader=403, editor=403, stranger=404, admin=204
        ),
        plain("/tasks/{task_id}/shares/{user_id}"),
        changes("task_shares", check=_reader_unshared),
    ),
    ("POST", "/tasks/{task_id}/attachments"): Entry(
        statuses(
            anonymous=401, viewer=403, owner=201, reader=403, editor=201, stranger=404, admin=201
        ),
        plain(
            "/tasks/{task_id}/attachments",
            files=lambda w, a: {"file": (f"by {a}.txt", b"a note\n", "text/plain")},
        ),
        changes("task_attachments", check=_attachment_added),
    ),
    ("GET", "/tasks/{task_id}/attachments"): Entry(
        statuses(
            anonymous=401, viewer=200, owner=200, reader=200, editor=200, stranger=404, admin=200
        ),
        plain("/tasks/{task_id}/attachments"),
    ),
    ("GET", "/tasks/{task_id}/attachments/{attachment_id}"): Entry(
        statuses(
            anonymous=401, viewer=200, owner=200, reader=200, editor=200, stranger=404, admin=200
        ),
        plain("/tasks/{task_id}/attachments/{attachment_id}"),
    ),
    ("DELETE", "/tasks/{task_id}/attachments/{attachment_id}"): Entry(
        statuses(
            anonymous=401, viewer=403, owner=204, reader=403, editor=204, stranger=404, admin=204
        ),
        plain("/tasks/{task_id}/attachments/{attachment_id}"),
        changes("task_attachments", check=_attachment_removed),
    ),
    # Administration.
    ("GET", "/admin/users"): Entry(ADMIN_ONLY, plain("/admin/users")),
    ("PATCH", "/admin/users/{user_id}"): Entry(
        ADMIN_ONLY,
        plain("/admin/users/{user_id}", json={"role": "viewer"}),
        changes("accounts", check=_stranger_demoted),
    ),
    ("POST", "/admin/users/{user_id}/revoke-sessions"): Entry(
        {**ADMIN_ONLY, "admin": 204},
        plain("/admin/users/{user_id}/revoke-sessions"),
        changes("accounts", "auth_sessions", check=_stranger_signed_out),
    ),
    ("POST", "/admin/users/{user_id}/unlock"): Entry(
        {**ADMIN_ONLY, "admin": 204},
        plain("/admin/users/{user_id}/unlock"),
        changes("accounts", check=_locked_unlocked),
    ),
    ("GET", "/admin/security/decision"): Entry(
        ADMIN_ONLY, plain("/admin/security/decision", params=_decision_query)
    ),
    ("GET", "/admin/security/events"): Entry(ADMIN_ONLY, plain("/admin/security/events")),
    ("GET", "/admin/security/alerts"): Entry(ADMIN_ONLY, plain("/admin/security/alerts")),
}


@pytest.fixture
async def world(client: httpx.AsyncClient, app: Any) -> World:
    built = World(client, app)
    roles = {"viewer": "viewer", "admin": "admin"}
    for actor in ACTORS[1:]:
        built.users[actor] = await user(
            client, app, f"{actor}@example.com", roles.get(actor, "member")
        )
    owner = built.headers("owner")
    created = await client.post("/tasks", json={"title": TITLE}, headers=owner)
    assert created.status_code == 201, created.text
    built.task_id = created.json()["id"]
    for actor, permission in (("reader", "read"), ("editor", "edit"), ("viewer", "edit")):
        shared = await client.post(
            f"/tasks/{built.task_id}/shares",
            json={"email": f"{actor}@example.com", "permission": permission},
            headers=owner,
        )
        assert shared.status_code == 201, shared.text
    attached = await client.post(
        f"/tasks/{built.task_id}/attachments",
        files={"file": ("T.txt", b"the task's notes\n", "text/plain")},
        headers=owner,
    )
    assert attached.status_code == 201, attached.text
    built.attachment_id = attached.json()["id"]
    # An account locked after failed logins: unlocking it is a change to see.
    built.users["locked"] = await user(client, app, "locked@example.com", "member")
    await app.state.security.stores.accounts.change(
        UUID(built.id("locked")),
        AccountChange(locked=True, bump_token_version=False),
        now=datetime.now(UTC),
        events=lambda before, after: [],
    )
    return built


def _routes(app: Any) -> set[tuple[str, str]]:
    return {(method, entry.path) for entry in route_table(app.routes) for method in entry.methods}


@pytest.mark.parametrize("backend", ["sqlite"])
def test_every_route_has_a_matrix_entry(app: Any) -> None:
    routes = _routes(app)

    assert routes - set(MATRIX) == set(), "routes without a matrix entry"
    assert set(MATRIX) - routes == set(), "matrix entries without a route"


CASES = [(route, actor) for route in MATRIX for actor in ACTORS]


@pytest.mark.parametrize(("route", "actor"), CASES, ids=[f"{m} {p} as {a}" for (m, p), a in CASES])
async def test_authorization_matrix(world: World, route: tuple[str, str], actor: str) -> None:
    method, _ = route
    entry = MATRIX[route]
    path, kwargs = entry.build(world, actor)
    before = await world.snapshot()

    response = await world.client.request(method, path, headers=world.headers(actor), **kwargs)

    after = await world.snapshot()
    assert response.status_code == entry.expect[actor], response.text
    if response.status_code >= 400:
        assert response.headers["content-type"] == "application/problem+json"
        assert changed(before, after) == set(), "a refused call changed the database"
    else:
        await entry.effect(world, actor, before, after)
