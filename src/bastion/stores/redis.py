"""Redis revocation store: every instance sees a logout or demotion at once.

One request costs one round trip: the user's state, the token's ``jti`` and session
denials and the cache's completeness marker are read in one ``MGET``; or none of its
own, when the rate limiter's script reads the same keys along
(:meth:`RedisRevocationStore.check_keys`, :meth:`RedisRevocationStore.read_check`).
Keys live under a configurable prefix so tenants and test runs never collide.

The store is a cache of the database's durable record. The marker key is written when
a rebuild has copied every unexpired denial into Redis; it has no expiry, so a Redis
that lost its data (``FLUSHDB``, a restart without persistence, a failover to an empty
replica, the marker evicted) answers without it, and no check believes "not revoked"
until the cache is rebuilt.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

from bastion._redis_client import REDIS_PREFIX, Redis, RedisError, connect
from bastion.errors import RevocationCacheColdError, ServiceUnavailableError
from bastion.stores.base import Denial, UserState

__all__ = ["RedisRevocationStore"]

_USER_STATE_TTL_SECONDS = 3600  # a miss falls back to the database, so this bounds memory only

# Compare-and-set: keep a cached state whose token version is higher than the new one's
# (the write comes from a request that read the account before a change).
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local version = tonumber(string.match(current, '^(%d+)|'))
  if version and version > tonumber(ARGV[2]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
return 1
"""

