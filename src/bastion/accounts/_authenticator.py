"""Per-request authentication: an access token against the revocation cache and the
account's cached standing; and that cache's upkeep (written by the other account parts,
rebuilt from the database's durable record)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

from bastion.accounts._types import Principal
from bastion.clock import Clock
from bastion.errors import InvalidTokenError, RevocationCacheColdError
from bastion.stores import Account, Stores, UserState
from bastion.stores.redis import RedisRevocationStore
from bastion.tokens import AccessClaims, AccessTokens, ExternalAccessClaims

__all__ = ["Authenticator"]

_LONGEST_ACCESS_TTL = timedelta(hours=1)  # the settings' bound on the access-token lifetime
_EXTERNAL_CLOCK_SKEW = 30  # seconds: the most leeway an external token's times get


class Authenticator:
    """Who is calling, once per request (the guard calls :meth:`authenticate`).

    It owns the revocation cache's state in this process: whether a denial failed to
    reach the cache (then nothing is believed until a rebuild), and the rebuilds.
    """

    def __init__(self, stores: Stores, access_tokens: AccessTokens, clock: Clock) -> None:
        self._stores = stores
        self._access = access_tokens
        self._clock = clock
        # The revocation cache's rebuilds (restore_revocations): one at a time, counted,
        # and whether a denial failed to reach the cache since the last one.
        self._restoring = asyncio.Lock()
        self._restores = 0
        self._cache_unsure = False
        # Resource-server mode: the account of an external principal seen for the first
        # time (ExternalPrincipals sets it).
        self.first_sight: Callable[[ExternalAccessClaims], Awaitable[Account | None]] | None = None

    @property
    def access_ttl(self) -> timedelta:
        return self._access.ttl

    def revocation_keys(self, claims: AccessClaims) -> list[str] | None:
        """The Redis keys :meth:`authenticate` reads for this token, for the rate
        limiter's script to read along in its round trip (None: the store is not Redis)."""
        store = self._stores.revocation
        if not isinstance(store, RedisRevocationStore):
            return None
        return store.check_keys(claims.sub, _revocation_ids(claims))

    async def authenticate(
        self,
        access_token: str,
        *,
        verified: AccessClaims | None = None,
        revocation: Sequence[bytes | None] | None = None,
    ) -> Principal:
        """Verify an access token and check it against the revocation state.

        One revocation-store round trip: the token's ``jti`` and session, and the user's
        cached state (token version, role, active); a miss reads the account once. A
        cache that is not known to be complete (a new process, Redis emptied) is rebuilt
        from the database first, and read again.

        Raises:
            InvalidTokenError: forged, expired, revoked, or the account is disabled.
            ServiceUnavailableError: the revocation cache does not answer or cannot be
                rebuilt: no token is believed (fail closed).

        ``verified`` are the claims of ``access_token`` when its signature and times were
        checked already in this request (by the rate limiter); never from elsewhere.
        ``revocation`` are the values of :meth:`revocation_keys` for these claims, read
        in this request by the rate limiter's script: then no round trip of its own.
        """
        claims = verified if verified is not None else self._access.verify(access_token)
        store = self._stores.revocation
        ids = _revocation_ids(claims)
        try:
            if self._cache_unsure:
                raise RevocationCacheColdError("a revocation was not cached")
            if revocation is not None and isinstance(store, RedisRevocationStore):
                state, revoked = store.read_check(revocation)
            else:
                state, revoked = await store.check(claims.sub, ids)
        except RevocationCacheColdError:
            # A new process, or Redis lost its data: no "not revoked" is believed until
            # the cache holds the durable record again (a second read, this once).
            await self.restore_revocations()
            state, revoked = await store.check(claims.sub, ids)
        if revoked:
            raise InvalidTokenError("token revoked")
        external = isinstance(claims, ExternalAccessClaims)
        if state is None:
            try:
                account = await self._stores.accounts.get(uuid.UUID(claims.sub))
            except ValueError:
                account = None
            if (
                account is None
                and isinstance(claims, ExternalAccessClaims)
                and self.first_sight is not None
            ):
                account = await self.first_sight(claims)
            if account is None:
                raise InvalidTokenError("unknown subject")
            state = await self.remember(account)
        if not state.is_active:
            raise InvalidTokenError("account disabled")
        if external:
            # No token version: revoked when issued at or before the account's tokens
            # were (logout-all, an admin's revocation, a change of standing). The role is
            # the token's, mapped by the issuer's role_map.
            # An issuer's clock may run up to the leeway ahead: a token that says it was
            # issued that little after the revocation may have been issued before it.
            if claims.iat <= state.revoked_before + _EXTERNAL_CLOCK_SKEW:
                raise InvalidTokenError("token issued before the account's tokens were revoked")
            return Principal(uuid.UUID(claims.sub), claims.role, claims.sid, claims)
        if claims.tv != state.token_version:
            raise InvalidTokenError("token version revoked")
        return Principal(uuid.UUID(claims.sub), state.role, claims.sid, claims)

    # -- the cache the other parts write ----------------------------------------------

    async def remember(self, account: Account) -> UserState:
        """Cache ``account``'s standing (token version, role, active) for the requests;
        a write never replaces a higher token version (the store's rule)."""
        revoked = account.tokens_revoked_at
        state = UserState(
            account.token_version,
            account.role,
            account.is_active,
            int(revoked.timestamp()) if revoked is not None else 0,
        )
        await self._stores.revocation.put_user_state(str(account.id), state)
        return state

    async def forget(self, user_id: uuid.UUID) -> None:
        """Drop the cached standing of ``user_id``: the next request reads the database."""
        await self._stores.revocation.forget_user_state(str(user_id))

    async def cache_denial(self, token_id: str, until: datetime) -> None:
        """Write a denial (already durable) to the revocation cache; should that fail,
        this process rebuilds the cache before its next check, whatever Redis says."""
        try:
            await self._stores.revocation.revoke(token_id, until)
        except Exception:
            self._cache_unsure = True
            raise

    async def restore_revocations(self) -> None:
        """Rebuild the revocation cache from the durable record: at start-up, and when
        the cache lost its data (checks raise ``RevocationCacheColdError`` until then).

        Concurrent callers share one rebuild; expired denial records are purged on the
        way (a bounded sweep).

        Raises:
            ServiceUnavailableError: the cache does not answer (the database's own
                errors propagate): every check keeps failing closed meanwhile.
        """
        seen = self._restores
        async with self._restoring:
            if self._restores != seen and not self._cache_unsure:
                return  # rebuilt while this caller waited
            self._cache_unsure = False
            try:
                await self._stores.revocation.rebuild(self._durable_denials)
            except BaseException:
                self._cache_unsure = True
                raise
            self._restores += 1

    async def _durable_denials(self) -> list[tuple[str, datetime]]:
        now = self._clock.now()
        denials = self._stores.denials
        await denials.purge(now=now)
        # Sessions revoked within the longest lifetime an access token may have had
        # (settings cap it at an hour; the lifetime may have been longer before a restart).
        window = max(self._access.ttl, _LONGEST_ACCESS_TTL) + timedelta(seconds=60)
        sessions = await denials.revoked_sessions(since=now - window)
        return [
            *await denials.denied(now=now),
            *((f"sid:{sid}", revoked_at + window) for sid, revoked_at in sessions),
        ]


def _revocation_ids(claims: AccessClaims) -> tuple[str, str]:
    """What revokes an access token: its own ``jti``, or its session."""
    return (claims.jti, f"sid:{claims.sid}")
