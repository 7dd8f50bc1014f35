"""The names of the ``redis`` client library the Redis backends use, optional.

The library comes with the ``redis`` extra (``pip install 'bastion[redis]'``). Without
it these modules still import, so ``import bastion`` and the in-process stores work; a
Redis client cannot be made (``from_url`` raises :class:`ConfigurationError` naming the
extra), so no ``RedisError`` is ever raised either.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["REDIS_PREFIX", "Redis", "RedisError"]

REDIS_PREFIX: Final = "bastion:"
"""The default start of every key: the revocation store, the limiter (whose script reads
the revocation store's keys along) and the login defence must agree on it."""

try:
    from redis.asyncio import Redis
    from redis.exceptions import RedisError
except ModuleNotFoundError:  # the redis extra is not installed

    class RedisError(Exception):  # type: ignore[no-redef]
        """Stands for redis' error in ``except`` clauses; never raised."""

    class Redis:  # type: ignore[no-redef]
        """Stands for the client class: making one names the extra to install."""

        @classmethod
        def from_url(cls, url: str, **options: Any) -> Redis:
            from bastion._extras import missing_extra

            raise missing_extra("redis", "BASTION_REDIS_URL", "a Redis URL")
