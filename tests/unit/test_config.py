"""The start-up gate: production refuses each insecure setting and names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config import BastionSettings, check_settings
from bastion.errors import ConfigurationError
from bastion_tasks import create_app
from bastion_tasks.settings import TaskSettings

SECURE: dict[str, Any] = {
    "env": "production",
    "database_url": "postgresql+asyncpg://db/bastion?ssl=verify-full",
    "password_profile": "rfc9106-low-memory",
    "mail_backend": "smtp",
    "smtp_host": "smtp.example.org",
    "public_url": "https://tasks.example.org",
    "breached_passwords_api": True,
    "metrics_token": "a-long-random-scrape-token-for-prometheus",
}


def _settings(**values: Any) -> BastionSettings:
    return BastionSettings(_env_file=None, **{**SECURE, **values})  # type: ignore[call-arg]


def test_secure_production_settings_pass() -> None:
    findings = check_settings(_settings(), keys_exist=True)

    assert findings == []


@pytest.mark.parametrize(
    ("values", "keys_exist", "setting"),
    [
        pytest.param({}, False, "BASTION_SIGNING_KEYS_FILE", id="no-signing-keys"),
        pytest.param(
            {"jwt_algorithm": "HS256", "jwt_secret": "x" * 31},
            True,
            "BASTION_JWT_SECRET",
            id="short-hs256-secret",
        ),
        pytest.param({"jwt_algorithm": "HS256"}, True, "BASTION_JWT_SECRET", id="no-hs256-secret"),
        pytest.param({"debug": True}, True, "BASTION_DEBUG", id="debug"),
        pytest.param({"cors_origins": "*"}, True, "BASTION_CORS_ORIGINS", id="cors-star"),
        pytest.param(
            {"cors_origins": "http://app.example.org"}, True, "BASTION_CORS_ORIGINS", id="cors-http"
        ),
        pytest.param({"allowed_hosts": "*"}, True, "BASTION_ALLOWED_HOSTS", id="any-host"),
        pytest.param({"cookie_secure": False}, True, "BASTION_COOKIE_SECURE", id="insecure-cookie"),
        pytest.param(
            {"password_profile": "test-only-insecure"},
            True,
            "BASTION_PASSWORD_PROFILE",
            id="weak-argon2",
        ),
        pytest.param(
            {"rate_limit_enabled": False}, True, "BASTION_RATE_LIMIT_ENABLED", id="no-limits"
        ),
        pytest.param(
            {"login_defence_enabled": False},
            True,
            "BASTION_LOGIN_DEFENCE_ENABLED",
            id="no-login-defence",
        ),
        pytest.param({"mail_backend": "outbox"}, True, "BASTION_MAIL_BACKEND", id="outbox"),
        pytest.param({"smtp_host": None}, True, "BASTION_SMTP_HOST", id="smtp-without-host"),
        pytest.param(
            {"smtp_security": "none"}, True, "BASTION_SMTP_SECURITY", id="plain-remote-smtp"
        ),
        pytest.param(
            {"public_url": "http://tasks.example.org"}, True, "BASTION_PUBLIC_URL", id="http-links"
        ),
    ],
)
def test_production_refuses_insecure_setting(
    values: dict[str, Any], keys_exist: bool, setting: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        check_settings(_settings(**values), keys_exist=keys_exist)

    assert caught.value.setting == setting
    assert setting in str(caught.value)


def test_plain_smtp_to_loopback_passes() -> None:
    findings = check_settings(
        _settings(smtp_host="127.0.0.1", smtp_security="none"), keys_exist=True
    )

    assert findings == []


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        pytest.param(
            {"require_verified_email": False},
            "BASTION_REQUIRE_VERIFIED_EMAIL",
            id="unverified-logins",
        ),
        pytest.param(
            {"breached_passwords_api": False},
            "BASTION_BREACHED_PASSWORDS_API",
            id="no-breach-source",
        ),
    ],
)
def test_production_warns_about_a_weaker_account_setting(
    values: dict[str, Any], setting: str
) -> None:
    findings = check_settings(_settings(**values), keys_exist=True)

    assert [(f.setting, f.fatal) for f in findings] == [(setting, False)]


def test_verified_email_is_required_in_production_by_default() -> None:
    assert _settings().verified_email_required is True
    assert _settings(env="development").verified_email_required is False


def test_hs256_with_a_long_secret_passes() -> None:
    findings = check_settings(
        _settings(jwt_algorithm="HS256", jwt_secret="Zr0s8kqP3wXv1mN7yT5cLhB2dF9gJ4aQ"),
        keys_exist=False,
    )

    assert findings == []


def test_sqlite_in_production_only_warns() -> None:
    findings = check_settings(_settings(database_url="sqlite+aiosqlite:///x.db"), keys_exist=True)

    assert [(f.setting, f.fatal) for f in findings] == [("BASTION_DATABASE_URL", False)]


def test_development_reports_without_raising() -> None:
    findings = check_settings(
        _settings(env="development", debug=True, cors_origins="*"), keys_exist=False
    )

    assert {f.setting for f in findings} == {
        "BASTION_DEBUG",
        "BASTION_CORS_ORIGINS",
        "BASTION_SIGNING_KEYS_FILE",
    }


def test_password_min_length_cannot_go_below_12() -> None:
    with pytest.raises(ValueError, match="password_min_length"):
        _settings(password_min_length=11)


def test_trusted_proxies_must_be_networks() -> None:
    with pytest.raises(ValueError, match="trusted_proxies"):
        _settings(trusted_proxies="10.0.0.0/8,not-a-network")


def test_settings_read_prefixed_environment(
    monkeypatch: pytest.MonkeyPatch, clean_environment: None
) -> None:
    monkeypatch.setenv("BASTION_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("BASTION_ACCESS_TOKEN_TTL_SECONDS", "600")

    settings = BastionSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.access_token_ttl_seconds == 600


def test_create_app_refuses_production_without_keys(tmp_path: Path) -> None:
    settings = TaskSettings(_env_file=None, **{**SECURE, "data_dir": tmp_path})  # type: ignore[call-arg]

    with pytest.raises(ConfigurationError, match="BASTION_SIGNING_KEYS_FILE"):
        create_app(settings)

    assert not (tmp_path / "signing-keys.json").exists()


def test_role_permissions_are_read_from_json(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "BASTION_ROLE_PERMISSIONS", '{"viewer": [], "member": ["READ"], "admin": ["ADMIN"]}'
    )

    roles = BastionSettings(_env_file=None).roles  # type: ignore[call-arg]

    assert roles.as_dict()["member"] == ["READ"]
    assert roles.as_dict()["viewer"] == []


def test_role_permissions_must_leave_admin_with_admin(clean_environment: None) -> None:
    with pytest.raises(ValidationError, match="admin role must hold ADMIN"):
        BastionSettings(_env_file=None, role_permissions={"admin": ["READ"]})  # type: ignore[call-arg]


def test_production_refuses_admin_for_a_non_admin_role(clean_environment: None) -> None:
    settings = _settings(role_permissions={"member": ["ADMIN"], "admin": ["ADMIN"]})

    with pytest.raises(ConfigurationError) as caught:
        check_settings(settings, keys_exist=True)

    assert caught.value.setting == "BASTION_ROLE_PERMISSIONS"


def test_rate_limits_are_read_as_json_over_the_defaults(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_RATE_LIMITS", '{"reads": "250 per 30 seconds"}')

    policies = BastionSettings(_env_file=None).policies  # type: ignore[call-arg]

    assert (policies["reads"].quota, policies["reads"].window) == (250, 30)
    assert (policies["writes"].quota, policies["writes"].window) == (10, 60)
    assert (policies["login"].quota, policies["login-ip"].quota) == (5, 20)


@pytest.mark.parametrize("text", ["lots", "0/minute", "10/fortnight"])
def test_an_unreadable_rate_limit_is_refused_and_named(text: str) -> None:
    with pytest.raises(ValidationError, match="reads"):
        _settings(rate_limits={"reads": text})


def test_the_hard_lock_never_waits_for_more_than_100_failures() -> None:
    with pytest.raises(ValidationError):
        _settings(login_lock_after=101)


def test_a_policy_name_must_fit_a_header() -> None:
    with pytest.raises(ValidationError, match="policy name"):
        _settings(rate_limits={'reads", "x': "5/minute"})


@pytest.mark.parametrize(
    "origin",
    ["https://app.example/", "https://app.example/path", "app.example", "ftp://app.example"],
)
def test_a_cors_origin_must_be_a_bare_origin(origin: str) -> None:
    with pytest.raises(ValidationError, match="is not an origin"):
        _settings(cors_origins=origin)


def test_production_answers_only_for_the_public_host_unless_told() -> None:
    assert _settings().hosts == ["tasks.example.org"]
    assert _settings(allowed_hosts="a.example.org,b.example.org").hosts == [
        "a.example.org",
        "b.example.org",
    ]
    assert _settings(env="development").hosts == []


@pytest.mark.parametrize(
    ("values", "mode"),
    [
        pytest.param({}, "off", id="production-default"),
        pytest.param({"env": "development"}, "public", id="development-default"),
        pytest.param({"docs_access": "admin"}, "admin", id="admin"),
        pytest.param({"docs_access": "public", "docs_enabled": False}, "off", id="disabled-wins"),
        pytest.param({"env": "development", "docs_enabled": False}, "off", id="disabled"),
    ],
)
def test_who_may_read_the_api_docs(values: dict[str, Any], mode: str) -> None:
    assert _settings(**values).docs_mode == mode


def test_public_docs_in_production_only_warn() -> None:
    findings = check_settings(_settings(docs_access="public"), keys_exist=True)

    assert [(f.setting, f.fatal) for f in findings] == [("BASTION_DOCS_ACCESS", False)]


@pytest.mark.parametrize("access", ["admin", "off"])
def test_restricted_docs_in_production_pass(access: str) -> None:
    findings = check_settings(_settings(docs_access=access), keys_exist=True)

    assert findings == []


def test_docs_access_is_one_of_the_known_modes() -> None:
    with pytest.raises(ValidationError, match="docs_access"):
        _settings(docs_access="everyone")
