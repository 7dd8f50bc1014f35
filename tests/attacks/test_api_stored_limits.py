"""Attack: stretch a field past its limit between validation and storage.

A limit promises what is stored and sent back, not what was sent: a field whose stored
form differs from the input (sanitized HTML, where ``<`` becomes ``&lt;``; NFC, where
one code point can become three; a file name cut in bytes) is measured in its stored
form (OWASP Input Validation Cheat Sheet: canonicalize, then validate). Otherwise 10,000
characters of ``<`` are stored and served as 40,000, on every task read and list.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import httpx
import pytest

from tests import samples
from tests.helpers import user
from tests.samples import upload

# One code point that NFC turns into three (a composition exclusion): U+1D160, MUSICAL
# SYMBOL EIGHTH NOTE, is U+1D158 U+1D165 U+1D16E in every normalization form.
TRIPLES = "\U0001d160"
SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


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


def _locs(response: httpx.Response) -> list[list[Any]]:
    return [error["loc"] for error in response.json().get("errors", [])]


async def test_a_description_that_grows_past_the_limit_when_sanitized_is_refused(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    description = "<" * 10_000  # within the limit as sent; "&lt;" * 10_000 once sanitized

    created = await client.post(
        "/tasks", json={"title": "t", "description": description}, headers=owner["auth"]
    )

    assert created.status_code == 422, created.text[:200]
    assert created.json()["type"] == "/problems/validation-error"
    assert _locs(created) == [["body", "description"]]
    assert await _tasks(client, owner) == [owner["task"]]


async def test_a_patch_cannot_stretch_a_stored_description_past_the_limit(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    url = f"/tasks/{owner['task']['id']}"

    changed = await client.patch(url, json={"description": "&" * 10_000}, headers=owner["auth"])

    assert changed.status_code == 422, changed.text[:200]
    assert _locs(changed) == [["body", "description"]]
    stored = (await client.get(url, headers=owner["auth"])).json()
    assert stored == owner["task"]


async def test_a_description_at_the_limit_once_sanitized_is_stored_whole(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    description = "<" * 2_500  # "&lt;" * 2_500: exactly 10,000 characters stored

    created = await client.post(
        "/tasks", json={"title": "t", "description": description}, headers=owner["auth"]
    )

    assert created.status_code == 201, created.text[:200]
    stored = (await client.get(f"/tasks/{created.json()['id']}", headers=owner["auth"])).json()
    assert stored["description"] == "&lt;" * 2_500
    assert len(stored["description"]) == 10_000


@SQLITE
async def test_a_description_that_shrinks_when_sanitized_still_obeys_the_input_limit(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    # The limit holds on both sides: what is sent is bounded too, so no request makes
    # the sanitizer chew through a megabyte that would be cut down to nothing.
    description = "<script>" + "x" * 10_000 + "</script>"

    created = await client.post(
        "/tasks", json={"title": "t", "description": description}, headers=owner["auth"]
    )

    assert created.status_code == 422
    assert _locs(created) == [["body", "description"]]


@SQLITE
@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"title": TRIPLES * 67}, ["body", "title"]),
        ({"title": "t", "tags": [TRIPLES * 11]}, ["body", "tags", "0"]),
    ],
    ids=["title", "tag"],
)
async def test_one_line_text_is_measured_after_normalization(
    client: httpx.AsyncClient, owner: dict[str, Any], body: dict[str, Any], loc: list[Any]
) -> None:
    # 67 and 11 code points as sent; 201 and 33 once NFC-normalized, as they would be stored.
    assert len(unicodedata.normalize("NFC", TRIPLES * 67)) == 201

    created = await client.post("/tasks", json=body, headers=owner["auth"])
    changed = await client.patch(f"/tasks/{owner['task']['id']}", json=body, headers=owner["auth"])

    assert (created.status_code, changed.status_code) == (422, 422)
    assert loc in _locs(created)
    assert loc in _locs(changed)
    assert await _tasks(client, owner) == [owner["task"]]


@SQLITE
async def test_a_display_name_is_measured_after_normalization(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    changed = await client.patch(
        "/users/me", json={"display_name": TRIPLES * 34}, headers=owner["auth"]
    )

    assert changed.status_code == 422
    assert _locs(changed) == [["body", "display_name"]]
    me = (await client.get("/users/me", headers=owner["auth"])).json()
    assert me["display_name"] is None


async def test_a_file_name_that_grows_when_normalized_is_stored_within_its_limit(
    client: httpx.AsyncClient, owner: dict[str, Any]
) -> None:
    name = TRIPLES * 60 + ".txt"  # 244 UTF-8 bytes as sent, 724 once NFC-normalized

    response = await upload(client, owner["task"]["id"], owner["auth"], samples.text(), name)

    assert response.status_code == 201, response.text
    stored = response.json()["filename"]
    listed = await client.get(f"/tasks/{owner['task']['id']}/attachments", headers=owner["auth"])
    assert listed.json()[0]["filename"] == stored
    assert len(stored.encode()) <= 255
    assert stored.endswith(".txt")
    assert unicodedata.normalize("NFC", stored) == stored
