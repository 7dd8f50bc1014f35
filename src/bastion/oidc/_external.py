"""Resource-server mode: access tokens of external issuers (Keycloak, Auth0, Entra ID,
Okta, Google, any OpenID provider), verified as RFC 9068 and RFC 8725 require.

For each configured issuer: its metadata by discovery (at start, and again at most once a
minute while it fails: the service starts while an issuer is down and refuses its tokens
until it answers; refreshed once a day, the metadata held kept while that fails), its
keys from its JWKS (:class:`RemoteKeySet`), its algorithms pinned, ``iss`` exact,
``aud`` one of the configured audiences, ``exp``/``nbf``/``iat`` against the injected
clock with Bastion's own leeway, and ``typ: at+jwt`` unless the issuer is configured not
to send it. A token of an issuer not configured is refused like any
invalid token.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import httpx
import jwt

from bastion.authz import ROLE_ORDER
from bastion.clock import Clock
from bastion.errors import InvalidTokenError
from bastion.oidc._config import ExternalIssuer
from bastion.oidc._http import ProviderUnavailableError
from bastion.oidc._jwt import (
    header,
    media_type,
    number_claim,
    optional_text,
    peek_issuer,
    text_claim,
)
from bastion.oidc._keys import RemoteKeySet
from bastion.oidc._metadata import ProviderMetadata, check_url, discover

__all__ = ["ExternalClaims", "ExternalTokens"]

log = logging.getLogger("bastion.oidc")

_ACCEPTED_TYPES = frozenset({"at+jwt", "application/at+jwt"})
_REQUIRED = ["exp", "iat", "iss", "aud", "sub"]
# Times are checked against the injected clock (as for Bastion's own tokens).
_OPTIONS: Any = {
    "require": _REQUIRED,
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "enforce_minimum_key_length": True,
}
# The longest an access token may live: a longer exp is refused (a year-10000 exp does
# not fit a datetime, and no issuer's access token lives for months).
_MAX_LIFETIME = timedelta(days=31)
_MAX_JTI = 64  # a longer or unprintable jti is kept as its digest
_MAX_EMAIL = 320  # the accounts' column
_RETRY_DISCOVERY = timedelta(minutes=1)
_REFRESH_DISCOVERY = timedelta(days=1)
_CACHE_SIZE = 10_000


@dataclass(frozen=True)
class ExternalClaims:
    """What the guard keeps of a verified external token."""

    issuer: str
    sub: str
    jti: str | None
    role: str | None  # the local role its role claim maps to; None: no mapped role
    exp: int
    iat: int
    email: str | None = None


@dataclass
class _Issuer:
    config: ExternalIssuer
    metadata: ProviderMetadata | None = None
    keys: RemoteKeySet | None = None
    tried_at: Any = None  # when discovery was last tried (the clock's datetime)
    discovered_at: Any = None  # when it last succeeded
    discoveries: int = 0  # how many times it was tried (for tests and metrics)
    # One discovery at a time: the requests that wait for it use its result.
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class ExternalTokens:
    """The verifier of the configured issuers' access tokens."""

    def __init__(
        self,
        issuers: Sequence[ExternalIssuer],
        *,
        clock: Clock,
        leeway: timedelta,
        allow_http: bool = False,
        timeout: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        for config in issuers:
            check_url(config.issuer, allow_http=allow_http, what=f"issuer {config.issuer!r}")
        self._issuers = {config.issuer: _Issuer(config) for config in issuers}
        self._clock = clock
        self._leeway = leeway.total_seconds()
        self._allow_http = allow_http
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=False
        )
        self._verified: dict[str, ExternalClaims] = {}

    def __bool__(self) -> bool:
        return bool(self._issuers)

    @property
    def issuers(self) -> list[str]:
        return list(self._issuers)

    def key_fetches(self, issuer: str) -> int:
        keys = self._issuers[issuer].keys
        return keys.fetches if keys is not None else 0

    def discoveries(self, issuer: str) -> int:
        return self._issuers[issuer].discoveries

    async def start(self, *, within: float = 3.0) -> None:
        """Discover every issuer, together, waiting ``within`` seconds at most: one that
        does not answer by then is logged and tried again when one of its tokens arrives
        (at most once a minute), so an issuer that is down delays no start."""

        async def one(issuer: _Issuer) -> None:
            async with issuer.lock:
                await self._discover(issuer)

        issuers = list(self._issuers.values())
        tasks = [asyncio.ensure_future(one(issuer)) for issuer in issuers]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=within)
        for issuer, task in zip(issuers, tasks, strict=True):
            if task in pending:
                task.cancel()
                name = issuer.config.issuer
                log.warning("external issuer %s: no discovery within %g s", name, within)
        await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    def claims_issuer(self, token: str) -> str | None:
        """The ``iss`` of ``token`` if it names a configured issuer (unverified: it only
        chooses which issuer's keys check the token)."""
        issuer = peek_issuer(token)
        return issuer if issuer in self._issuers else None

    async def verify(self, token: str) -> ExternalClaims:
        """The claims of a valid access token of a configured issuer.

        Raises:
            InvalidTokenError: anything wrong with the token, an issuer not configured,
                or an issuer whose metadata or keys cannot be read.
        """
        cached = self._verified.get(token)
        if cached is not None:
            self._check_times(cached.exp, None, cached.iat)
            return cached
        jose = header(token)
        issuer = self._issuers.get(peek_issuer(token) or "")
        if issuer is None:
            raise InvalidTokenError("unknown issuer")
        config = issuer.config
        alg = jose.get("alg")
        if not isinstance(alg, str) or alg not in config.algorithms:
            # RFC 8725 §3.1: the issuer's pinned algorithms decide, never the header alone.
            raise InvalidTokenError("algorithm not allowed")
        if config.require_typ:
            typ = jose.get("typ")
            if not isinstance(typ, str) or media_type(typ) not in _ACCEPTED_TYPES:
                raise InvalidTokenError("wrong token type")  # RFC 9068 §4, RFC 8725 §3.11
        kid = jose.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError("unknown kid")
        keys = await self._keys(issuer)
        try:
            key = await keys.key(kid, alg)
        except ProviderUnavailableError as exc:
            log.warning("external issuer %s: keys unavailable: %s", config.issuer, exc)
            raise InvalidTokenError("issuer unavailable") from None
        payload = self._decode(token, key, alg, config)
        claims = ExternalClaims(
            issuer=config.issuer,
            sub=text_claim(payload, "sub"),
            jti=_token_id(payload.get("jti")),
            role=map_role(payload, config),
            exp=number_claim(payload, "exp"),
            iat=number_claim(payload, "iat"),
            email=optional_text(payload, "email", limit=_MAX_EMAIL),
        )
        nbf = None if payload.get("nbf") is None else number_claim(payload, "nbf")
        self._check_times(claims.exp, nbf, claims.iat)
        if len(self._verified) >= _CACHE_SIZE:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = claims
        return claims

    async def _keys(self, issuer: _Issuer) -> RemoteKeySet:
        # Without metadata, wait for a discovery under way; with it, go on unless a
        # refresh is due (a failing refresh holds up no request).
        if issuer.keys is None or self._due(issuer):
            async with issuer.lock:
                if self._due(issuer):  # not done by the request this one waited for
                    await self._discover(issuer)
        if issuer.keys is None:
            raise InvalidTokenError("issuer unavailable")
        return issuer.keys

    def _due(self, issuer: _Issuer) -> bool:
        """Whether to discover ``issuer`` now: never discovered, or a day ago; not
        within a minute of the last try."""
        now = self._clock.now()
        if issuer.tried_at is not None and now - issuer.tried_at < _RETRY_DISCOVERY:
            return False
        return issuer.keys is None or now - issuer.discovered_at >= _REFRESH_DISCOVERY

    async def _discover(self, issuer: _Issuer) -> None:
        """Read the issuer's metadata; on failure keep what is held (logged)."""
        issuer.tried_at = self._clock.now()
        issuer.discoveries += 1
        try:
            metadata = await discover(
                self._client,
                issuer.config.issuer,
                time_limit=self._timeout,
                allow_http=self._allow_http,
            )
        except ProviderUnavailableError as exc:
            log.warning("external issuer %s: discovery failed: %s", issuer.config.issuer, exc)
            return
        issuer.discovered_at = issuer.tried_at
        if (
            issuer.keys is None
            or issuer.metadata is None
            or (issuer.metadata.jwks_uri != metadata.jwks_uri)
        ):
            issuer.keys = RemoteKeySet(
                self._client, metadata.jwks_uri, clock=self._clock, timeout=self._timeout
            )
        issuer.metadata = metadata

    def _decode(
        self, token: str, key: jwt.PyJWK, alg: str, config: ExternalIssuer
    ) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=config.audiences,
                issuer=config.issuer,
                options=_OPTIONS,
            )
        except jwt.InvalidSignatureError:
            raise InvalidTokenError("bad signature") from None
        except jwt.InvalidAudienceError:
            raise InvalidTokenError("wrong audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidTokenError("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidTokenError(f"missing claim {exc.claim}") from None
        except jwt.PyJWTError:
            raise InvalidTokenError("invalid token") from None
        return payload

    def _check_times(self, exp: int, nbf: int | None, iat: int) -> None:
        now = self._clock.now().timestamp()
        if exp <= now - self._leeway:
            raise InvalidTokenError("expired")
        if exp > now + _MAX_LIFETIME.total_seconds():
            raise InvalidTokenError("lifetime too long")
        if nbf is not None and nbf > now + self._leeway:
            raise InvalidTokenError("not yet valid")
        if iat > now + self._leeway:
            raise InvalidTokenError("issued in the future")


def _token_id(jti: object) -> str | None:
    """The token's ``jti`` when it is a short printable string, else its digest (a long
    or odd one still names the token, in a form every store takes); None without one."""
    if not isinstance(jti, str) or not jti:
        return None
    if len(jti) <= _MAX_JTI and jti.isprintable():
        return jti
    return hashlib.sha256(jti.encode("utf-8", "surrogatepass")).hexdigest()


def map_role(payload: dict[str, Any], config: ExternalIssuer) -> str | None:
    """The highest local role that the token's role claim maps to (None: none maps)."""
    if config.role_claim is None:
        return None
    value: Any = payload
    for part in config.role_claim.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    names = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    mapped = {config.role_map[n] for n in names if isinstance(n, str) and n in config.role_map}
    return max(mapped, key=ROLE_ORDER.index) if mapped else None
