"""How an external issuer's verified token maps to a local principal: keyed by issuer and
``sub``, its ``jti`` namespaced by issuer and bounded, a session of its own, no token
version, the role its claim maps to or ``none``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from bastion.accounts import ExternalPrincipals
from bastion.clock import SystemClock
from bastion.errors import InvalidTokenError
from bastion.oidc import ExternalClaims
from bastion.tokens import NO_ROLE

ISSUER = "https://id.example.org/realms/main"
OTHER = "https://login.example.net"


@dataclass
class Verified:
    """Stands in for ExternalTokens once it has verified a token (its signature and
    claims are tested against a real provider in tests/attacks/test_external_tokens.py):
    here only the mapping of what it found is under test."""

    claims: ExternalClaims

    def claims_issuer(self, token: str) -> str | None:
        return self.claims.issuer

    async def verify(self, token: str) -> ExternalClaims:
        return self.claims


def found(**values: Any) -> ExternalClaims:
    defaults: dict[str, Any] = {
        "issuer": ISSUER,
        "sub": "f3b1c9",
        "jti": "jti-1",
        "role": "member",
        "exp": 2_000_000_000,
        "iat": 1_900_000_000,
        "email": "ada@example.org",
    }
    return ExternalClaims(**(defaults | values))


async def mapped(token: str = "token", **values: Any) -> Any:
    principals = ExternalPrincipals(Verified(found(**values)), None, None, SystemClock())  # type: ignore[arg-type]
    return await principals.verify(token)


async def test_the_principal_is_keyed_by_issuer_and_subject() -> None:
    one = await mapped()
    again = await mapped(jti="jti-2")
    elsewhere = await mapped(issuer=OTHER)
    other_subject = await mapped(sub="0d4e7a")

    assert one.sub == again.sub
    assert len({one.sub, elsewhere.sub, other_subject.sub}) == 3
    assert uuid.UUID(one.sub).version == 5  # never a local account's (version 4) id
    assert (one.subject, one.email, one.iss) == ("f3b1c9", "ada@example.org", ISSUER)


async def test_the_jti_is_namespaced_by_issuer_and_each_token_is_its_own_session() -> None:
    one = await mapped()
    elsewhere = await mapped(issuer=OTHER)  # the same jti at another issuer
    next_token = await mapped(jti="jti-2")

    assert one.jti.startswith("ext:iss:")
    assert one.jti != elsewhere.jti
    assert len({one.sid, elsewhere.sid, next_token.sid}) == 3
    assert one.tv == -1  # no token version: revoked by time


async def test_without_a_jti_each_token_is_named_by_its_digest() -> None:
    one = await mapped("token-a", jti=None)
    other = await mapped("token-b", jti=None)

    assert len(one.jti) <= 128
    assert one.jti != other.jti


async def test_no_mapped_role_is_the_role_none() -> None:
    assert (await mapped(role=None)).role == NO_ROLE


@pytest.mark.parametrize("sub", ["", "s" * 256])
async def test_an_empty_or_overlong_subject_is_refused(sub: str) -> None:
    with pytest.raises(InvalidTokenError):
        await mapped(sub=sub)
