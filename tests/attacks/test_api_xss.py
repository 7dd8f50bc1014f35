"""Stored XSS through task descriptions: every payload of the rich-text corpus, sent
through the API, is stored and served with only the allowlisted markup.

OWASP XSS Prevention Cheat Sheet rule 6 (sanitize rich text with a dedicated library);
API.md: a description is sanitized HTML. Each payload is posted as a description (and
sent again by PATCH), read back, and the stored HTML is parsed with a real HTML parser
(tests/rich_text.py). One request per payload, all against one app per backend: a
failure names every payload that got through. That the output is a fixed point of the
sanitizer is tested on the same corpus in tests/unit/test_sanitize_html.py.

Titles and tags are plain text, stored as sent; the JSON that carries them is not a
document a browser would run (``Content-Type: application/json``, CSP
``default-src 'none'``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.helpers import user
from tests.rich_text import html_violations, xss_payloads

PAYLOADS = xss_payloads()
REL = 'rel="noopener noreferrer nofollow"'
ALLOWED = {
    "formatting": "<p><strong>Due</strong> <em>soon</em><br>see <code>x</code></p>",
    "list": "<ul><li>one</li><li>two</li></ul><ol><li>first</li></ol>",
    "quote-and-code": "<blockquote><p>q</p></blockquote><pre><code>a &lt; b</code></pre>",
    "link": f'<a href="https://example.org/spec" title="Spec" {REL}>spec</a>',
    "mailto": f'<a href="mailto:team@example.org" {REL}>mail us</a>',
}


@pytest.fixture
async def author(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "author@example.com")


async def _stored(client: httpx.AsyncClient, auth: dict[str, str], task_id: str) -> str:
    response = await client.get(f"/tasks/{task_id}", headers=auth)
    assert response.status_code == 200, response.text
    return str(response.json()["description"])


def _judge(sent: httpx.Response, stored: str) -> list[str]:
    problems = [] if sent.status_code in (200, 201) else [f"status {sent.status_code}"]
    if sent.status_code in (200, 201) and sent.json()["description"] != stored:
        problems.append("the answer differs from what is stored")
    return problems + html_violations(stored)


async def test_every_payload_posted_as_a_description_is_stored_safe(
    client: httpx.AsyncClient, author: dict[str, Any]
) -> None:
    failures: dict[str, list[str]] = {}
    for name, payload in PAYLOADS.items():
        sent = await client.post(
            "/tasks", json={"title": name, "description": payload}, headers=author["auth"]
        )
        stored = await _stored(client, author["auth"], sent.json()["id"]) if sent.is_success else ""
        if problems := _judge(sent, stored):
            failures[name] = problems

    assert failures == {}


async def test_every_payload_patched_into_a_description_is_stored_safe(
    client: httpx.AsyncClient, author: dict[str, Any]
) -> None:
    created = await client.post("/tasks", json={"title": "target"}, headers=author["auth"])
    task_id = created.json()["id"]
    failures: dict[str, list[str]] = {}
    for name, payload in PAYLOADS.items():
        sent = await client.patch(
            f"/tasks/{task_id}", json={"description": payload}, headers=author["auth"]
        )
        if problems := _judge(sent, await _stored(client, author["auth"], task_id)):
            failures[name] = problems

    assert failures == {}


@pytest.mark.parametrize("markup", list(ALLOWED.values()), ids=list(ALLOWED))
async def test_allowed_markup_is_stored_as_sent(
    client: httpx.AsyncClient, author: dict[str, Any], markup: str
) -> None:
    created = await client.post(
        "/tasks", json={"title": "rich", "description": markup}, headers=author["auth"]
    )

    assert created.status_code == 201
    assert await _stored(client, author["auth"], created.json()["id"]) == markup


async def test_titles_and_tags_are_plain_text_in_a_json_answer(
    client: httpx.AsyncClient, author: dict[str, Any]
) -> None:
    title = "<script>alert(1)</script>"
    tag = "<img src=x onerror=alert(1)>"

    created = await client.post(
        "/tasks", json={"title": title, "tags": [tag]}, headers=author["auth"]
    )

    assert created.status_code == 201
    read = await client.get(f"/tasks/{created.json()['id']}", headers=author["auth"])
    assert (read.json()["title"], read.json()["tags"]) == (title, [tag])
    assert created.headers["content-type"] == "application/json"
    assert read.headers["content-type"] == "application/json"
    assert created.headers["x-content-type-options"] == "nosniff"
    assert created.headers["content-security-policy"].startswith("default-src 'none'")
