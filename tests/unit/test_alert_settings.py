"""The alert settings: rule overrides validated at start, and production refusing a
webhook that is unsigned or not over TLS."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bastion.alerts import DEFAULT_RULES, configure_rules
from bastion.config import BastionSettings, check_settings
from bastion.errors import ConfigurationError
from tests.unit.test_config import SECURE

PRODUCTION: dict[str, Any] = SECURE  # a production configuration that passes the gate
SECRET = "a-webhook-secret-of-at-least-32-bytes!!"
HOOK = "https://hooks.example.org/bastion"


def _settings(**values: Any) -> BastionSettings:
    return BastionSettings(_env_file=None, **{**PRODUCTION, **values})  # type: ignore[call-arg]


def test_production_accepts_a_signed_https_webhook() -> None:
    settings = _settings(alert_webhook_url=HOOK, alert_webhook_secret=SECRET)

    findings = check_settings(settings, keys_exist=True)

    assert [f.setting for f in findings if f.setting.startswith("BASTION_ALERT")] == []


@pytest.mark.parametrize(
    ("values", "setting"),
    [
        pytest.param({"alert_webhook_url": HOOK}, "BASTION_ALERT_WEBHOOK_SECRET", id="no-secret"),
        pytest.param(
            {"alert_webhook_url": HOOK, "alert_webhook_secret": "short"},
            "BASTION_ALERT_WEBHOOK_SECRET",
            id="short-secret",
        ),
        pytest.param(
            {"alert_webhook_url": "http://hooks.example.org/b", "alert_webhook_secret": SECRET},
            "BASTION_ALERT_WEBHOOK_URL",
            id="plain-http",
        ),
    ],
)
def test_production_refuses_an_unsigned_or_plain_http_webhook(
    values: dict[str, Any], setting: str
) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_settings(_settings(**values), keys_exist=True)

    assert refused.value.setting == setting


def test_development_only_reports_a_webhook_without_secret() -> None:
    settings = _settings(env="development", alert_webhook_url="http://127.0.0.1:9000/hook")

    findings = check_settings(settings, keys_exist=True)

    assert "BASTION_ALERT_WEBHOOK_SECRET" in [f.setting for f in findings]


@pytest.mark.parametrize(
    "url", ["ftp://hooks.example.org/b", "not a url", "https://"], ids=["ftp", "text", "no-host"]
)
def test_a_webhook_url_that_is_not_http_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="alert_webhook_url"):
        _settings(alert_webhook_url=url)


def test_rule_overrides_are_read_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch, clean_environment: None
) -> None:
    monkeypatch.setenv(
        "BASTION_ALERT_RULES",
        '{"auth_failures_from_ip": {"threshold": 20}, "token_reuse": {"enabled": false}}',
    )

    settings = BastionSettings(_env_file=None)  # type: ignore[call-arg]
    rules = {rule.name: rule for rule in configure_rules(settings.alert_rules)}

    assert rules["auth_failures_from_ip"].threshold == 20
    assert "token_reuse" not in rules
    assert len(rules) == len(DEFAULT_RULES) - 1


def test_an_override_of_an_unknown_rule_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="unknown alert rule"):
        _settings(alert_rules={"no_such_rule": {"threshold": 3}})
