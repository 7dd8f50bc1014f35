"""Small helpers the API and attack tests share."""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any
from uuid import uuid4

import httpx
from altcha import v1 as altcha

from bastion.accounts import normalize_email
from bastion.stores import Account

STRONG_PASSWORD = "correct horse battery staple 42"


def without_request_id(body: dict[str, Any]) -> dict[str, Any]:
    """A problem body minus its per-request id, for comparing two answers."""
    return {name: value for name, value in body.items() if name != "request_id"}


async def register(
    client: httpx.AsyncClient, email: str, password: str = STRONG_PASSWORD, **extra: Any
) -> httpx.Response:
    return await client.post("/auth/register", json={"email": email, "password": password, **extra})


async def login(
    client: httpx.AsyncClient, email: str, password: str = STRONG_PASSWORD
) -> dict[str, Any]:
    response = await client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return dict(response.json())


async def signed_up(client: httpx.AsyncClient, email: str) -> dict[str, Any]:
    """Register and log in; return the token pair with an ``auth`` header dict added."""
    assert (await register(client, email)).status_code == 202
    pair = await login(client, email)
    pair["auth"] = {"Authorization": f"Bearer {pair['access_token']}"}
    return pair


_HASHES: dict[str, str] = {}


async def add_user(app: Any, email: str, role: str = "member", **fields: Any) -> Account:
    """An account stored directly (no sign-up round trip), with STRONG_PASSWORD and a
    verified address unless ``email_verified=False``."""
    fields.setdefault("email_verified", True)
    security = app.state.security
    profile = security.settings.password_profile
    if profile not in _HASHES:
        _HASHES[profile] = await security.hasher.hash(STRONG_PASSWORD)
    shown, key = normalize_email(email)
    now = datetime.now(UTC)
    account = Account(
        id=uuid4(),
        email=shown,
        email_key=key,
        password_hash=_HASHES[profile],
        created_at=now,
        updated_at=now,
        role=role,
        **fields,
    )
    await security.stores.accounts.add(account)
    return account


async def user(client: httpx.AsyncClient, app: Any, email: str, role: str = "member") -> Any:
    """A stored account of ``role``, logged in: the token pair plus ``auth`` and ``id``."""
    account = await add_user(app, email, role)
    pair = await login(client, email)
    pair["auth"] = {"Authorization": f"Bearer {pair['access_token']}"}
    pair["id"] = str(account.id)
    pair["email"] = email
    return pair


async def refreshed_auth(client: httpx.AsyncClient, pair: dict[str, Any]) -> dict[str, str]:
    """Rotate ``pair``'s refresh token; the Authorization header of the new access token."""
    response = await client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def solve(challenge: dict[str, Any]) -> str:
    """The base64 ALTCHA payload that solves ``challenge`` (what the widget sends back)."""
    found = altcha.solve_challenge(
        challenge["challenge"],
        challenge["salt"],
        challenge["algorithm"],
        challenge["maxnumber"],
    )
    assert found is not None
    payload = {
        "algorithm": challenge["algorithm"],
        "challenge": challenge["challenge"],
        "number": found.number,
        "salt": challenge["salt"],
        "signature": challenge["signature"],
    }
    return base64.b64encode(json.dumps(payload).encode()).decode()


_LINK = re.compile(r"(https?://\S+?)#token=([A-Za-z0-9_.-]+)")


def link_in(message: EmailMessage, path: str) -> str:
    """The token of the link to ``path`` in an emailed ``message``."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    for url, token in _LINK.findall(text):
        if url.endswith(path):
            return str(token)
    raise AssertionError(f"no link to {path} in {message['Subject']!r}")


def mail_to(messages: list[EmailMessage], address: str) -> list[EmailMessage]:
    return [m for m in messages if m["To"] == address]
