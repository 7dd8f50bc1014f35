"""The sign-in providers' settings: what each preset needs and refuses, and Microsoft's
multi-tenant issuer, which must be the issuer of the tenant the token names."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from bastion.oidc import (
    GOOGLE_ISSUER,
    PROVIDER_NAME,
    OAuthProvider,
    google_issuer_matches,
    microsoft_issuer_matches,
)

TENANT = "9188040d-6c67-4c5b-b112-36a304b66dad"
OTHER_TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SECRET = "a-client-secret-of-forty-characters-long!"


def provider(**values: Any) -> OAuthProvider:
    return OAuthProvider(**({"client_id": "app", "client_secret": SECRET} | values))


def test_each_preset_takes_what_it_needs() -> None:
    google = provider(preset="google")
    github = provider(preset="github", display_name="GitHub Enterprise")
    custom = provider(preset="oidc", issuer="https://id.example.com/realms/main")
    single = provider(preset="microsoft", issuer=f"https://login.microsoftonline.com/{TENANT}/v2.0")
    common = provider(preset="microsoft", issuer="https://login.microsoftonline.com/common/v2.0")

    assert google.expected_issuer == GOOGLE_ISSUER
    assert google.requested_scopes == ["openid", "email", "profile"]
    assert (github.is_oidc, github.expected_issuer) == (False, None)
    assert github.requested_scopes == ["read:user", "user:email"]
    assert github.label("gh") == "GitHub Enterprise"
    assert custom.expected_issuer == "https://id.example.com/realms/main"
    assert custom.label("corp") == "corp"
    assert (single.multi_tenant, single.expected_issuer) == (False, single.issuer)
    assert common.multi_tenant
    assert common.expected_issuer == "https://login.microsoftonline.com/{tenantid}/v2.0"
    assert SECRET not in repr(google)
    assert SECRET not in str(google.model_dump())


@pytest.mark.parametrize(
    "values",
    [
        {"preset": "oidc"},  # no issuer
        {"preset": "microsoft"},
        {"preset": "microsoft", "issuer": "https://login.example.com/common/v2.0"},
        {"preset": "google", "issuer": "https://accounts.google.com.evil.example"},
        {"preset": "github", "issuer": "https://github.com"},
        {"preset": "saml", "issuer": "https://id.example.com"},
        {"preset": "oidc", "issuer": "https://id.example.com", "scopes": ["openid"], "x": 1},
        {"preset": "google", "token_endpoint_auth_method": "none"},
    ],
)
def test_a_provider_missing_or_misnaming_its_issuer_is_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        provider(**values)


def test_microsoft_multi_tenant_tokens_name_their_own_tenants_issuer() -> None:
    own = f"https://login.microsoftonline.com/{TENANT}/v2.0"

    assert microsoft_issuer_matches(own, {"tid": TENANT})
    # A token of one tenant claiming another tenant's issuer, or none, is refused.
    assert not microsoft_issuer_matches(own, {"tid": OTHER_TENANT})
    assert not microsoft_issuer_matches(own, {})
    assert not microsoft_issuer_matches(
        "https://login.microsoftonline.com/{tenantid}/v2.0", {"tid": "{tenantid}"}
    )
    assert not microsoft_issuer_matches("https://login.microsoftonline.com/../v2.0", {"tid": "../"})


def test_google_id_tokens_name_google_with_or_without_the_scheme() -> None:
    google = OAuthProvider(preset="google", client_id="app", client_secret=SECRET)
    matches = google.issuer_matches()

    assert matches is google_issuer_matches
    assert matches("https://accounts.google.com", {})
    assert matches("accounts.google.com", {})
    assert not matches("https://accounts.google.com.evil.example", {})
    assert not matches("http://accounts.google.com", {})
    assert provider(preset="oidc", issuer="https://id.example.com").issuer_matches() is None


@pytest.mark.parametrize("name", ["google", "corp-sso", "a1"])
def test_provider_names_are_path_segments(name: str) -> None:
    assert PROVIDER_NAME.fullmatch(name)


@pytest.mark.parametrize("name", ["", "Google", "a/b", "a b", "-x", "x" * 33, "é"])
def test_other_provider_names_are_refused(name: str) -> None:
    assert not PROVIDER_NAME.fullmatch(name)
