"""``/openapi.json`` documents every error as the RFC 9457 problem the service sends."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

_METHODS = {"get", "put", "post", "delete", "patch"}


async def _operations(client: httpx.AsyncClient) -> list[tuple[str, dict[str, Any]]]:
    schema = (await client.get("/openapi.json")).json()
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    ]


async def test_every_error_response_is_a_problem(client: httpx.AsyncClient) -> None:
    wrong = [
        (label, status, sorted(response.get("content", {})))
        for label, operation in await _operations(client)
        for status, response in operation["responses"].items()
        if status[0] in "45" and list(response.get("content", {})) != ["application/problem+json"]
    ]

    assert wrong == []


async def test_validation_errors_are_documented_with_their_errors(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    refs = {
        response["content"]["application/problem+json"]["schema"]["$ref"]
        for item in schema["paths"].values()
        for operation in item.values()
        for status, response in operation["responses"].items()
        if status == "422"
    }

    assert refs == {"#/components/schemas/ValidationProblem"}
    assert schema["components"]["schemas"]["ValidationProblem"]["required"] == ["errors"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]


async def test_every_route_with_a_body_documents_the_body_errors(
    client: httpx.AsyncClient,
) -> None:
    missing = [
        (label, status)
        for label, operation in await _operations(client)
        if "requestBody" in operation
        for status in ("400", "413", "415", "422")
        if status not in operation["responses"]
    ]

    assert missing == []


async def test_a_route_keeps_its_own_error_descriptions(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    responses = schema["paths"]["/tasks/{task_id}"]["delete"]["responses"]

    assert responses["404"]["description"] == "No such task, or one the caller may not see"
