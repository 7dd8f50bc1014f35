"""JWT access tokens in the RFC 9068 profile, signed and verified with PyJWT.

:class:`AccessTokens` is the recipe: ``issue()`` signs with the key set's signing key,
``verify()`` returns :class:`AccessClaims` or raises :class:`~bastion.errors.InvalidTokenError`
with a precise ``reason``. The reason is for logs and security events only; the HTTP edge
answers every failure with the same ``401 invalid_token`` (RFC 6750 §3.1).

What ``verify()`` enforces, in order:

* the token is three base64url segments with a JSON object header, at most 8 KiB;
* ``typ`` is ``at+jwt`` or ``application/at+jwt``, compared case-insensitively (RFC 9068 §4,
  RFC 8725 §3.11): a refresh token, an ID token or any other JWT is not an access token;
* the key is found by ``kid`` in the key ring, and only there; ``jku``, ``x5u``, ``jwk`` and
  ``x5c`` headers are ignored, so no URL is fetched and no file is read (ASVS 9.1.3). A
  revoked key, and a retired key past its retention, are not there
  (:class:`~bastion.tokens.ring.KeyRing`);
* the algorithm is the key's own; a token whose ``alg`` differs, or is ``none``, is rejected
  before any cryptography runs (RFC 8725 §3.1, RFC 9068 §4, ASVS 9.1.2);
* the signature, ``iss`` and ``aud`` (exact match, ASVS 9.2.3), and the presence of
  ``exp, iat, nbf, iss, aud, sub, jti`` (RFC 9068 §2.2) are checked by PyJWT;
* ``exp``, ``nbf`` and ``iat`` are checked against the injected clock with a leeway of at most
  30 seconds (RFC 7519 §4.1.4-4.1.6);
* a token of a retired key was issued (``iat``) no later than the key's retirement: one
  issued after it was forged with the old private key;
* ``role``, ``sid``, ``client_id`` are non-empty strings and ``tv`` is an integer.

Verified tokens are remembered in a bounded cache keyed by the whole token, signature
included: an Ed25519 verification costs more than the rest of a request, and a client
sends the same token many times. A hit still checks the times against the clock, and
that the very key that verified it still verifies (not revoked, not retired past its
retention, not replaced); revocation of the token is the caller's check, on every
request. Only tokens that verified are cached, so forged ones cost a verification each
and cannot evict anything but the oldest entry.
"""

from __future__ import annotations

import binascii
import json
import secrets
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

import jwt
from jwt.exceptions import InvalidJTIError, InvalidSubjectError
from jwt.types import Options
from jwt.utils import base64url_decode

from bastion.clock import Clock, SystemClock
from bastion.errors import InvalidTokenError
from bastion.tokens.keys import KeySet, SigningKey
from bastion.tokens.ring import KeyRing

__all__ = ["AccessClaims", "AccessTokens"]

_AT_JWT = "at+jwt"  # RFC 9068 §2.1
# RFC 9068 §4: resource servers accept both spellings of the media type, and nothing else.
_ACCEPTED_TYPES = frozenset({_AT_JWT, f"application/{_AT_JWT}"})
_REQUIRED_CLAIMS = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]
_MAX_LEEWAY = timedelta(seconds=30)
_MAX_TOKEN_LENGTH = 8192

# PyJWT compares exp/nbf/iat with the wall clock; Bastion injects its clock, so those three
# checks are switched off here (the claims stay required) and done in ``_check_times``.
_DECODE_OPTIONS: Options = {
    "require": _REQUIRED_CLAIMS,
    "verify_signature": True,
    "verify_aud": True,
    "verify_iss": True,
    "verify_sub": True,
    "verify_jti": True,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "strict_aud": True,
    "enforce_minimum_key_length": True,
}


@dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token.

    ``sid`` names the session the token belongs to, ``tv`` is the account's token version:
    bumping it revokes every access token of the account at once.
    """

    sub: str
    role: str
    jti: str
    sid: str
    tv: int
    iat: int
    nbf: int
    exp: int
    iss: str
    aud: str
    client_id: str
    # When the owner last proved who they are (seconds; a refresh keeps it: step-up reads
    # it) and how (RFC 8176 values: "pwd", "otp", "rec", "ext:<provider>").
    auth_time: int = 0
    amr: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExternalAccessClaims(AccessClaims):
    """The claims of an external issuer's access token (resource-server mode), on the
    local principal it maps to.

    ``sub`` is the local account's id, ``role`` the role the token's role claim maps to
    (``NO_ROLE`` when none does), ``jti`` the token's own id or digest, namespaced by
    issuer, ``sid`` a session of this token alone. It carries no token version (``tv``
    is -1): the account's ``revoked_before`` revokes it by ``iat``. ``subject`` is the
    ``sub`` at the issuer, ``email`` the token's email claim.
    """

    subject: str = ""
    email: str | None = None


NO_ROLE = "none"
"""The role of an external token whose role claim maps to no local role: signed in, and
allowed only the routes that declare ``Guard.authenticated(without_role=True)``."""


class AccessTokens:
    """Issue and verify access tokens with the keys of a :class:`KeyRing` (a :class:`KeySet`
    is wrapped in one whose retired keys verify for ``ttl + leeway``, read from no file).

    Raises ``ValueError`` when ``ttl`` is not at least one second, or when ``leeway`` is
    negative or above 30 seconds (RFC 7519 §4.1.4 allows "a few minutes"; Bastion is stricter).
    """

    def __init__(
        self,
        keys: KeySet | KeyRing,
        *,
        issuer: str,
        audience: str,
        ttl: timedelta = timedelta(minutes=15),
        leeway: timedelta = timedelta(seconds=30),
        clock: Clock | None = None,
        client_id: str = "bastion",
        cache_size: int = 10_000,
    ) -> None:
        if ttl < timedelta(seconds=1):
            raise ValueError("ttl must be at least one second")
        if leeway < timedelta(0) or leeway > _MAX_LEEWAY:
            raise ValueError("leeway must be between 0 and 30 seconds")
        if not issuer or not audience or not client_id:
            raise ValueError("issuer, audience and client_id must be non-empty")
        self._issuer = issuer
        self._audience = audience
        self._ttl = ttl
        self._leeway = leeway
        self._leeway_seconds = leeway.total_seconds()
        self._clock: Clock = clock or SystemClock()
        self._ring = (
            keys
            if isinstance(keys, KeyRing)
            else KeyRing(keys, retention=ttl + leeway, clock=self._clock)
        )
        self._client_id = client_id
        # token -> (key, claims); insertion order is age (the oldest is evicted first).
        self._verified: dict[str, tuple[SigningKey, AccessClaims]] = {}
        self._cache_size = cache_size

    @property
    def keys(self) -> KeySet:
        return self._ring.keys

    @property
    def ring(self) -> KeyRing:
        return self._ring

    @property
    def ttl(self) -> timedelta:
        return self._ttl

    @property
    def leeway(self) -> timedelta:
        return self._leeway

    def issue(
        self,
        *,
        subject: str,
        role: str,
        session_id: str,
        token_version: int,
        auth_time: int | None = None,
        amr: Sequence[str] = (),
    ) -> tuple[str, AccessClaims]:
        """Sign a new access token with the current signing key; return it with its claims.

        The header carries ``kid`` and ``typ: at+jwt`` (RFC 9068 §2.1); ``jti`` has 128 random
        bits from :mod:`secrets`; times come from the injected clock. ``auth_time`` (default:
        now) and ``amr`` say when and how the session was proven.
        """
        key = self._ring.signing_key
        now = int(self._clock.now().timestamp())
        claims = AccessClaims(
            sub=subject,
            role=role,
            jti=secrets.token_urlsafe(16),
            sid=session_id,
            tv=token_version,
            iat=now,
            nbf=now,
            exp=now + int(self._ttl.total_seconds()),
            iss=self._issuer,
            aud=self._audience,
            client_id=self._client_id,
            auth_time=now if auth_time is None else auth_time,
            amr=tuple(amr),
        )
        token = jwt.encode(
            asdict(claims),
            key.private_key,
            algorithm=key.alg,
            headers={"kid": key.kid, "typ": _AT_JWT},
        )
        return token, claims

    def verify(self, token: str) -> AccessClaims:
        """Return the claims of a valid access token.

        Raises ``InvalidTokenError`` with a precise reason for every failure; see the module
        docstring for the rules and the standards behind them.
        """
        cached = self._verified.get(token)
        if cached is not None:
            key, claims = cached
            if self._ring.get(key.kid) is key:
                _check_issued_in_service(key, claims.iat)  # retired since it was cached
                self._check_times(claims.exp, claims.nbf, claims.iat)
                return claims
            # Its key was revoked, expired or changed since: verify it all again.
            del self._verified[token]
        key, claims = self._verify_signed(token)
        if len(self._verified) >= self._cache_size:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (key, claims)
        return claims

    def _verify_signed(self, token: str) -> tuple[SigningKey, AccessClaims]:
        header = _read_header(token)
        # RFC 9068 §4 / RFC 8725 §3.11: explicit typing keeps refresh, ID and other JWTs out.
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in _ACCEPTED_TYPES:
            raise InvalidTokenError("wrong token type")
        # ASVS 9.1.3: the key comes from our own key set by kid; jku/x5u/jwk/x5c are ignored.
        # The kid is only a dictionary key: a path-like kid reads nothing from disk.
        kid = header.get("kid")
        key = self._ring.get(kid) if isinstance(kid, str) else None
        if key is None or not isinstance(kid, str):
            raise InvalidTokenError("unknown kid")
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise InvalidTokenError("unsigned token")  # RFC 8725 §3.1: never accept alg none
        if alg != key.alg:
            # RFC 8725 §3.1: the key, not the token header, decides the algorithm; this is
            # what defeats HS256 signed with a public key (algorithm confusion, §2.1).
            raise InvalidTokenError("algorithm mismatch")
        payload = self._decode(token, key.verification_key, key.alg)
        issued_at = _int_claim(payload, "iat")
        self._check_times(_int_claim(payload, "exp"), _int_claim(payload, "nbf"), issued_at)
        _check_issued_in_service(key, issued_at)
        return key, AccessClaims(
            sub=_string_claim(payload, "sub"),
            role=_string_claim(payload, "role"),
            jti=_string_claim(payload, "jti"),
            sid=_string_claim(payload, "sid"),
            tv=_int_claim(payload, "tv"),
            iat=_int_claim(payload, "iat"),
            nbf=_int_claim(payload, "nbf"),
            exp=_int_claim(payload, "exp"),
            iss=payload["iss"],
            aud=payload["aud"],
            client_id=_string_claim(payload, "client_id"),
            # A token issued before these claims existed counts as proven at time 0.
            auth_time=_int_claim(payload, "auth_time") if "auth_time" in payload else 0,
            amr=_amr_claim(payload),
        )

    def _decode(self, token: str, key: Any, alg: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key=key,
                algorithms=[alg],  # the key's algorithm, never the header's (RFC 8725 §3.1)
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options=_DECODE_OPTIONS,
            )
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("bad signature") from None
        except jwt.InvalidAlgorithmError:
            raise InvalidTokenError("algorithm mismatch") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError("wrong audience") from None  # RFC 9068 §4, ASVS 9.2.3
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("wrong issuer") from None  # RFC 9068 §4
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"missing claim {exc.claim}") from None  # RFC 9068 §2.2
        except jwt.DecodeError:
            raise InvalidTokenError("malformed token") from None
        except (InvalidSubjectError, InvalidJTIError):
            raise InvalidTokenError("invalid claim") from None
        except jwt.PyJWTError:  # e.g. an unsupported "crit" header (RFC 7515 §4.1.11)
            raise InvalidTokenError("invalid token") from None

    def _check_times(self, exp: int, nbf: int, iat: int) -> None:
        """RFC 7519 §4.1.4-4.1.6 against the injected clock, with the configured leeway."""
        now = self._clock.now().timestamp()
        if exp <= now - self._leeway_seconds:
            raise InvalidTokenError("expired")
        if nbf > now + self._leeway_seconds:
            raise InvalidTokenError("not yet valid")
        if iat > now + self._leeway_seconds:
            raise InvalidTokenError("issued in the future")


def _check_issued_in_service(key: SigningKey, issued_at: int) -> None:
    if not key.signed_in_service(issued_at):
        raise InvalidTokenError("issued after its key was retired")


def _read_header(token: str) -> dict[str, Any]:
    """The JOSE header, untrusted until the signature is checked. Raises InvalidTokenError."""
    if not isinstance(token, str) or len(token) > _MAX_TOKEN_LENGTH or token.count(".") != 2:
        raise InvalidTokenError("malformed token")
    try:
        header = json.loads(base64url_decode(token.partition(".")[0]))
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidTokenError("malformed token") from None
    if not isinstance(header, dict):
        raise InvalidTokenError("malformed token")
    return header


def _amr_claim(payload: dict[str, Any]) -> tuple[str, ...]:
    value = payload.get("amr", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidTokenError("invalid claim")
    return tuple(value)


def _string_claim(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidTokenError(f"missing claim {name}" if value is None else "invalid claim")
    return value


def _int_claim(payload: dict[str, Any], name: str) -> int:
    value = payload.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidTokenError(f"missing claim {name}" if value is None else "invalid claim")
    return value
