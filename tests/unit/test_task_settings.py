"""The settings split: the core's settings know nothing of tasks; the task service reads
its attachment settings from the same variables and refuses an unsafe one by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from bastion.config import BastionSettings
from bastion_cli import app as cli
from bastion_tasks import create_app_from_env
from bastion_tasks.settings import TaskSettings
from tests.unit.test_config import SECURE

ATTACHMENT_SETTINGS = {"attachment_max_bytes", "attachment_types", "attachment_quota_bytes"}


@pytest.fixture
def attachment_environment(monkeypatch: pytest.MonkeyPatch, clean_environment: None) -> None:
    monkeypatch.setenv("BASTION_ATTACHMENT_MAX_BYTES", "2048")
    monkeypatch.setenv("BASTION_ATTACHMENT_TYPES", "image/png, application/pdf")
    monkeypatch.setenv("BASTION_ATTACHMENT_QUOTA_BYTES", "4096")


def test_the_core_settings_have_no_task_setting(attachment_environment: None) -> None:
    settings = BastionSettings(_env_file=None)  # type: ignore[call-arg]

    assert not ATTACHMENT_SETTINGS & set(BastionSettings.model_fields)
    assert not any(hasattr(settings, name) for name in ATTACHMENT_SETTINGS)


def test_the_task_settings_are_the_core_settings_and_the_attachments() -> None:
    added = set(TaskSettings.model_fields) - set(BastionSettings.model_fields)

    assert added == ATTACHMENT_SETTINGS
    assert set(BastionSettings.model_fields) <= set(TaskSettings.model_fields)


def test_the_task_settings_read_the_attachment_variables(attachment_environment: None) -> None:
    settings = TaskSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.attachment_max_bytes == 2048
    assert settings.attachment_types == ["image/png", "application/pdf"]
    assert settings.attachment_quota_bytes == 4096


def test_the_service_built_from_the_environment_applies_them(
    attachment_environment: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BASTION_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'tasks.db'}")
    monkeypatch.setenv("BASTION_PASSWORD_PROFILE", "test-only-insecure")

    attachments = create_app_from_env().state.attachments

    assert attachments.policy.max_bytes == 2048
    assert attachments.policy.types == {"image/png", "application/pdf"}
    assert attachments.quota_bytes == 4096


@pytest.fixture
def production_with_svg(
    monkeypatch: pytest.MonkeyPatch, clean_environment: None, tmp_path: Path
) -> None:
    """Secure production settings but for SVG attachments, which can carry script."""
    monkeypatch.chdir(tmp_path)
    for name, value in {**SECURE, "data_dir": tmp_path / "var"}.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        monkeypatch.setenv(f"BASTION_{name.upper()}", text)
    monkeypatch.setenv("BASTION_ATTACHMENT_TYPES", "image/png,image/svg+xml")


def test_production_refuses_an_unsafe_attachment_type_by_name(production_with_svg: None) -> None:
    with pytest.raises(ValidationError, match="attachment_types") as caught:
        create_app_from_env()

    assert "image/svg+xml" in str(caught.value)


def test_serve_refuses_an_unsafe_attachment_type_by_name(production_with_svg: None) -> None:
    result = CliRunner().invoke(cli, ["serve"])

    assert result.exit_code == 2
    assert "attachment_types" in result.output
    assert "image/svg+xml" in result.output


def test_the_core_alone_is_not_refused_for_a_task_setting(production_with_svg: None) -> None:
    settings = BastionSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.is_production
    assert settings.public_url == SECURE["public_url"]
