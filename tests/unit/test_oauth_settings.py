"""BASTION_OAUTH_PROVIDERS: read from its JSON variable; production refuses a weak client
secret and an issuer reached without TLS, naming the setting; development only warns;
a provider name must be a path segment."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config import BastionSettings, check_settings
from bastion.errors import ConfigurationError
from tests.unit.test_config import SECURE

STRONG = "k9J2vQx7LmN4pR8sT1wY5zA3bC6dE0fG"


def provider(**values: Any) -> dict[str, Any]:
    return (
        {"preset": "oidc", "issuer": "https://id.example.com", "client_id": "app"}
        | {"client_secret": STRONG}
        | values
    )


def settings(providers: dict[str, Any], **values: Any) -> BastionSettings:
    return BastionSettings(_env_file=None, **{**SECURE, "oauth_providers": providers, **values})  # type: ignore[call-arg]


def test_providers_are_read_from_their_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    google = {"preset": "google", "client_id": "g", "client_secret": STRONG}
    monkeypatch.setenv("BASTION_OAUTH_PROVIDERS", json.dumps({"google": google}))

    read = BastionSettings(_env_file=None)  # type: ignore[call-arg]

    assert read.oauth_providers["google"].client_id == "g"
    assert STRONG not in repr(read)


def test_a_good_provider_passes_production() -> None:
    assert check_settings(settings({"corp": provider()}), keys_exist=True) == []


@pytest.mark.parametrize(
    "changes",
    [
        {"client_secret": "short"},
        {"client_secret": "a" * 40},
        {"issuer": "http://id.example.com"},
    ],
)
def test_production_refuses_a_weak_secret_or_a_plain_issuer(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_settings(settings({"corp": provider(**changes)}), keys_exist=True)

    assert refused.value.setting == "BASTION_OAUTH_PROVIDERS"
    assert STRONG not in str(refused.value)


def test_development_warns_of_the_same() -> None:
    found = check_settings(
        settings({"corp": provider(issuer="http://127.0.0.1:9000")}, env="development"),
        keys_exist=True,
    )

    assert any(f.setting == "BASTION_OAUTH_PROVIDERS" and not f.fatal for f in found)


@pytest.mark.parametrize("name", ["Corp", "a/b", "x" * 33, ""])
def test_a_provider_name_must_be_a_path_segment(name: str) -> None:
    with pytest.raises(ValidationError):
        settings({name: provider()})
