"""The settings of external token issuers (``BASTION_EXTERNAL_ISSUERS``, API.md)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.authz import ROLE_ORDER

__all__ = ["ASYMMETRIC_ALGORITHMS", "ExternalIssuer"]

# RFC 8725 §3.1-3.2: an issuer's tokens are checked with its published public keys, so only
# public-key algorithms: never "none", never HS* (a public key used as an HMAC secret).
ASYMMETRIC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class ExternalIssuer(BaseModel):
    """One issuer whose access tokens the guard accepts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: Annotated[str, Field(min_length=1, max_length=2048)]
    audience: str | list[str]
    algorithms: list[str] = Field(default_factory=lambda: ["RS256"], min_length=1)
    # A dotted path to a string or a list of strings (``realm_access.roles``).
    role_claim: str | None = None
    role_map: dict[str, str] = Field(default_factory=dict)
    require_typ: bool = True  # RFC 9068 §2.1: typ "at+jwt"

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str | list[str]) -> str | list[str]:
        values = [value] if isinstance(value, str) else value
        if not values or not all(isinstance(v, str) and v for v in values):
            raise ValueError("audience must be a non-empty string or list of them")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: list[str]) -> list[str]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"algorithms {refused} are not allowed; use public-key ones: "
                f"{sorted(ASYMMETRIC_ALGORITHMS)}"
            )
        return value

    @field_validator("role_map")
    @classmethod
    def _roles(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted({role for role in value.values() if role not in ROLE_ORDER})
        if unknown:
            raise ValueError(f"role_map: unknown roles {unknown}; roles are {list(ROLE_ORDER)}")
        return value

    @property
    def audiences(self) -> list[str]:
        return [self.audience] if isinstance(self.audience, str) else list(self.audience)
