"""Breached passwords are refused at sign-up, reset and change (ASVS 6.2.12), through a
local server that speaks the Have I Been Pwned range format and through an offline file.

A source that cannot answer never blocks the password: it is logged and the password is
judged by the rest of the policy (fail open).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bastion.accounts import BREACHED_REASON
from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, add_user, login, register
from tests.pwned import PwnedRangeServer, sha1_hex

# Long and random-looking enough for the policy: only the breach lists know it.
BREACHED = "violet tractor marmalade 5150"
FRESH = "a different long passphrase 2026"


@pytest.fixture
def range_server() -> Iterator[PwnedRangeServer]:
    with PwnedRangeServer({BREACHED: 3_730_471}) as server:
        yield server


async def _app(make: AppMaker, server: PwnedRangeServer, **overrides: Any) -> Any:
    return await make.app(
        breached_passwords_api=True,
        breached_passwords_api_url=server.url,
        **overrides,
    )


async def test_registration_with_a_breached_password_is_refused_with_the_reason(
    make: AppMaker, range_server: PwnedRangeServer
) -> None:
    client = await make.client(await _app(make, range_server))

    response = await register(client, "alice@example.com", BREACHED)

    assert response.status_code == 422
    assert response.json()["errors"] == [{"loc": ["body", "password"], "msg": BREACHED_REASON}]
    assert BREACHED not in response.text


async def test_registration_with_an_unbreached_password_passes(
    make: AppMaker, range_server: PwnedRangeServer
) -> None:
    client = await make.client(await _app(make, range_server))

    response = await register(client, "alice@example.com", FRESH)

    assert response.status_code == 202


async def test_only_a_five_character_prefix_leaves_with_padding_asked_for(
    make: AppMaker, range_server: PwnedRangeServer
) -> None:
    client = await make.client(await _app(make, range_server))

    await register(client, "alice@example.com", FRESH)

    [(path, headers)] = range_server.requests
    assert path == f"/range/{sha1_hex(FRESH)[:5]}"
    assert headers["add-padding"] == "true"
    assert sha1_hex(FRESH)[5:] not in path


async def test_password_change_to_a_breached_password_is_refused(
    make: AppMaker, range_server: PwnedRangeServer
) -> None:
    app = await _app(make, range_server)
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    pair = await login(client, "alice@example.com")

    response = await client.post(
        "/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": BREACHED},
        headers={"Authorization": f"Bearer {pair['access_token']}"},
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [{"loc": ["body", "new_password"], "msg": BREACHED_REASON}]


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"delay": 1.0}, id="timeout"),
        pytest.param({"status": 503}, id="server-error"),
        pytest.param({"raw_body": b"<html>maintenance</html>"}, id="malformed"),
    ],
)
async def test_a_range_api_outage_never_blocks_sign_up(
    make: AppMaker, failure: dict[str, Any]
) -> None:
    with PwnedRangeServer({BREACHED: 10}, **failure) as server:
        app = await _app(make, server, breached_passwords_timeout_seconds=0.3)
        client = await make.client(app)
        with capture_events() as events:
            response = await register(client, "alice@example.com", BREACHED)
            await app.state.security.events.drain()

    assert response.status_code == 202
    assert "breach_check_unavailable" in [e.event_type for e in events]


async def test_an_offline_list_refuses_a_breached_password(make: AppMaker, tmp_path: Path) -> None:
    lines = sorted([f"{sha1_hex(BREACHED)}:42", f"{'0' * 40}:1", f"{'F' * 40}:7"])
    path = tmp_path / "pwned-passwords-sha1-ordered-by-hash.txt"
    path.write_text("\r\n".join(lines) + "\r\n")
    client = await make.client(await make.app(breached_passwords_file=path))

    refused = await register(client, "alice@example.com", BREACHED)
    accepted = await register(client, "bob@example.com", FRESH)

    assert refused.status_code == 422
    assert refused.json()["errors"][0]["msg"] == BREACHED_REASON
    assert accepted.status_code == 202


async def test_a_common_password_is_refused_with_its_own_reason(
    client: httpx.AsyncClient,
) -> None:
    response = await register(client, "alice@example.com", "password1234567")

    assert response.status_code == 422
    assert any("common" in e["msg"] for e in response.json()["errors"])
