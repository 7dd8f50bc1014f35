"""Hostile request bodies: each is refused with a 422 problem that locates the field, and
nothing is stored or sent.

OWASP Input Validation Cheat Sheet (allowlist, type, length, canonical form), OWASP
API3:2023 (unknown fields), ASVS 1.5.3 and RFC 7493 (one value per member name), API.md
(limits; a 422 never echoes a password or token). The task cases are the corpus
``tests/vectors/invalid_tasks.json``, the addresses ``tests/vectors/invalid_emails.json``.
Validation runs before any storage, so the corpora run on SQLite; the text that once
reached the database (NUL, lone surrogates) is sent to both backends.
"""

from __future__ import annotations

import json
import unicodedata
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, user
from tests.smtp import SMTPTestServer, mail_settings

VECTORS = Path(__file__).parent.parent / "vectors"
SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
SECRET = "Quasar-Marmalade-7731-Secret"


def _expand(value: Any) -> Any:
    """The corpus' shorthand: ``{"$repeat": s, "times": n}`` is ``s * n``."""
    if isinstance(value, dict) and set(value) == {"$repeat", "times"}:
        return value["$repeat"] * value["times"]
    if isinstance(value, dict):
        return {key: _expand(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_expand(item) for item in value]
    return value


def _content(body: Any) -> bytes:
    if isinstance(body, dict) and set(body) == {"$raw"}:
        return str(body["$raw"]).encode()
    return json.dumps(_expand(body)).encode()


_CORPUS = json.loads((VECTORS / "invalid_tasks.json").read_text(encoding="utf-8"))["cases"]
CASES = [pytest.param(case, id=case["id"]) for case in _CORPUS]
EMAILS = json.loads((VECTORS / "invalid_emails.json").read_text(encoding="utf-8"))["addresses"]
UNSTORABLE = {
    "title-nul": {"title": "a\x00b"},
    "title-lone-surrogate": {"title": "a\ud800b"},
    "tag-lone-surrogate": {"title": "t", "tags": ["\udc00"]},
    "description-lone-surrogate": {"title": "t", "description": "<p>\ud83d</p>"},
}
NOT_UTF8 = {
    "invalid-start-byte": b'{"title": "\xff"}',
    "byte-order-mark": b'\xef\xbb\xbf{"title": "t"}',
    "truncated-sequence": b'{"title": "\xe2\x82"}',
    "overlong-slash": b'{"title": "\xc0\xaf"}',
    "encoded-surrogate": b'{"title": "\xed\xa0\x80"}',
    "latin-1": b'{"title": "caf\xe9"}',
    "utf-16": '{"title": "t"}'.encode("utf-16"),
    "utf-16-without-bom": '{"title": "t"}'.encode("utf-16-le"),
    "utf-32": '{"title": "t"}'.encode("utf-32"),
}


@pytest.fixture
async def owner(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    """A member with one task (``task``), the target of the PATCH cases."""
    pair = await user(client, app, "owner@example.com")
    created = await client.post("/tasks", json={"title": "kept"}, headers=pair["auth"])
    assert created.status_code == 201, created.text
    pair["task"] = created.json()
    return pair


async def _tasks(client: httpx.AsyncClient, owner: dict[str, Any]) -> list[dict[str, Any]]:
    response = await client.get("/tasks", headers=owner["auth"])
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def _locates(response: httpx.Response, loc: list[str]) -> bool:
    errors = response.json().get("errors", [])
    return any(error["loc"][: len(loc)] == loc for error in errors)


async def _send(
    client: httpx.AsyncClient, method: str, url: str, content: bytes, auth: dict[str, str]
) -> httpx.Response:
    headers = {**auth, "Content-Type": "application/json"}
    return await client.request(method, url, content=content, headers=headers)


@SQLITE
@pytest.mark.parametrize("case", CASES)
async def test_an_invalid_body_is_refused_and_nothing_is_stored(
    client: httpx.AsyncClient, owner: dict[str, Any], case: dict[str, Any]
) -> None:
    content = _content(case["body"])
    url = f"/tasks/{owner['task']['id']}"

    created = await _send(client, "POST", "/tasks", content, owner["auth"])
    changed = await _send(client, "PATCH", url, content, owner["auth"])

    assert (created.status_code, changed.status_code) == (422, 422)
    assert created.headers["content-type"] == "application/problem+json"
    assert created.json()["type"] == "/problems/validation-error"
    assert _locates(created, case["loc"]), created.json()["errors"]
    assert _locates(changed, case.get("patch_loc", case["loc"])), changed.json()["errors"]
    assert await _tasks(client, owner) == [owner["task"]]


@pytest.mark.parametrize("body", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
async def test_text_a_database_cannot_store_is_refused_on_every_backend(
    client: httpx.AsyncClient, owner: dict[str, Any], body: dict[str, Any]
) -> None:
    content = json.dumps(body).encode()  # ASCII: a lone surrogate travels as an escape

    response = await _send(client, "POST", "/tasks", content, owner["auth"])

    assert response.status_code == 422
    assert await _tasks(client, owner) == [owner["task"]]


@SQLITE
@pytest.mark.parametrize("method", ["POST", "PATCH"])
@pytest.mark.parametrize("content", list(NOT_UTF8.values()), ids=list(NOT_UTF8))
async def test_a_body_that_is_not_utf8_is_refused(
    client: httpx.AsyncClient, owner: dict[str, Any], content: bytes, method: str
) -> None:
    url = "/tasks" if method == "POST" else f"/tasks/{owner['task']['id']}"

    response = await _send(client, method, url, content, owner["auth"])

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body"]
    assert await _tasks(client, owner) == [owner["task"]]


@SQLITE
async def test_a_duplicate_member_cannot_smuggle_a_role(
    client: httpx.AsyncClient, app: Any
) -> None:
    admin = await user(client, app, "admin@example.com", "admin")
    member = await user(client, app, "member@example.com")
    body = b'{"role": "viewer", "role": "admin"}'

    response = await _send(client, "PATCH", f"/admin/users/{member['id']}", body, admin["auth"])

    assert response.status_code == 422
    assert response.json()["errors"][0]["msg"] == "a JSON object has the same member name twice"
    stored = await app.state.security.stores.accounts.get(uuid.UUID(member["id"]))
    assert stored is not None
    assert stored.role == "member"


@SQLITE
async def test_text_sent_decomposed_is_stored_composed(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    title = unicodedata.normalize("NFD", "Crème brûlée für Zoë")
    tag = unicodedata.normalize("NFD", "café")

    created = await client.post(
        "/tasks", json={"title": title, "tags": [tag]}, headers=owner["auth"]
    )

    assert created.status_code == 201
    assert title != "Crème brûlée für Zoë"
    stored = (await client.get(f"/tasks/{created.json()['id']}", headers=owner["auth"])).json()
    assert stored["title"] == "Crème brûlée für Zoë"
    assert stored["tags"] == ["café"]


LEGITIMATE_TITLES = {
    "emoji-zwj-sequence": ("👩\u200d💻 set up the laptop", "👩\u200d💻 set up the laptop"),
    "persian-zwnj": ("\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",) * 2,
    "unicode-spaces-trimmed": ("\u00a0padded\u3000", "padded"),
    "markup-is-text": ("<b>bold</b> & co", "<b>bold</b> & co"),
}


@SQLITE
@pytest.mark.parametrize(
    ("title", "stored"), list(LEGITIMATE_TITLES.values()), ids=list(LEGITIMATE_TITLES)
)
async def test_legitimate_unicode_text_is_accepted(
    client: httpx.AsyncClient, owner: dict[str, Any], title: str, stored: str
) -> None:
    created = await client.post("/tasks", json={"title": title}, headers=owner["auth"])

    assert created.status_code == 201
    assert created.json()["title"] == stored


@SQLITE
async def test_every_field_at_its_limit_is_accepted(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    body = {
        "title": "é" * 200,
        "description": "x" * 10_000,
        "tags": [f"{i:02d}" + "t" * 30 for i in range(20)],
        "due_date": "2026-12-01T10:00:00.123456+14:00",
    }

    created = await client.post("/tasks", json=body, headers=owner["auth"])

    assert created.status_code == 201
    assert created.json()["title"] == body["title"]
    assert created.json()["tags"] == body["tags"]
    assert created.json()["due_date"] == "2026-11-30T20:00:00.123456Z"


SECRET_FIELDS = {
    "register-password": ("/auth/register", {"email": "x@example.com"}, "password"),
    "login-password": ("/auth/login", {"email": "x@example.com"}, "password"),
    "refresh-token": ("/auth/refresh", {}, "refresh_token"),
    "reset-token": ("/auth/password/reset", {"new_password": "n" * 20}, "token"),
    "reset-new-password": ("/auth/password/reset", {"token": "a.b"}, "new_password"),
    "verify-token": ("/auth/email/verify", {}, "token"),
}
# Wrong in the way the models see first: too long, not a string, not the token syntax.
SECRET_SHAPES: dict[str, Any] = {
    "too-long": SECRET + "-" + "y" * 4100,
    "in-a-list": [SECRET],
    "in-an-object": {"value": SECRET},
    "bad-syntax": SECRET + " <>",
}
SECRET_CASES = [
    pytest.param(route, {**rest, field: value}, id=f"{name}-{shape}")
    for name, (route, rest, field) in SECRET_FIELDS.items()
    for shape, value in SECRET_SHAPES.items()
    if shape != "bad-syntax" or field in {"token"}
]


@SQLITE
@pytest.mark.parametrize(("route", "body"), SECRET_CASES)
async def test_a_422_never_echoes_a_submitted_secret(
    client: httpx.AsyncClient, route: str, body: dict[str, Any]
) -> None:
    response = await client.post(route, json=body)

    assert response.status_code == 422
    assert SECRET not in response.text
    assert SECRET[:8] not in response.text
    assert all("input" not in error for error in response.json()["errors"])


@pytest.fixture
async def mail_app(make: AppMaker, smtp: SMTPTestServer) -> Any:
    return await make.app(**mail_settings(smtp))


@SQLITE
async def test_registering_an_invalid_address_is_refused_and_sends_nothing(
    make: AppMaker, mail_app: Any, smtp: SMTPTestServer
) -> None:
    client = await make.client(mail_app)
    answers: dict[str, Any] = {}
    for name, address in EMAILS.items():
        response = await client.post(
            "/auth/register", json={"email": address, "password": STRONG_PASSWORD}
        )
        answers[name] = (response.status_code, response.json()["errors"][0]["loc"])

    assert answers == {name: (422, ["body", "email"]) for name in EMAILS}
    await mail_app.state.security.drain()
    assert smtp.messages == []


@SQLITE
async def test_registering_a_valid_address_sends_the_mail_the_check_looks_for(
    make: AppMaker, mail_app: Any, smtp: SMTPTestServer
) -> None:
    client = await make.client(mail_app)

    response = await client.post(
        "/auth/register", json={"email": "new@example.com", "password": STRONG_PASSWORD}
    )

    assert response.status_code == 202
    await mail_app.state.security.drain()
    assert len(smtp.messages) == 1


@SQLITE
async def test_sharing_with_an_invalid_address_is_refused_and_shares_nothing(
    make: AppMaker, mail_app: Any, smtp: SMTPTestServer
) -> None:
    client = await make.client(mail_app)
    owner = await user(client, mail_app, "owner@example.com")
    task = (await client.post("/tasks", json={"title": "t"}, headers=owner["auth"])).json()
    answers: dict[str, Any] = {}
    for name, address in EMAILS.items():
        response = await client.post(
            f"/tasks/{task['id']}/shares",
            json={"email": address, "permission": "read"},
            headers=owner["auth"],
        )
        answers[name] = (response.status_code, response.json()["errors"][0]["loc"])

    assert answers == {name: (422, ["body", "email"]) for name in EMAILS}
    shares = await client.get(f"/tasks/{task['id']}/shares", headers=owner["auth"])
    assert shares.json() == []
    await mail_app.state.security.drain()
    assert smtp.messages == []
