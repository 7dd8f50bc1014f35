"""The sign-in providers of ``BASTION_OAUTH_PROVIDERS`` (API.md): any OpenID provider by
discovery, and presets for Google, Microsoft and GitHub."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

__all__ = [
    "GITHUB",
    "GOOGLE_ISSUER",
    "PROVIDER_NAME",
    "OAuthProvider",
    "google_issuer_matches",
    "is_microsoft_issuer",
    "microsoft_issuer_matches",
]

GOOGLE_ISSUER = "https://accounts.google.com"
# GitHub is OAuth 2 without OpenID Connect: its endpoints, and the API that names the
# user and their verified addresses.
GITHUB = {
    "authorization_endpoint": "https://github.com/login/oauth/authorize",
    "token_endpoint": "https://github.com/login/oauth/access_token",
    "user": "https://api.github.com/user",
    "emails": "https://api.github.com/user/emails",
}
_MICROSOFT = re.compile(
    r"https://login\.microsoftonline\.com/(?P<tenant>[A-Za-z0-9.-]{1,64})/v2\.0"
)
# The tenant-independent endpoints: their discovery names the issuer as a template.
_MICROSOFT_MULTI = frozenset({"common", "organizations", "consumers"})
_TENANT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# A provider's name is a path segment (/auth/oauth/<name>/...).
PROVIDER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


class OAuthProvider(BaseModel):
    """One sign-in provider; its name is its key in the settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: Literal["oidc", "google", "microsoft", "github"]
    issuer: str | None = None
    client_id: Annotated[str, Field(min_length=1, max_length=512)]
    client_secret: SecretStr
    scopes: list[str] | None = None
    display_name: str | None = None
    token_endpoint_auth_method: Literal["client_secret_basic", "client_secret_post"] = (
        "client_secret_basic"  # noqa: S105 (a method's name, not a secret)
    )
    # The provider's ``amr`` values (RFC 8176: "mfa", "otp", "hwk"...) that count as this
    # service's second factor: a sign-in whose ID token names one needs no TOTP code here.
    second_factor_amr: list[Annotated[str, Field(min_length=1, max_length=32)]] = Field(
        default_factory=list, max_length=16
    )

    @model_validator(mode="after")
    def _issuer(self) -> OAuthProvider:
        if self.preset == "oidc" and not self.issuer:
            raise ValueError("an oidc provider needs its issuer")
        if self.preset == "microsoft" and (
            self.issuer is None or _MICROSOFT.fullmatch(self.issuer) is None
        ):
            raise ValueError(
                "a microsoft provider needs its issuer: "
                "https://login.microsoftonline.com/<tenant or common>/v2.0"
            )
        if self.preset in ("google", "github") and self.issuer is not None:
            raise ValueError(f"a {self.preset} provider takes no issuer")
        return self

    @property
    def is_oidc(self) -> bool:
        return self.preset != "github"

    @property
    def expected_issuer(self) -> str | None:
        """The issuer the discovery document must name (None: GitHub, not OpenID)."""
        if self.preset == "google":
            return GOOGLE_ISSUER
        if self.preset == "microsoft" and self.multi_tenant:
            return "https://login.microsoftonline.com/{tenantid}/v2.0"
        return self.issuer

    @property
    def multi_tenant(self) -> bool:
        match = _MICROSOFT.fullmatch(self.issuer or "") if self.preset == "microsoft" else None
        return match is not None and match["tenant"] in _MICROSOFT_MULTI

    def issuer_matches(self) -> Callable[[str, dict[str, Any]], bool] | None:
        """The check of an ID token's ``iss`` where it is not plain equality."""
        if self.preset == "google":
            return google_issuer_matches
        if self.multi_tenant:
            return microsoft_issuer_matches
        return None

    @property
    def requested_scopes(self) -> list[str]:
        if self.scopes is not None:
            return self.scopes
        return (
            ["read:user", "user:email"]
            if self.preset == "github"
            else [
                "openid",
                "email",
                "profile",
            ]
        )

    def label(self, name: str) -> str:
        default = {"google": "Google", "microsoft": "Microsoft", "github": "GitHub"}
        return self.display_name or default.get(self.preset, name)


def is_microsoft_issuer(iss: str) -> bool:
    """Whether ``iss`` names a Microsoft tenant's v2.0 issuer (any tenant's)."""
    return _MICROSOFT.fullmatch(iss) is not None


def google_issuer_matches(iss: str, claims: dict[str, Any]) -> bool:
    """Google's ID tokens name their issuer with or without the scheme (its OpenID
    Connect documentation: ``accounts.google.com`` or ``https://accounts.google.com``)."""
    return iss in (GOOGLE_ISSUER, "accounts.google.com")


def microsoft_issuer_matches(iss: str, claims: dict[str, Any]) -> bool:
    """Microsoft's multi-tenant endpoint: ``iss`` must be the issuer of the tenant the
    token names (``tid``), not any tenant's (an app that trusted every issuer from the
    template would take a token minted in an attacker's own tenant for another's)."""
    tid = claims.get("tid")
    return (
        isinstance(tid, str)
        and _TENANT_ID.fullmatch(tid) is not None
        and iss == f"https://login.microsoftonline.com/{tid}/v2.0"
    )
