"""The operator's command line, run in-process with the real settings machinery."""

from __future__ import annotations

import asyncio
import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.clock import FrozenClock
from bastion.stores import Account, EventQuery, TOTPFactor, open_stores
from bastion.tokens import KeySet, save_key_file
from bastion_cli import app
from tests.helpers import STRONG_PASSWORD

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environment: None) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BASTION_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("BASTION_PASSWORD_PROFILE", "test-only-insecure")
    monkeypatch.setenv("BASTION_LOG_EVENTS_TO_STDOUT", "false")
    return tmp_path


def _account(tmp_path: Path, email: str) -> Account | None:
    async def read() -> Account | None:
        stores = open_stores(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        try:
            return await stores.accounts.get_by_email(email)
        finally:
            await stores.aclose()

    return asyncio.run(read())


def _account_role(tmp_path: Path, email: str) -> str | None:
    account = _account(tmp_path, email)
    return account.role if account else None


def test_migrate_creates_the_schema(env: Path) -> None:
    result = runner.invoke(app, ["migrate"])

    assert result.exit_code == 0, result.output
    assert (env / "cli.db").exists()


def test_users_create_migrates_the_embedded_database_and_reads_stdin(env: Path) -> None:
    result = runner.invoke(
        app,
        ["users", "create", "--email", "root@example.com", "--role", "admin", "--password-stdin"],
        input=STRONG_PASSWORD + "\n",
    )

    assert result.exit_code == 0, result.output
    assert _account_role(env, "root@example.com") == "admin"
    assert STRONG_PASSWORD not in result.output


def test_users_create_makes_a_verified_account(env: Path) -> None:
    runner.invoke(
        app,
        ["users", "create", "--email", "ops@example.com", "--password-stdin"],
        input=STRONG_PASSWORD + "\n",
    )

    account = _account(env, "ops@example.com")

    assert account is not None
    assert account.email_verified is True


def test_users_create_prompts_without_echo(env: Path) -> None:
    runner.invoke(app, ["migrate"])

    result = runner.invoke(
        app,
        ["users", "create", "--email", "bob@example.com"],
        input=f"{STRONG_PASSWORD}\n{STRONG_PASSWORD}\n",
    )

    assert result.exit_code == 0, result.output
    assert STRONG_PASSWORD not in result.output
    assert _account_role(env, "bob@example.com") == "member"


def test_users_create_has_no_password_argument(env: Path) -> None:
    runner.invoke(app, ["migrate"])

    result = runner.invoke(
        app, ["users", "create", "--email", "x@example.com", "--password", STRONG_PASSWORD]
    )

    assert result.exit_code != 0
    assert _account_role(env, "x@example.com") is None


def test_users_create_refuses_a_weak_password(env: Path) -> None:
    runner.invoke(app, ["migrate"])

    result = runner.invoke(
        app,
        ["users", "create", "--email", "w@example.com", "--password-stdin"],
        input="password\n",
    )

    assert result.exit_code == 1
    assert "Password refused" in result.output
    assert _account_role(env, "w@example.com") is None


def test_users_create_refuses_an_existing_email(env: Path) -> None:
    runner.invoke(app, ["migrate"])
    args = ["users", "create", "--email", "dup@example.com", "--password-stdin"]
    runner.invoke(app, args, input=STRONG_PASSWORD + "\n")

    result = runner.invoke(
        app, [*args[:3], "DUP@example.com", "--password-stdin"], input=STRONG_PASSWORD + "\n"
    )

    assert result.exit_code == 1
    assert "already exists" in result.output


def test_keys_rotate_adds_a_signing_key_and_keeps_the_old(env: Path) -> None:
    runner.invoke(app, ["keys", "rotate"])
    path = env / "var" / "signing-keys.json"
    first = {k["kid"] for k in json.loads(path.read_text())["keys"]}

    result = runner.invoke(app, ["keys", "rotate"])

    assert result.exit_code == 0, result.output
    kids = {k["kid"] for k in json.loads(path.read_text())["keys"]}
    assert first < kids
    assert len(kids) == 2
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keys_list_shows_kids_but_no_private_material(env: Path) -> None:
    runner.invoke(app, ["keys", "rotate"])
    stored = json.loads((env / "var" / "signing-keys.json").read_text())

    result = runner.invoke(app, ["keys", "list"])

    assert result.exit_code == 0, result.output
    assert stored["keys"][0]["kid"] in result.output
    assert "PRIVATE" not in result.output


def _kids(env: Path) -> list[str]:
    return [k["kid"] for k in json.loads((env / "var" / "signing-keys.json").read_text())["keys"]]


def _stored_event_types(env: Path) -> list[str]:
    async def read() -> list[str]:
        stores = open_stores(f"sqlite+aiosqlite:///{env / 'cli.db'}")
        try:
            return [event.event_type for event in await stores.events.query(EventQuery())]
        finally:
            await stores.aclose()

    return asyncio.run(read())


def test_keys_rotate_records_a_key_rotated_event(env: Path) -> None:
    runner.invoke(app, ["keys", "rotate"])

    result = runner.invoke(app, ["keys", "rotate"])

    assert result.exit_code == 0, result.output
    assert "key_rotated" in _stored_event_types(env)


def test_keys_rotate_prunes_a_key_retired_past_its_retention(env: Path) -> None:
    path = env / "var" / "signing-keys.json"
    clock = FrozenClock(datetime.now(UTC) - timedelta(days=1))
    keys = KeySet.generate(clock=clock)
    expired = keys.signing_key.kid
    keys.rotate(clock=clock)
    save_key_file(path, keys)

    result = runner.invoke(app, ["keys", "rotate"])

    assert result.exit_code == 0, result.output
    assert expired not in _kids(env)
    assert len(_kids(env)) == 2


def test_keys_revoke_removes_a_retired_key_and_records_it(env: Path) -> None:
    runner.invoke(app, ["keys", "rotate"])
    runner.invoke(app, ["keys", "rotate"])
    retired = _kids(env)[0]

    result = runner.invoke(app, ["keys", "revoke", "--", retired])

    assert result.exit_code == 0, result.output
    assert retired not in _kids(env)
    assert "key_revoked" in _stored_event_types(env)


def test_keys_revoke_refuses_the_signing_key_without_rotate(env: Path) -> None:
    runner.invoke(app, ["keys", "rotate"])
    before = _kids(env)

    result = runner.invoke(app, ["keys", "revoke", "--", before[-1]])

    assert result.exit_code == 2
    assert "--rotate" in result.output
    assert _kids(env) == before


def test_keys_revoke_with_rotate_replaces_the_signing_key(env: Path) -> None:
    runner.invoke(app, ["keys", "rotate"])
    (signing,) = _kids(env)

    result = runner.invoke(app, ["keys", "revoke", "--rotate", "--", signing])

    assert result.exit_code == 0, result.output
    assert signing not in _kids(env)
    assert len(_kids(env)) == 1


def test_keys_revoke_refuses_an_unknown_kid(env: Path) -> None:
    runner.invoke(app, ["keys", "rotate"])
    before = _kids(env)

    result = runner.invoke(app, ["keys", "revoke", "no-such-key"])

    assert result.exit_code == 1
    assert _kids(env) == before


def test_serve_refuses_insecure_production(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_ENV", "production")
    monkeypatch.setenv("BASTION_DEBUG", "true")

    result = runner.invoke(app, ["serve"])

    assert result.exit_code == 2
    assert "BASTION_DEBUG" in result.output


def test_serve_refuses_several_workers_without_redis(env: Path) -> None:
    result = runner.invoke(app, ["serve", "--workers", "2"])

    assert result.exit_code == 2
    assert "BASTION_REDIS_URL" in result.output


def _with_second_factor(tmp_path: Path, email: str) -> None:
    async def turn_on() -> None:
        stores = open_stores(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        try:
            account = await stores.accounts.get_by_email(email)
            assert account is not None
            now = datetime.now(UTC)
            await stores.mfa.begin(TOTPFactor(account.id, "v1.sealed", now))
            assert await stores.mfa.confirm(
                account.id, secret="v1.sealed", now=now, recovery_digests=["d" * 64]
            )
        finally:
            await stores.aclose()

    asyncio.run(turn_on())


def test_users_mfa_reset_turns_the_second_factor_off_and_tells_the_owner(env: Path) -> None:
    runner.invoke(
        app,
        ["users", "create", "--email", "lost@example.com", "--password-stdin"],
        input=STRONG_PASSWORD + "\n",
    )
    _with_second_factor(env, "lost@example.com")
    assert _account(env, "lost@example.com").mfa_enabled  # type: ignore[union-attr]

    result = runner.invoke(app, ["users", "mfa-reset", "lost@example.com"])
    again = runner.invoke(app, ["users", "mfa-reset", "lost@example.com"])
    unknown = runner.invoke(app, ["users", "mfa-reset", "nobody@example.com"])

    assert result.exit_code == 0, result.output
    assert _account(env, "lost@example.com").mfa_enabled is False  # type: ignore[union-attr]
    notices = list((env / "var" / "outbox").glob("*-mfa-reset-*.eml"))
    assert len(notices) == 1
    assert again.exit_code == 0
    assert "nothing changed" in again.output
    assert unknown.exit_code != 0
