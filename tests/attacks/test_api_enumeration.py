"""Account enumeration: unknown, wrong-password and disabled accounts answer alike.

OWASP Authentication Cheat Sheet ("Authentication and Error Messages"), ASVS 6.3.8,
API2:2023; API.md: 401 ``invalid-credentials`` for unknown email, wrong password,
disabled or locked account alike, and the same 202 for a new or a taken email.
Timing is measured by the benchmarks, never here.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.helpers import STRONG_PASSWORD, register, without_request_id

WRONG_PASSWORD = "not the right passphrase at all 9"

Attempt = Callable[[httpx.AsyncClient, str, str], Awaitable[httpx.Response]]


async def _json_login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/login", json={"email": email, "password": password})


async def _form_login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/auth/token", data={"username": email, "password": password})


LOGINS: dict[str, Attempt] = {"json-login": _json_login, "form-token": _form_login}


def _header_names(response: httpx.Response) -> set[str]:
    return {name.lower() for name in response.headers}


@pytest.fixture
async def accounts(client: httpx.AsyncClient, app: Any) -> None:
    """alice@example.com is active; carol@example.com is disabled; both know their password."""
    for email in ("alice@example.com", "carol@example.com"):
        assert (await register(client, email)).status_code == 202
    stores = app.state.security.stores
    carol = await stores.accounts.get_by_email("carol@example.com")
    assert carol is not None
    await stores.accounts.update(carol.id, is_active=False)


CASES = {
    "unknown-email": ("nobody@example.com", STRONG_PASSWORD),
    "unknown-email-wrong-password": ("nobody@example.com", WRONG_PASSWORD),
    "malformed-email": ("not-an-email", STRONG_PASSWORD),
    "disabled-account-right-password": ("carol@example.com", STRONG_PASSWORD),
    "disabled-account-wrong-password": ("carol@example.com", WRONG_PASSWORD),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
@pytest.mark.parametrize("attempt", list(LOGINS), ids=list(LOGINS))
async def test_failed_login_looks_like_a_wrong_password(
    client: httpx.AsyncClient, accounts: None, attempt: str, case: str
) -> None:
    log_in = LOGINS[attempt]
    baseline = await log_in(client, "alice@example.com", WRONG_PASSWORD)

    response = await log_in(client, *CASES[case])

    assert baseline.status_code == response.status_code == 401
    assert without_request_id(response.json()) == without_request_id(baseline.json())
    assert _header_names(response) == _header_names(baseline)


@pytest.mark.parametrize("attempt", list(LOGINS), ids=list(LOGINS))
async def test_wrong_password_answers_invalid_credentials(
    client: httpx.AsyncClient, accounts: None, attempt: str
) -> None:
    response = await LOGINS[attempt](client, "alice@example.com", WRONG_PASSWORD)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/invalid-credentials"
    assert "alice" not in response.text


@pytest.mark.parametrize("attempt", list(LOGINS), ids=list(LOGINS))
async def test_disabled_account_cannot_log_in_with_its_password(
    client: httpx.AsyncClient, accounts: None, attempt: str
) -> None:
    response = await LOGINS[attempt](client, "carol@example.com", STRONG_PASSWORD)

    assert response.status_code == 401
    assert "access_token" not in response.text


@pytest.mark.parametrize(
    "taken", ["alice@example.com", "ALICE@Example.com"], ids=["same-spelling", "other-case"]
)
async def test_registering_a_taken_email_answers_like_a_new_one(
    client: httpx.AsyncClient, accounts: None, taken: str
) -> None:
    fresh = await register(client, f"new-{uuid.uuid4().hex[:8]}@example.com")

    response = await register(client, taken, "another long passphrase 77 here")

    assert fresh.status_code == response.status_code == 202
    assert response.json() == fresh.json()
    assert _header_names(response) == _header_names(fresh)


async def test_registering_a_taken_email_keeps_the_existing_password(
    client: httpx.AsyncClient, accounts: None
) -> None:
    await register(client, "alice@example.com", "another long passphrase 77 here")

    old = await _json_login(client, "alice@example.com", STRONG_PASSWORD)
    new = await _json_login(client, "alice@example.com", "another long passphrase 77 here")
    assert old.status_code == 200
    assert new.status_code == 401


async def test_weak_password_on_a_taken_email_answers_like_on_a_new_one(
    client: httpx.AsyncClient, accounts: None
) -> None:
    fresh = await register(client, "someone-new@example.com", "short pw 1")

    response = await register(client, "alice@example.com", "short pw 1")

    assert fresh.status_code == response.status_code == 422
    assert without_request_id(response.json()) == without_request_id(fresh.json())
