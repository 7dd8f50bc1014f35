"""Retired and revoked signing keys, against the real app over HTTP, while it runs.

NIST SP 800-57 Part 1 §5.3 (a retired key only verifies what it protected before, and
only while that can still be valid), RFC 7517 §5 (the JWK set publishes the keys that
verify), OWASP JWT Cheat Sheet (token revocation after a key compromise). The attacker
holds an old private key; the operator rotates or revokes it with ``bastion keys`` while
the service runs, and nothing restarts it. The app's clock is frozen (started at the real
time: the command line stamps its changes with the real clock) and moved by the tests.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from bastion.clock import FrozenClock
from bastion.config import BastionSettings
from bastion.tokens import SigningKey, load_key_file, save_key_file
from bastion_cli import app as cli
from tests.conftest import AppMaker
from tests.helpers import signed_up
from tests.jws import compact

# The default access-token lifetime (15 min) plus the verifier's leeway (30 s).
RETENTION = timedelta(minutes=15, seconds=30)


class Service:
    """A running app with its frozen clock, a client, and Alice's genuine token pair."""

    def __init__(self, app: Any, client: httpx.AsyncClient, clock: FrozenClock) -> None:
        self.app, self.client, self.clock = app, client, clock
        self.pair: dict[str, Any] = {}

    @property
    def keys_path(self) -> Path:
        settings: BastionSettings = self.app.state.security.settings
        return settings.keys_path

    def key(self, kid: str) -> SigningKey:
        """A key as the file holds it: what an attacker who copied the file has."""
        key = load_key_file(self.keys_path).get(kid)
        assert key is not None
        return key

    def forge(self, key: SigningKey, *, iat: int, lifetime: int = 900) -> str:
        """Alice's claims, signed with ``key``'s private half, issued at ``iat``."""
        assert isinstance(key.private_key, Ed25519PrivateKey)
        claims = jwt.decode(self.pair["access_token"], options={"verify_signature": False})
        payload = {**claims, "iat": iat, "nbf": iat, "exp": iat + lifetime, "jti": f"f{iat}"}
        header = {"alg": "EdDSA", "kid": key.kid, "typ": "at+jwt"}
        return compact(header, payload, key.private_key.sign)

    async def me(self, token: str) -> int:
        response = await self.client.get("/users/me", headers={"Authorization": f"Bearer {token}"})
        return response.status_code

    async def published(self) -> set[str]:
        response = await self.client.get("/.well-known/jwks.json")
        assert response.status_code == 200
        return {jwk["kid"] for jwk in response.json()["keys"]}

    def now(self) -> int:
        return int(self.clock.now().timestamp())


@pytest.fixture
async def service(make: AppMaker) -> Service:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    app = await make.app(clock=clock)
    running = Service(app, await make.client(app), clock)
    running.pair = await signed_up(running.client, "alice@example.com")
    return running


class KeysCommand:
    """``bastion keys ...`` on the running service's key file and database, run as the
    operator runs it: in its own thread, beside the service's event loop."""

    async def __call__(self, *args: str) -> Result:
        result = await asyncio.to_thread(CliRunner().invoke, cli, ["keys", *args])
        assert result.exit_code == 0, result.output
        return result


@pytest.fixture
def bastion_keys(
    service: Service, monkeypatch: pytest.MonkeyPatch, clean_environment: None
) -> KeysCommand:
    settings: BastionSettings = service.app.state.security.settings
    monkeypatch.setenv("BASTION_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("BASTION_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("BASTION_LOG_EVENTS_TO_STDOUT", "false")
    return KeysCommand()


def _rotate_at(service: Service, moment: datetime) -> tuple[str, str]:
    """Rotate the key file as ``bastion keys rotate`` does, at ``moment``: (old, new) kids."""
    keys = load_key_file(service.keys_path)
    old = keys.signing_key.kid
    new = keys.rotate(clock=FrozenClock(moment)).kid
    save_key_file(service.keys_path, keys)
    return old, new


def _signed_by(token: str) -> str:
    return str(jwt.get_unverified_header(token)["kid"])


async def test_a_retired_key_stops_verifying_once_its_tokens_have_expired(
    service: Service,
) -> None:
    old = _signed_by(service.pair["access_token"])
    leaked = service.key(old)
    retired = service.clock.now()
    _rotate_at(service, retired)
    # Forged with the leaked key, dated before the retirement, valid for a day.
    forged = service.forge(leaked, iat=service.now() - 10, lifetime=86_400)
    service.clock.advance(1)
    assert await service.me(forged) == 200  # within the retention: indistinguishable

    service.clock.set(retired + RETENTION)

    assert await service.me(forged) == 401
    assert old not in await service.published()


async def test_a_token_minted_with_a_retired_key_after_its_retirement_is_refused(
    service: Service,
) -> None:
    leaked = service.key(_signed_by(service.pair["access_token"]))
    _rotate_at(service, service.clock.now())
    service.clock.advance(2)

    forged = service.forge(leaked, iat=service.now())

    assert await service.me(forged) == 401


async def test_a_revoked_key_is_refused_without_a_restart(
    service: Service, bastion_keys: KeysCommand
) -> None:
    token = service.pair["access_token"]
    kid = _signed_by(token)
    assert await service.me(token) == 200  # verified, and remembered as verified

    await bastion_keys("revoke", "--rotate", "--", kid)
    service.clock.advance(1)  # the ring looks at the key file at most every second

    assert await service.me(token) == 401
    assert kid not in await service.published()


async def test_a_revoked_retired_key_is_refused_before_its_retention_ends(
    service: Service, bastion_keys: KeysCommand
) -> None:
    token = service.pair["access_token"]
    old, _ = _rotate_at(service, service.clock.now())
    service.clock.advance(1)
    assert await service.me(token) == 200

    await bastion_keys("revoke", "--", old)
    service.clock.advance(1)

    assert await service.me(token) == 401
    assert old not in await service.published()


async def test_a_rotation_by_the_command_line_reaches_the_running_service(
    service: Service, bastion_keys: KeysCommand
) -> None:
    old = _signed_by(service.pair["access_token"])
    await bastion_keys("rotate")
    new = load_key_file(service.keys_path).signing_key.kid
    service.clock.advance(1)

    fresh = await signed_up(service.client, "bob@example.com")

    assert _signed_by(fresh["access_token"]) == new != old
    assert await service.me(fresh["access_token"]) == 200
    assert await service.me(service.pair["access_token"]) == 200  # issued before: still good
    assert await service.published() == {old, new}


async def test_a_token_of_a_key_the_service_has_not_read_yet_is_verified(
    service: Service, bastion_keys: KeysCommand
) -> None:
    # Another instance already signs with the new key; this one has not looked at the
    # file since (its clock has not moved): the unknown kid makes it read the file.
    await bastion_keys("rotate")
    new = service.key(load_key_file(service.keys_path).signing_key.kid)

    token = service.forge(new, iat=service.now())

    assert await service.me(token) == 200
