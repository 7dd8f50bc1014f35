"""``/openapi.json`` documents every error as the RFC 9457 problem the service sends,
and every answer the layers in front of the routes give: 429 with its rate-limit fields
wherever the limiter runs, 503 with ``Retry-After``, 431, and 413/415 where a body is
taken; a real 429 of the running app is what its schema says.

The schema alone does not depend on the stores, so those tests run on SQLite only; the
live 429 runs on both backends (the in-process limiter, and Redis's script).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin
from uuid import uuid4

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.definitions import OPENAPI_31_VALIDATOR

from tests.conftest import AppMaker
from tests.helpers import user

sqlite_only = pytest.mark.parametrize("backend", ["sqlite"])

_METHODS = {"get", "put", "post", "delete", "patch"}
_PROBLEM = {"schema": {"$ref": "#/components/schemas/Problem"}}
_RATE_LIMIT_FIELDS = {"Retry-After", "RateLimit", "RateLimit-Policy"}


async def _operations(client: httpx.AsyncClient) -> list[tuple[str, dict[str, Any]]]:
    schema = (await client.get("/openapi.json")).json()
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    ]


@sqlite_only
async def test_every_error_response_is_a_problem(client: httpx.AsyncClient) -> None:
    wrong = [
        (label, status, sorted(response.get("content", {})))
        for label, operation in await _operations(client)
        for status, response in operation["responses"].items()
        if status[0] in "45" and list(response.get("content", {})) != ["application/problem+json"]
    ]

    assert wrong == []


@sqlite_only
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


@sqlite_only
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


@sqlite_only
async def test_a_route_keeps_its_own_error_descriptions(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()

    responses = schema["paths"]["/tasks/{task_id}"]["delete"]["responses"]

    assert responses["404"]["description"] == "No such task, or one the caller may not see"


async def _served_schema(make: AppMaker, **settings: Any) -> tuple[Any, dict[str, Any]]:
    """An app with ``settings`` changed, and the schema it serves."""
    app = await make.app(**settings)
    client = await make.client(app)
    return app, (await client.get("/openapi.json")).json()


def _each_operation(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if method in _METHODS
    ]


def _headers(schema: dict[str, Any], response: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A documented response's header objects, references resolved."""
    found = {}
    for name, header in response.get("headers", {}).items():
        ref = header.get("$ref", "")
        found[name] = schema["components"]["headers"][ref.rsplit("/", 1)[1]] if ref else header
    return found


@sqlite_only
async def test_the_schema_is_a_valid_openapi_document(make: AppMaker) -> None:
    _, schema = await _served_schema(make, rate_limit_enabled=True)
    # OpenAPI 3.1 ("Relative References in URLs") lets tokenUrl be a relative reference;
    # the specification's JSON Schema (2022-10-07) says "uri", so it is checked absolute.
    flows = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]
    flows["password"]["tokenUrl"] = urljoin("http://testserver", flows["password"]["tokenUrl"])

    errors = [
        (error.message, "/".join(map(str, error.instance_path)))
        for error in OPENAPI_31_VALIDATOR.iter_errors(schema)
    ]

    assert errors == []


@sqlite_only
async def test_with_rate_limits_every_operation_documents_429_and_its_fields(
    make: AppMaker,
) -> None:
    _, schema = await _served_schema(make, rate_limit_enabled=True)

    wrong = []
    for label, operation in _each_operation(schema):
        response = operation["responses"].get("429", {})
        headers = _headers(schema, response)
        if (
            response.get("content") != {"application/problem+json": _PROBLEM}
            or set(headers) != _RATE_LIMIT_FIELDS
            or not all(header["required"] for header in headers.values())
        ):
            wrong.append((label, sorted(headers)))

    assert wrong == []
    assert len(_each_operation(schema)) > 30


@sqlite_only
async def test_without_rate_limits_429_is_documented_only_where_a_route_limits_itself(
    make: AppMaker,
) -> None:
    _, schema = await _served_schema(make, rate_limit_enabled=False)

    documented = {label for label, op in _each_operation(schema) if "429" in op["responses"]}

    assert "GET /tasks" not in documented
    assert "POST /auth/login" in documented  # the per-account limit and the stuffing block
    assert "RateLimit" not in schema["components"]["headers"]


