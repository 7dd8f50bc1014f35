"""ID tokens of a sign-in, validated as OpenID Connect Core 1.0 §3.1.3.7 requires: the
signature with the provider's published key for a pinned public-key algorithm, ``iss``
exactly the provider's, ``aud`` naming this client (and ``azp`` this client when it names
others too), ``exp`` and ``iat`` against the injected clock, and the ``nonce`` this
browser's request sent (compared in constant time)."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import jwt

from bastion.clock import Clock
from bastion.errors import InvalidTokenError
from bastion.oidc._http import ProviderUnavailableError
from bastion.oidc._jwt import header, media_type, number_claim, text_claim
from bastion.oidc._keys import RemoteKeySet

__all__ = ["IDClaims", "validate_id_token"]

# An access token (RFC 9068) is not an ID token: a provider's tokens are told apart by type.
_REFUSED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_MAX_AGE_OF_ISSUE = timedelta(minutes=10)  # an ID token is issued for this very sign-in


@dataclass(frozen=True)
class IDClaims:
    """What a sign-in keeps of a valid ID token."""

    issuer: str
    sub: str
    email: str | None
    email_verified: bool
    name: str | None
    amr: tuple[str, ...]
    auth_time: int | None
    claims: dict[str, Any] = field(repr=False, compare=False)


async def validate_id_token(
    token: str,
    *,
    keys: RemoteKeySet,
    issuer: str,
    client_id: str,
    nonce: str,
    algorithms: Collection[str],
    clock: Clock,
    leeway: timedelta,
    issuer_matches: Callable[[str, dict[str, Any]], bool] | None = None,
) -> IDClaims:
    """The claims of ``token`` if it is a valid ID token of ``issuer`` for ``client_id``
    answering the request that sent ``nonce``.

    ``issuer_matches(iss, claims)``: for a provider whose issuer depends on the tenant
    (Microsoft's multi-tenant endpoint), the check of ``iss`` instead of equality.

    Raises:
        InvalidTokenError: the token is not such an ID token (the reason says why).
    """
    if not nonce or not nonce.isascii():
        raise ValueError("the nonce sent must be a non-empty ASCII string")
    jose = header(token)
    alg = jose.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidTokenError("algorithm not allowed")
    typ = jose.get("typ")
    if isinstance(typ, str) and media_type(typ) in _REFUSED_TYPES:
        raise InvalidTokenError("wrong token type")
    kid = jose.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidTokenError("unknown kid")
    try:
        key = await keys.key(kid, alg)
    except ProviderUnavailableError:
        raise InvalidTokenError("provider unavailable") from None
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            options={
                "require": ["iss", "sub", "aud", "exp", "iat"],
                "verify_aud": False,  # checked below: aud may hold several, with azp
                "verify_iss": False,  # checked below: exact, or the tenant's
                "verify_exp": False,  # checked below against the injected clock
                "verify_nbf": False,
                "verify_iat": False,
                "enforce_minimum_key_length": True,
            },
        )
    except jwt.InvalidSignatureError:
        raise InvalidTokenError("bad signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidTokenError(f"missing claim {exc.claim}") from None
    except jwt.PyJWTError:
        raise InvalidTokenError("invalid token") from None
    iss = text_claim(claims, "iss")
    if not (issuer_matches(iss, claims) if issuer_matches else iss == issuer):
        raise InvalidTokenError("wrong issuer")
    _check_audience(claims, client_id)
    _check_times(claims, clock, leeway)
    sent = claims.get("nonce")
    # The nonces Bastion sends are ASCII; anything else (a lone surrogate too) is not one.
    if (
        not isinstance(sent, str)
        or not sent.isascii()
        or not hmac.compare_digest(sent.encode(), nonce.encode())
    ):
        raise InvalidTokenError("wrong nonce")
    amr = claims.get("amr")
    auth_time = claims.get("auth_time")
    return IDClaims(
        issuer=iss,
        sub=text_claim(claims, "sub"),
        email=claims["email"] if isinstance(claims.get("email"), str) else None,
        # Only a JSON true is a verified address (some providers send the string "true").
        email_verified=claims.get("email_verified") is True,
        name=claims["name"] if isinstance(claims.get("name"), str) else None,
        amr=tuple(m for m in amr if isinstance(m, str)) if isinstance(amr, list) else (),
        auth_time=number_claim(claims, "auth_time") if auth_time is not None else None,
        claims=claims,
    )


def _check_audience(claims: dict[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if client_id not in audiences:
        raise InvalidTokenError("wrong audience")
    azp = claims.get("azp")
    if len(audiences) > 1 and azp is None:
        raise InvalidTokenError("missing claim azp")  # §3.1.3.7 (4): several audiences
    if azp is not None and azp != client_id:
        raise InvalidTokenError("wrong authorized party")  # §3.1.3.7 (5)


def _check_times(claims: dict[str, Any], clock: Clock, leeway: timedelta) -> None:
    now = clock.now().timestamp()
    slack = leeway.total_seconds()
    if number_claim(claims, "exp") <= now - slack:
        raise InvalidTokenError("expired")
    issued = number_claim(claims, "iat")
    if issued > now + slack:
        raise InvalidTokenError("issued in the future")
    if issued < now - slack - _MAX_AGE_OF_ISSUE.total_seconds():
        raise InvalidTokenError("issued too long ago")  # §3.1.3.7 (10)
