"""Schemathesis against the service's own OpenAPI schema, in process, signed in.

Every operation of ``/openapi.json`` gets the schema's examples, the coverage phase's
boundary and negative values, and Hypothesis-generated requests, valid and invalid,
sent over ASGI with a member's bearer token (an admin's for ``/admin``). Each answer
must be no server error, a documented status with a documented content type and
documented headers, match its documented schema, and, for every 4xx and 5xx, be an
RFC 9457 problem whose ``status`` is the HTTP status (API.md "Errors"; OWASP API9:2023
asks for documented errors, ASVS 16.5.1 for errors that leak nothing).

Twice: with the rate limits and the login defence at their defaults, as a deployment
runs (so the 429s the fuzzing itself provokes, their ``Retry-After`` and ``RateLimit``
fields are checked against the schema), and with both off, as the other API tests run,
so that every generated request reaches its route and no quota cuts the fuzzing short.
Each run fuzzes the schema its own app serves.

Bounded for CI (docs/fuzzing.md): ``BASTION_FUZZ_MAX_EXAMPLES`` generated examples per
operation (15 by default) and a fixed seed (``BASTION_FUZZ_SEED``), so a run is
reproducible; raise the first for a longer local run.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from bastion.fastapi import PROBLEM_JSON
from bastion.runtime import open_security
from bastion_tasks import create_app
from bastion_tasks.migrate import upgrade
from bastion_tasks.settings import TaskSettings
from tests.conftest import STRONG_PASSWORD, make_settings

MAX_EXAMPLES = int(os.environ.get("BASTION_FUZZ_MAX_EXAMPLES", "15"))
SEED = int(os.environ.get("BASTION_FUZZ_SEED", "9457"))
MEMBER = "member@example.com"
ADMIN = "admin@example.com"
# Routes that end the caller's session get a session of their own for each request.
_ENDS_THE_SESSION = {"/auth/logout", "/auth/logout-all"}
# The settings of each run, over the test settings of tests/conftest.py (which turn the
# rate limits and the login defence off): the defaults, as a deployment runs.
AT_DEFAULTS: dict[str, Any] = {"rate_limit_enabled": True, "login_defence_enabled": True}
WITHOUT_LIMITS: dict[str, Any] = {}


def _served_schema(limits: dict[str, Any]) -> dict[str, Any]:
    """The schema ``/openapi.json`` serves, read from an app that is built and never started.

    Schemathesis parametrizes at collection, so the schema is needed before any fixture;
    ``test_the_fuzzed_schema_is_the_served_one`` checks it against the live route."""
    with tempfile.TemporaryDirectory() as folder:
        app = create_app(make_settings(Path(folder), database_url="sqlite+aiosqlite://", **limits))
        served = app.openapi()
        with start_blocking_portal() as portal:
            portal.call(app.state.security.aclose)
        return served


def _fuzzed(served: dict[str, Any]) -> Any:
    return schemathesis.openapi.from_dict(
        served,
        config=SchemathesisConfig.from_dict(
            {
                "seed": SEED,
                "phases": {
                    "examples": {"enabled": True},
                    "coverage": {"enabled": True},
                    "fuzzing": {"enabled": True},
                    "stateful": {"enabled": False},
                },
                "generation": {"mode": "all", "database": "none"},
            }
        ),
    )


SCHEMA = _served_schema(AT_DEFAULTS)
SCHEMA_WITHOUT_LIMITS = _served_schema(WITHOUT_LIMITS)
schema = _fuzzed(SCHEMA)
schema_without_limits = _fuzzed(SCHEMA_WITHOUT_LIMITS)


def problem_details(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx and 5xx is an RFC 9457 problem: its media type, ``type``, ``title``, and
    a ``status`` equal to the HTTP status (RFC 9457 §3.1)."""
    if response.status_code < 400:
        return None
    media_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip()
    assert media_type == PROBLEM_JSON, f"{response.status_code} answered as {media_type!r}"
    body = response.json()
    assert isinstance(body, dict), f"the problem is not a JSON object: {body!r}"
    assert isinstance(body.get("type"), str), f"no problem type: {body!r}"
    assert isinstance(body.get("title"), str), f"no problem title: {body!r}"
    assert body.get("status") == response.status_code, f"status differs: {body!r}"
    return None


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    problem_details,
]


@dataclass
class Database:
    folder: Path
    url: str

    def settings(self, limits: dict[str, Any]) -> TaskSettings:
        return make_settings(self.folder, database_url=self.url, **limits)


@dataclass
class Served:
    app: Any
    client: asgi.ASGIClient
    member: dict[str, str]
    admin: dict[str, str]
    session: dict[str, str] | None = None

    def own_session(self) -> dict[str, str]:
        """A session of the member's own, for a request that ends its session. Once the
        login quota of the limits at their defaults is spent, the last one (ended by
        then: the route answers 401, or 429 when its own quota is spent too)."""
        answer = self.client.post(
            "/auth/login", json={"email": MEMBER, "password": STRONG_PASSWORD}
        )
        if answer.status_code == 429 and self.session is not None:
            return self.session
        self.session = _bearer(answer)
        return self.session


