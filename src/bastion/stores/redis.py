"""Redis revocation store: every instance sees a logout or demotion at once.

One request costs one round trip: the user's state and the token's ``jti`` are read in
one ``MGET``; or none of its own, when the rate limiter's script reads the same keys
along (:meth:`RedisRevocationStore.check_keys`,
:meth:`RedisRevocationStore.read_check`). Keys live under a configurable prefix so
tenants and test runs never collide.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bastion.errors import ServiceUnavailableError
from bastion.stores.base import UserState

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


class RedisRevocationStore:
    def __init__(self, client: aioredis.Redis, *, prefix: str = "bastion:") -> None:
        self._redis = client
        self._prefix = prefix
        self._put_if_newer = client.register_script(_PUT_IF_NEWER)

    @classmethod
    def from_url(cls, url: str, *, prefix: str = "bastion:") -> RedisRevocationStore:
        client = aioredis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
        return cls(client, prefix=prefix)

    @property
    def client(self) -> aioredis.Redis:
        """The connection pool, shared with the rate limiter (closed by this store)."""
        return self._redis

    def _user_key(self, user_id: str) -> str:
        return f"{self._prefix}user:{user_id}"

    def _denied_key(self, token_id: str) -> str:
        return f"{self._prefix}denied:{token_id}"

    def check_keys(self, user_id: str, token_ids: Sequence[str]) -> list[str]:
        """The keys :meth:`check` reads, for a caller that reads them itself (the rate
        limiter's script, in the same round trip as the limits)."""
        return [self._user_key(user_id), *(self._denied_key(t) for t in token_ids)]

    @staticmethod
    def read_check(values: Sequence[bytes | str | None]) -> tuple[UserState | None, bool]:
        """:meth:`check`'s answer from the values of :meth:`check_keys`, in order."""
        raw_state, *denied = values
        return (_decode(raw_state) if raw_state else None), any(v is not None for v in denied)

    async def check(self, user_id: str, token_ids: Sequence[str]) -> tuple[UserState | None, bool]:
        try:
            values = await self._redis.mget(self.check_keys(user_id, token_ids))
        except (RedisError, OSError) as exc:
            # Fail closed: without the revocation state no token is believed.
            raise ServiceUnavailableError("revocation store unavailable") from exc
        return self.read_check(values)

    async def put_user_state(self, user_id: str, state: UserState) -> None:
        encoded = f"{state.token_version}|{state.role}|{int(state.is_active)}"
        await self._put_if_newer(
            keys=[self._user_key(user_id)],
            args=[encoded, state.token_version, _USER_STATE_TTL_SECONDS],
        )

    async def forget_user_state(self, user_id: str) -> None:
        await self._redis.delete(self._user_key(user_id))

    async def revoke(self, token_id: str, expires_at: datetime) -> None:
        ttl_ms = int((expires_at - datetime.now(UTC)).total_seconds() * 1000)
        if ttl_ms > 0:
            await self._redis.set(self._denied_key(token_id), b"1", px=ttl_ms)

    async def ping(self) -> bool:
        return bool(await self._redis.ping())

    async def aclose(self) -> None:
        await self._redis.aclose()


def _decode(raw: bytes | str) -> UserState | None:
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        version, role, active = text.split("|")
        return UserState(token_version=int(version), role=role, is_active=active == "1")
    except ValueError:
        return None  # unreadable entry: treat as a miss, the database decides
