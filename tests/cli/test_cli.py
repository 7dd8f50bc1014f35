"""The operator's command line, run in-process with the real settings machinery."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.stores import Account, open_stores
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
