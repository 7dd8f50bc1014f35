"""An issuer's signing keys (its JWKS), fetched and cached: refreshed when they are old,
and when a token names a ``kid`` the cache does not hold, at most once per interval, so
a flood of tokens with made-up ``kid``s is not a flood of fetches."""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import datetime, timedelta
from typing import Any

import httpx
import jwt

from bastion.clock import Clock
from bastion.errors import InvalidTokenError
from bastion.oidc._http import ProviderUnavailableError, fetch_json

__all__ = ["RemoteKeySet"]

_MIN_RSA_BITS = 2048


class RemoteKeySet:
    """The keys at ``jwks_uri``. :meth:`key` returns the key for a token's ``kid`` and
    ``alg``, built by PyJWT for that algorithm (a key of another type is refused).

    Our own cache around PyJWT's key parsing: PyJWT's ``PyJWKClient`` fetches with
    blocking urllib and refetches on every unknown ``kid``."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        jwks_uri: str,
        *,
        clock: Clock,
        timeout: float,
        refetch_interval: timedelta = timedelta(minutes=1),
        max_age: timedelta = timedelta(hours=1),
    ) -> None:
        self._client = client
        self._uri = jwks_uri
        self._clock = clock
        self._timeout = timeout
        self._interval = refetch_interval
        self._max_age = max_age
        self._jwks: dict[str, dict[str, Any]] = {}
        self._built: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: datetime | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the set was fetched (for tests and metrics)

    async def key(self, kid: str, alg: str) -> jwt.PyJWK:
        """The verification key ``kid`` for ``alg``.

        Raises:
            InvalidTokenError: no such key (after at most one refetch a minute), or a key
                that is not for ``alg``.
            ProviderUnavailableError: the keys were never fetched and cannot be.
        """
        if self._age() >= self._max_age:
            # One request refreshes old keys; the fetch time is set as it starts, so the
            # others use the keys held meanwhile.
            await self._refresh(self._max_age)
        if kid not in self._jwks:
            await self._refresh(self._interval)
        jwk = self._jwks.get(kid)
        if jwk is None:
            raise InvalidTokenError("unknown kid")
        built = self._built.get((kid, alg))
        if built is None:
            if jwk.get("alg", alg) != alg:
                raise InvalidTokenError("algorithm mismatch")
            if _short_rsa(jwk):
                raise InvalidTokenError("key too short")  # RFC 7518 §3.3: 2048 bits at least
            try:
                built = jwt.PyJWK(jwk, algorithm=alg)
            except jwt.PyJWTError:
                raise InvalidTokenError("algorithm mismatch") from None  # e.g. an EC key for RS256
            self._built[(kid, alg)] = built
        return built

    def _age(self) -> timedelta:
        if self._fetched_at is None:
            return timedelta.max
        return self._clock.now() - self._fetched_at

    async def _refresh(self, min_age: timedelta) -> None:
        """Fetch the set unless it was fetched less than ``min_age`` ago (by another
        request, while this one waited for the lock)."""
        async with self._lock:
            if self._age() < min_age:
                return
            # Counted whether or not it succeeds: an issuer that fails is not asked again
            # before the interval either.
            self._fetched_at = self._clock.now()
            self.fetches += 1
            try:
                _, document = await fetch_json(
                    self._client, "GET", self._uri, time_limit=self._timeout
                )
            except ProviderUnavailableError:
                if not self._jwks:
                    raise
                return  # keep the keys we have until the issuer answers again
            keys = document.get("keys")
            if not isinstance(keys, list):
                raise ProviderUnavailableError(f"{httpx.URL(self._uri).host}: not a JWK set")
            self._jwks = {
                key["kid"]: key
                for key in keys
                if isinstance(key, dict)
                and isinstance(key.get("kid"), str)
                and key.get("use", "sig") == "sig"
                and _for_signatures(key.get("key_ops", ["verify"]))
                and "d" not in key  # a private key published by mistake is not used
            }
            self._built = {}


def _short_rsa(jwk: dict[str, Any]) -> bool:
    """An RSA key whose modulus is under 2048 bits (refused before PyJWT builds it, which
    would only warn)."""
    if jwk.get("kty") != "RSA":
        return False
    modulus = jwk.get("n")
    if not isinstance(modulus, str):
        return True
    try:
        raw = base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))
    except (ValueError, binascii.Error):
        return True
    return int.from_bytes(raw, "big").bit_length() < _MIN_RSA_BITS


def _for_signatures(key_ops: object) -> bool:
    """RFC 7517 §4.3: a key for verifying; publishers also mark the public half of their
    signing key ``sign`` (as PyJWT and oidc-provider do). Encryption keys are not used."""
    return isinstance(key_ops, list) and bool({"verify", "sign"} & set(map(str, key_ops)))