# The end of a rebuild: mark the cache complete only if this rebuild's token is still in
# the set of running rebuilds, that is if Redis kept its data since the rebuild began
# (an emptied Redis has lost the set too, and the denials written so far with it).
_FINISH_REBUILD = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1])
return 1
"""
_REBUILD_ATTEMPTS = 3
_REBUILD_BATCH = 1000
_REBUILD_MARK_MS = 300_000  # a rebuild that died half-way leaves its token for this long

_logger = logging.getLogger("bastion.stores")


class RedisRevocationStore:
    def __init__(self, client: Redis, *, prefix: str = REDIS_PREFIX) -> None:
        self._redis = client
        self._prefix = prefix
        self._put_if_newer = client.register_script(_PUT_IF_NEWER)
        self._finish_rebuild = client.register_script(_FINISH_REBUILD)
        self._complete_key = f"{prefix}revocations:complete"
        self._rebuilding_key = f"{prefix}revocations:rebuilding"

    @classmethod
    def from_url(cls, url: str, *, prefix: str = REDIS_PREFIX) -> RedisRevocationStore:
        client = connect(url, timeout=2.0)
        return cls(client, prefix=prefix)

    @property
    def client(self) -> Redis:
        """The connection pool, shared with the rate limiter (closed by this store)."""
        return self._redis

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}user:{user_id}"

    def _denied_key(self, token_id: str) -> str:
        return f"{self._prefix}denied:{token_id}"

    def check_keys(self, user_id: str, token_ids: Sequence[str]) -> list[str]:
        """The keys :meth:`check` reads, for a caller that reads them itself (the rate
        limiter's script, in the same round trip as the limits): the user's state, the
        denial of each token id, and the marker of a complete cache, in this order."""
        denied = [self._denied_key(t) for t in token_ids]
        return [self._user_key(user_id), *denied, self._complete_key]

    @staticmethod
    def read_check(values: Sequence[bytes | str | None]) -> tuple[UserState | None, bool]:
        """:meth:`check`'s answer from the values of :meth:`check_keys`, in order.

        Raises:
            RevocationCacheColdError: the marker is missing: Redis lost its data (or was
                never filled), so a missing denial proves nothing.
        """
        raw_state, *denied, complete = values
        if complete is None:
            raise RevocationCacheColdError("revocation cache lost its data")
        return (_decode(raw_state) if raw_state else None), any(v is not None for v in denied)

    async def check(self, user_id: str, token_ids: Sequence[str]) -> tuple[UserState | None, bool]:
        try:
            values = await self._redis.mget(self.check_keys(user_id, token_ids))
        except (RedisError, OSError) as exc:
            # Fail closed: without the revocation state no token is believed.
            raise ServiceUnavailableError("revocation store unavailable") from exc
        return self.read_check(values)

    async def put_user_state(self, user_id: str, state: UserState) -> None:
        encoded = (
            f"{state.token_version}|{state.role}|{int(state.is_active)}|{state.revoked_before}"
        )
        await self._put_if_newer(
            keys=[self._user_key(user_id)],
            args=[encoded, state.token_version, _USER_STATE_TTL_SECONDS],
        )

    async def forget_user_state(self, user_id: str) -> None:
        await self._redis.delete(self._user_key(user_id))

    async def revoke(self, token_id: str, expires_at: datetime) -> None:
        ttl_ms = int((expires_at - datetime.now(UTC)).total_seconds() * 1000)
        if ttl_ms <= 0:
            return
        try:
            await self._redis.set(self._denied_key(token_id), b"1", px=ttl_ms)
        except (RedisError, OSError) as exc:
            # The denial is in the database already: drop the marker, if Redis still
            # answers, so that every instance rebuilds before it believes the cache.
            with contextlib.suppress(RedisError, OSError):
                await self._redis.delete(self._complete_key)
            raise ServiceUnavailableError("revocation store unavailable") from exc

    async def rebuild(self, read: Callable[[], Awaitable[Sequence[Denial]]]) -> None:
        try:
            for _ in range(_REBUILD_ATTEMPTS):
                if await self._rebuild_once(read):
                    return
        except (RedisError, OSError) as exc:
            raise ServiceUnavailableError("revocation store unavailable") from exc
        raise ServiceUnavailableError("revocation store lost its data during every rebuild")

    async def _rebuild_once(self, read: Callable[[], Awaitable[Sequence[Denial]]]) -> bool:
        # Announce the rebuild before reading the database: a denial committed after the
        # read is written to Redis by its writer, and a loss of Redis's data before the
        # end removes the announcement, so the rebuild cannot mark a hole complete.
        token = secrets.token_hex(16)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self._rebuilding_key, token)
            pipe.pexpire(self._rebuilding_key, _REBUILD_MARK_MS)
            await pipe.execute()
        denials = await read()
        now = datetime.now(UTC)
        for start in range(0, len(denials), _REBUILD_BATCH):
            async with self._redis.pipeline(transaction=False) as pipe:
                for token_id, expires_at in denials[start : start + _REBUILD_BATCH]:
                    ttl_ms = int((expires_at - now).total_seconds() * 1000)
                    if ttl_ms > 0:
                        pipe.set(self._denied_key(token_id), b"1", px=ttl_ms)
                await pipe.execute()
        done = await self._finish_rebuild(
            keys=[self._rebuilding_key, self._complete_key], args=[token]
        )
        if done:
            _logger.info("revocation cache rebuilt: %d denials", len(denials))
            await self._warn_if_evicting()
        return bool(done)

    async def _warn_if_evicting(self) -> None:
        """Log a warning when Redis may evict keys: an evicted denial, unlike a lost
        marker, goes unnoticed. Managed services that disable ``CONFIG`` are not asked."""
        with contextlib.suppress(RedisError, OSError):
            found = await self._redis.config_get("maxmemory-policy")
            policy = next(iter(found.values()), b"noeviction")
            policy = policy.decode() if isinstance(policy, bytes) else str(policy)
            if policy != "noeviction":
                _logger.warning(
                    "Redis maxmemory-policy is %s: it may evict revocation keys; use noeviction",
                    policy,
                )

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()


def _decode(raw: bytes | str) -> UserState | None:
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        version, role, active, revoked_before = text.split("|")
        return UserState(int(version), role, active == "1", int(revoked_before))
    except ValueError:
        return None  # unreadable entry: treat as a miss, the database decides
