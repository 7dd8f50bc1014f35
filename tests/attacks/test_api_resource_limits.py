"""Attack: make one request cost too much (OWASP API4:2023). Refused before any route
runs: deep or wide JSON (422), huge headers (431), a body over the cap (413, declared or
streamed), too large a page (422); a request over its time budget is cut off (503). The
process keeps serving after each."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import APIRouter

from tests.conftest import AppMaker
from tests.helpers import user


async def _ok(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200


async def test_deeply_nested_json_is_refused_before_parsing(make: AppMaker) -> None:
    app = await make.app(max_json_depth=8)
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")

    for depth in (9, 100_000):
        body = "[" * depth + "]" * depth
        response = await client.post(
            "/tasks",
            content=body,
            headers={**alice["auth"], "Content-Type": "application/json"},
        )
        assert response.status_code == 422, depth
        assert response.headers["content-type"] == "application/problem+json"
        assert "nested deeper than 8" in response.json()["errors"][0]["msg"]
    allowed = await client.post(
        "/tasks", json={"title": "ok", "tags": ["a"]}, headers=alice["auth"]
    )
    assert allowed.status_code == 201
    await _ok(client)


async def test_wide_json_arrays_are_refused(make: AppMaker) -> None:
    app = await make.app(max_json_items=50)
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")

    wide = await client.post(
        "/tasks", json={"title": "t", "tags": ["x"] * 51}, headers=alice["auth"]
    )
    many_keys = await client.post(
        "/tasks",
        content=json.dumps({f"k{i}": 1 for i in range(51)}),
        headers={**alice["auth"], "Content-Type": "application/json"},
    )

    assert wide.status_code == 422
    assert "more than 50 members" in wide.json()["errors"][0]["msg"]
    assert many_keys.status_code == 422
    listed = await client.get("/tasks", headers=alice["auth"])
    assert listed.json()["items"] == []  # nothing half-written


async def test_oversized_headers_answer_431(make: AppMaker) -> None:
    app = await make.app(max_header_bytes=4096)
    client = await make.client(app)

    big = await client.get("/healthz", headers={"X-Junk": "a" * 5000})
    many = await client.get("/healthz", headers={f"X-H{i}": "1" for i in range(120)})

    assert big.status_code == 431
    assert big.json()["type"] == "/problems/headers-too-large"
    assert many.status_code == 431
    await _ok(client)


async def test_a_streamed_body_over_the_cap_is_cut_off(make: AppMaker) -> None:
    app = await make.app(max_body_bytes=4096)
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"title": "'
        for _ in range(10):
            yield b"a" * 1024
        yield b'"}'

    response = await client.post(
        "/tasks", content=chunks(), headers={**alice["auth"], "Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert response.json()["type"] == "/problems/payload-too-large"
    await _ok(client)


async def test_an_http2_body_without_a_length_is_counted_too(make: AppMaker) -> None:
    # HTTP/1.x reads a request without Content-Length or Transfer-Encoding as bodiless,
    # so the cap need not count one; HTTP/2 may stream a body without either.
    app = await make.app(max_body_bytes=4096)
    alice = await user(await make.client(app), app, "alice@example.com")

    async def as_http2_unframed(scope: dict[str, Any], receive: Any, send: Any) -> None:
        framing = {b"content-length", b"transfer-encoding"}
        headers = [(n, v) for n, v in scope["headers"] if n.lower() not in framing]
        await app({**scope, "http_version": "2", "headers": headers}, receive, send)

    client = await make.client(as_http2_unframed)
    big = json.dumps({"title": "a" * 8192}).encode()
    response = await client.post(
        "/tasks", content=big, headers={**alice["auth"], "Content-Type": "application/json"}
    )

    assert response.status_code == 413
    assert (await client.get("/tasks", headers=alice["auth"])).json()["items"] == []


async def test_a_huge_page_size_is_refused(make: AppMaker) -> None:
    app = await make.app()
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")

    response = await client.get("/tasks", params={"limit": 10_000}, headers=alice["auth"])

    assert response.status_code == 422


async def test_a_request_over_its_time_budget_answers_503_and_the_app_keeps_serving(
    make: AppMaker,
) -> None:
    app = await make.app(request_timeout_seconds=0.2)
    guard = app.state.guard
    slow = APIRouter()

    @slow.get("/slow", dependencies=[guard.public("test route")])
    async def slow_route() -> dict[str, str]:
        await asyncio.sleep(5)
        return {"status": "late"}

    app.include_router(slow)
    client = await make.client(app)

    response = await client.get("/slow")

    assert response.status_code == 503
    assert response.json()["type"] == "/problems/request-timeout"
    assert response.headers["Retry-After"] == "1"
    await _ok(client)


async def test_a_content_type_padded_with_unicode_space_is_still_measured(
    make: AppMaker,
) -> None:
    app = await make.app(max_json_depth=8)
    client = await make.client(app)
    alice = await user(client, app, "alice@example.com")
    body = "[" * 50 + "]" * 50

    for padded in (b"application/json\xa0", b"application/json\x85"):
        response = await client.post(
            "/tasks",
            content=body,
            headers=[*alice["auth"].items(), ("Content-Type", padded)],
        )
        assert response.status_code == 422, padded
        assert "nested deeper than 8" in response.json()["errors"][0]["msg"]
