"""The names of the ``redis`` client library the Redis backends use, optional.

The library comes with the ``redis`` extra (``pip install 'bastion[redis]'``). Without
it these modules still import, so ``import bastion`` and the in-process stores work; a
Redis client cannot be made (``from_url`` raises :class:`ConfigurationError` naming the
extra), so no ``RedisError`` is ever raised either.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["REDIS_PREFIX", "NoScriptError", "Redis", "RedisError", "connect"]

REDIS_PREFIX: Final = "bastion:"
"""The default start of every key: the revocation store, the limiter (whose script reads
the revocation store's keys along) and the login defence must agree on it."""

try:
    from redis.asyncio import Redis
    from redis.exceptions import NoScriptError, RedisError
except ModuleNotFoundError:  # the redis extra is not installed

    class RedisError(Exception):  # type: ignore[no-redef]
        """Stands for redis' error in ``except`` clauses; never raised."""

    class NoScriptError(RedisError):  # type: ignore[no-redef]
        """Stands for redis' error in ``except`` clauses; never raised."""

    class Redis:  # type: ignore[no-redef]
        """Stands for the client class: making one names the extra to install."""

        @classmethod
        def from_url(cls, url: str, **options: Any) -> Redis:
            from bastion._extras import missing_extra

            raise missing_extra("redis", "BASTION_REDIS_URL", "a Redis URL")


def connect(url: str, *, timeout: float) -> Redis:
    """A client for ``url`` whose commands time out after ``timeout`` seconds (connecting
    too), with commands packed by hiredis where it is installed (the ``redis`` extra
    installs it).

    redis-py's asyncio connections pack every command in Python (its synchronous ones
    use hiredis): measured, that was about a third of the CPU of the limiter's one
    script call a request (bench/steps.py, docs/performance.md).
    """
    client = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    pool = client.connection_pool
    packer = _hiredis_packer()
    if packer is not None:
        base = pool.connection_class  # TCP, TLS or Unix socket, as the URL says
        name = f"Hiredis{base.__name__}"
        pool.connection_class = type(name, (_HiredisPacking, base), {"packer": packer})
    return client


def _hiredis_packer() -> Any:
    try:
        from redis.connection import HiredisRespSerializer
        from redis.utils import HIREDIS_AVAILABLE
    except ImportError:
        return None
    return HiredisRespSerializer() if HIREDIS_AVAILABLE else None


class _HiredisPacking:
    """Packs commands with redis-py's own hiredis serializer (the one its synchronous
    connections use) in front of an asyncio connection class."""

    packer: Any = None

    def pack_command(self, *args: Any) -> list[bytes]:
        return self.packer.pack(*args)  # type: ignore[no-any-return]