@sqlite_only
@pytest.mark.parametrize("limits", [True, False], ids=["limits-on", "limits-off"])
async def test_every_operation_documents_503_with_retry_after_and_431(
    make: AppMaker, limits: bool
) -> None:
    _, schema = await _served_schema(make, rate_limit_enabled=limits)

    wrong = [
        label
        for label, operation in _each_operation(schema)
        for status, fields in (("503", {"Retry-After"}), ("431", set()))
        if operation["responses"].get(status, {}).get("content")
        != {"application/problem+json": _PROBLEM}
        or set(_headers(schema, operation["responses"][status])) != fields
    ]

    assert wrong == []


@sqlite_only
async def test_every_documented_retry_after_is_required_seconds(make: AppMaker) -> None:
    _, schema = await _served_schema(make, rate_limit_enabled=True)

    retry_after = schema["components"]["headers"]["Retry-After"]

    assert retry_after["required"] is True
    assert retry_after["schema"] == {"type": "integer", "minimum": 0}


@sqlite_only
async def test_the_body_cap_documented_is_the_configured_one(make: AppMaker) -> None:
    _, schema = await _served_schema(make, max_body_bytes=123_456)

    described = schema["paths"]["/tasks"]["post"]["responses"]["413"]["description"]

    assert "123456 bytes" in described


@sqlite_only
async def test_allowlisted_hosts_document_the_foreign_host_answer(make: AppMaker) -> None:
    _, schema = await _served_schema(make, allowed_hosts=["testserver"])

    missing = [label for label, op in _each_operation(schema) if "400" not in op["responses"]]

    assert missing == []
    assert "invalid-host" in schema["paths"]["/tasks"]["get"]["responses"]["400"]["description"]


@sqlite_only
async def test_every_state_changing_operation_documents_the_csrf_refusal(
    client: httpx.AsyncClient,
) -> None:
    missing = [
        label
        for label, operation in await _operations(client)
        if not label.startswith("GET ") and "403" not in operation["responses"]
    ]

    assert missing == []


# A sample of operations: public and signed in, reads, writes and deletes, and the
# credential routes' own classes.
_SAMPLE = [
    pytest.param("GET", "/healthz", False, None, id="GET /healthz"),
    pytest.param("GET", "/tasks", True, None, id="GET /tasks"),
    pytest.param("POST", "/tasks", True, {"title": "t"}, id="POST /tasks"),
    pytest.param("DELETE", "/tasks/{task_id}", True, None, id="DELETE /tasks/{task_id}"),
    pytest.param("POST", "/auth/logout-all", True, None, id="POST /auth/logout-all"),
    pytest.param(
        "POST",
        "/auth/register",
        False,
        {"email": "x@example.com", "password": "p"},
        id="POST /auth/register",
    ),
    pytest.param("POST", "/auth/refresh", False, {"refresh_token": "x"}, id="POST /auth/refresh"),
]


@pytest.mark.parametrize(("method", "path", "signed_in", "body"), _SAMPLE)
async def test_a_real_429_is_what_the_schema_documents(
    make: AppMaker, method: str, path: str, signed_in: bool, body: Any
) -> None:
    # The other quotas at their defaults; reads lower, so that a 429 comes in fewer requests.
    app, served = await _served_schema(
        make, rate_limit_enabled=True, rate_limits={"reads": "10/minute"}
    )
    client = await make.client(app, ip="198.51.100.9")
    headers = (await user(client, app, "alice@example.com"))["auth"] if signed_in else {}
    operation = schemathesis.openapi.from_dict(served)[path][method]
    parameters = {"task_id": str(uuid4())} if "{task_id}" in path else {}
    url = path.format(**parameters)

    answers = []
    for _ in range(100):  # over each quota these routes count against
        answer = await client.request(method, url, json=body, headers=headers)
        answers.append(answer.status_code)
        if answer.status_code == 429:
            break

    assert answers[-1] == 429, answers[-5:]
    assert {name.lower() for name in _RATE_LIMIT_FIELDS} <= set(answer.headers.keys())
    sent = {"body": body} if body is not None else {}
    operation.Case(path_parameters=parameters or None, **sent).validate_response(
        answer,
        checks=[
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