def _bearer(answer: Any) -> dict[str, str]:
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _login(client: asgi.ASGIClient, email: str) -> dict[str, str]:
    return _bearer(client.post("/auth/login", json={"email": email, "password": STRONG_PASSWORD}))


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Database:
    """A migrated SQLite database with an admin made the operator's way (``bastion users
    create``) and a member who registered through the API."""
    folder = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite+aiosqlite:///{folder / 'bastion.db'}"
    upgrade(url)
    database_ = Database(folder, url)
    settings_ = database_.settings(WITHOUT_LIMITS)

    async def create_admin() -> None:
        security = open_security(settings_)
        try:
            await security.accounts.login.register(
                ADMIN, STRONG_PASSWORD, role="admin", email_verified=True
            )
        finally:
            await security.aclose()

    with start_blocking_portal() as portal:
        portal.call(create_admin)
    app = create_app(settings_)
    try:
        with asgi.get_client(app) as client:
            registered = client.post(
                "/auth/register", json={"email": MEMBER, "password": STRONG_PASSWORD}
            )
            assert registered.status_code == 202, registered.text
    finally:
        asgi.shutdown_lifespans()
    return database_


def _serve(database: Database, limits: dict[str, Any]) -> Iterator[Served]:
    """The app of one operation, started in Schemathesis' event loop thread.

    Schemathesis' pytest plugin ends every ASGI lifespan when a test ends, and an app
    whose lifespan has ended has closed its stores (its in-process rate-limit counts
    too): so each operation gets its own app (over the same database), and its member
    and admin sign in to it."""
    app = create_app(database.settings(limits))
    with asgi.get_client(app) as client:
        yield Served(app, client, _login(client, MEMBER), _login(client, ADMIN))


@pytest.fixture
def served(database: Database) -> Iterator[Served]:
    """An operation's app with the rate limits and the login defence at their defaults."""
    yield from _serve(database, AT_DEFAULTS)


@pytest.fixture
def served_without_limits(database: Database) -> Iterator[Served]:
    """An operation's app with the rate limits and the login defence off."""
    yield from _serve(database, WITHOUT_LIMITS)


@pytest.mark.parametrize(
    ("status", "media_type", "body"),
    [
        pytest.param(404, "application/json", {"detail": "Not Found"}, id="framework-json"),
        pytest.param(500, "text/plain", "Internal Server Error", id="plain-text"),
        pytest.param(
            422, PROBLEM_JSON, {"type": "/problems/x", "title": "X", "status": 400}, id="status"
        ),
        pytest.param(401, PROBLEM_JSON, {"title": "X", "status": 401}, id="no-type"),
    ],
)
def test_the_problem_check_refuses_an_error_that_is_no_problem(
    status: int, media_type: str, body: Any
) -> None:
    response = SimpleNamespace(
        status_code=status, headers={"content-type": [media_type]}, json=lambda: body
    )

    with pytest.raises(AssertionError):
        problem_details(None, response, None)


def test_the_fuzzed_schema_is_the_served_one(served: Served) -> None:
    answer = served.client.get("/openapi.json")

    assert answer.status_code == 200
    assert answer.json() == SCHEMA


def test_the_schema_fuzzed_without_limits_is_the_one_served_then(
    served_without_limits: Served,
) -> None:
    answer = served_without_limits.client.get("/openapi.json")

    assert answer.status_code == 200
    assert answer.json() == SCHEMA_WITHOUT_LIMITS


def test_the_rate_limits_are_on_in_the_fuzzed_schema() -> None:
    assert "429" in SCHEMA["paths"]["/tasks"]["post"]["responses"]
    assert "429" not in SCHEMA_WITHOUT_LIMITS["paths"]["/tasks"]["post"]["responses"]


_BOUNDED = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    # One app per operation serves all of its examples, on purpose.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
    ],
)


def _call_and_validate(case: Any, served: Served) -> None:
    path = case.operation.path
    if path in _ENDS_THE_SESSION:
        headers = served.own_session()
    elif path.startswith("/admin"):
        headers = served.admin
    else:
        headers = served.member

    case.call_and_validate(app=served.app, headers=headers, checks=CHECKS)


@schema.parametrize()
@_BOUNDED
def test_api_conforms_to_its_schema(case: Any, served: Served) -> None:
    _call_and_validate(case, served)


@schema_without_limits.parametrize()
@_BOUNDED
def test_api_conforms_to_its_schema_without_limits(
    case: Any, served_without_limits: Served
) -> None:
    _call_and_validate(case, served_without_limits)
