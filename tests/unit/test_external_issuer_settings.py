"""BASTION_EXTERNAL_ISSUERS: read from its JSON variable; only public-key algorithms, known
roles, one entry per issuer; production refuses an issuer reached without TLS or one
that is this service's own issuer, naming the setting."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from bastion.config import BastionSettings, check_settings
from bastion.errors import ConfigurationError
from tests.unit.test_config import SECURE


def issuer(**values: Any) -> dict[str, Any]:
    return {
        "issuer": "https://id.example.com/realms/api",
        "audience": "tasks-api",
        "role_claim": "realm_access.roles",
        "role_map": {"task-admin": "admin"},
    } | values


def settings(issuers: list[dict[str, Any]], **values: Any) -> BastionSettings:
    return BastionSettings(_env_file=None, **{**SECURE, "external_issuers": issuers, **values})  # type: ignore[call-arg]


def test_issuers_are_read_from_their_json_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_EXTERNAL_ISSUERS", json.dumps([issuer(audience=["a", "b"])]))

    read = BastionSettings(_env_file=None)  # type: ignore[call-arg]

    [entry] = read.external_issuers
    assert entry.audiences == ["a", "b"]
    assert entry.algorithms == ["RS256"]  # the default
    assert entry.require_typ is True  # RFC 9068 by default


def test_a_good_issuer_passes_production() -> None:
    assert check_settings(settings([issuer()]), keys_exist=True) == []


@pytest.mark.parametrize(
    "changes",
    [{"issuer": "http://id.example.com"}, {"issuer": "bastion"}],
    ids=["plain-http", "own-issuer"],
)
def test_production_refuses_a_plain_or_own_issuer(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError) as refused:
        check_settings(settings([issuer(**changes)]), keys_exist=True)

    assert refused.value.setting == "BASTION_EXTERNAL_ISSUERS"


def test_development_warns_of_a_plain_issuer() -> None:
    found = check_settings(
        settings([issuer(issuer="http://127.0.0.1:8080")], env="development"),
        keys_exist=True,
    )

    assert [f.setting for f in found if f.setting == "BASTION_EXTERNAL_ISSUERS"] == [
        "BASTION_EXTERNAL_ISSUERS"
    ]


@pytest.mark.parametrize(
    "changes",
    [
        {"algorithms": ["HS256"]},
        {"algorithms": ["none"]},
        {"algorithms": []},
        {"role_map": {"x": "superuser"}},
        {"audience": []},
        {"audience": ""},
        {"surprise": True},
    ],
    ids=["hs256", "none", "no-algorithm", "unknown-role", "no-audience", "empty-audience", "extra"],
)
def test_an_unsafe_or_unknown_entry_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        settings([issuer(**changes)])


def test_an_issuer_listed_twice_is_refused() -> None:
    with pytest.raises(ValidationError, match="more than once"):
        settings([issuer(), issuer(audience="other")])
