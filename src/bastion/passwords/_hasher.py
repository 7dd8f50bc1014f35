"""Argon2id password hashing in a bounded worker pool.

Argon2 is deliberately slow and memory-hard, so it never runs on the event loop
(a blocked loop stalls every request): hashes are computed in a thread pool, which
works because argon2-cffi releases the GIL while hashing. The pool is bounded
because each hash holds ``memory_cost`` KiB; a caller that cannot get a slot in time
gets :class:`~bastion.errors.ServiceBusyError` instead of queueing without limit
(OWASP Password Storage Cheat Sheet, "Argon2id"; OWASP Denial of Service Cheat Sheet).
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import argon2
from argon2 import low_level
from argon2.exceptions import InvalidHashError, VerificationError

from bastion.errors import ServiceBusyError
from bastion.passwords import legacy_bcrypt
from bastion.passwords.profiles import RFC9106_LOW_MEMORY, Argon2Profile

__all__ = ["PasswordHasher"]

_T = TypeVar("_T")

_ARGON2ID_PREFIX = "$argon2id$"


def _b64(data: bytes) -> str:
    """Base64 without padding, as in the PHC string format Argon2 hashes use."""
    return base64.b64encode(data).decode("ascii").rstrip("=")


class PasswordHasher:
    """Hash and verify passwords with Argon2id; the no-argument form is the safe one.

    ``profile`` defaults to :data:`~bastion.passwords.RFC9106_LOW_MEMORY`. At most
    ``max_concurrency`` (default: the CPU count) hashes run at once; a caller that
    waits more than ``queue_timeout`` seconds for a slot gets
    :class:`~bastion.errors.ServiceBusyError`.

    Passwords are hashed and compared exactly as given, as UTF-8: no stripping, no
    case folding, no normalisation, no truncation (ASVS 6.2.8).

    Call :meth:`close` when done to stop the worker threads.
    """

    def __init__(
        self,
        profile: Argon2Profile = RFC9106_LOW_MEMORY,
        *,
        max_concurrency: int | None = None,
        queue_timeout: float = 5.0,
    ) -> None:
        if max_concurrency is None:
            max_concurrency = os.cpu_count() or 1
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        if queue_timeout < 0:
            raise ValueError("queue_timeout must not be negative")
        self.profile = profile
        self.max_concurrency = max_concurrency
        self.queue_timeout = queue_timeout
        # Validates the parameters for this platform and implements needs_rehash;
        # hashing and verification call argon2.low_level directly so that only
        # Argon2id is ever produced or accepted.
        self._argon2 = argon2.PasswordHasher(
            time_cost=profile.time_cost,
            memory_cost=profile.memory_cost,
            parallelism=profile.parallelism,
            hash_len=profile.hash_len,
            salt_len=profile.salt_len,
            type=low_level.Type.ID,
        )
        # For unknown accounts: a well-formed Argon2id hash with this profile's
        # parameters and a random tag. Verifying it costs a full Argon2id computation,
        # like a wrong password for a real account, and no password matches it
        # (OWASP Authentication Cheat Sheet, "Authentication Responses").
        self._dummy_hash = (
            f"{_ARGON2ID_PREFIX}v={low_level.ARGON2_VERSION}"
            f"$m={profile.memory_cost},t={profile.time_cost},p={profile.parallelism}"
            f"${_b64(secrets.token_bytes(profile.salt_len))}"
            f"${_b64(secrets.token_bytes(profile.hash_len))}"
        )
        self._executor = ThreadPoolExecutor(
            max_workers=max_concurrency, thread_name_prefix="bastion-argon2"
        )
        # The admission bound is an asyncio.Semaphore per running event loop, made on
        # first use in that loop. An asyncio.Semaphore binds itself to the loop it
        # first waits in, so one shared semaphore would break a hasher made outside a
        # loop and later used from another loop (tests, worker threads with their own
        # loop). Within a loop it gives fair FIFO admission and composes with
        # asyncio.timeout; across loops the executor's max_workers still caps how many
        # hashes run at once. The weak keys drop the semaphore when its loop is gone.
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore]
        self._slots = weakref.WeakKeyDictionary()
        self._slots_lock = threading.Lock()
        self._queued = 0
        # Called with the seconds each caller waited for a slot (admitted or not).
        self.on_wait: Callable[[float], None] | None = None

    @property
    def queue_depth(self) -> int:
        """How many callers wait for a slot right now (all event loops together)."""
        return self._queued

    async def hash(self, password: str) -> str:
        """Hash ``password`` with Argon2id and a fresh random salt.

        Returns the encoded hash (``$argon2id$v=19$m=...,t=...,p=...$salt$tag``).
        Raises :class:`~bastion.errors.ServiceBusyError` when no slot frees up in time,
        and :class:`UnicodeEncodeError` if ``password`` cannot be encoded in UTF-8.
        """
        return await self._run(self._hash_sync, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored_hash``.

        Never raises for a wrong password or a malformed hash: both give ``False``.
        ``stored_hash=None`` (the account does not exist) verifies against a dummy hash
        of the same profile, so that an unknown account costs the same time as a
        wrong password, and gives ``False``. Imported bcrypt hashes are checked by
        :mod:`bastion.passwords.legacy_bcrypt`; any other format gives ``False``.
        Raises :class:`~bastion.errors.ServiceBusyError` when no slot frees up in time.
        """
        if stored_hash is None:
            await self._run(self._verify_argon2id_sync, self._dummy_hash, password)
            return False
        if stored_hash.startswith(_ARGON2ID_PREFIX):
            return await self._run(self._verify_argon2id_sync, stored_hash, password)
        if legacy_bcrypt.is_bcrypt_hash(stored_hash):
            return await self._run(legacy_bcrypt.verify_bcrypt, stored_hash, password)
        return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """Whether ``stored_hash`` should be replaced after the next successful login.

        True for bcrypt hashes, for Argon2 hashes whose variant or parameters differ
        from this hasher's profile, and for anything unparsable.
        """
        if legacy_bcrypt.is_bcrypt_hash(stored_hash):
            return True
        try:
            return self._argon2.check_needs_rehash(stored_hash)
        except (InvalidHashError, ValueError):
            return True

    def close(self) -> None:
        """Shut the worker pool down, waiting for running hashes to finish."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def _hash_sync(self, password: str) -> str:
        profile = self.profile
        encoded = low_level.hash_secret(
            secret=password.encode("utf-8"),
            salt=secrets.token_bytes(profile.salt_len),
            time_cost=profile.time_cost,
            memory_cost=profile.memory_cost,
            parallelism=profile.parallelism,
            hash_len=profile.hash_len,
            type=low_level.Type.ID,
        )
        return encoded.decode("ascii")

    @staticmethod
    def _verify_argon2id_sync(stored_hash: str, password: str) -> bool:
        try:
            return low_level.verify_secret(
                stored_hash.encode("ascii"), password.encode("utf-8"), low_level.Type.ID
            )
        except (VerificationError, InvalidHashError, UnicodeError):
            return False

    def _slots_for(self, loop: asyncio.AbstractEventLoop) -> asyncio.Semaphore:
        with self._slots_lock:
            slots = self._slots.get(loop)
            if slots is None:
                slots = self._slots[loop] = asyncio.Semaphore(self.max_concurrency)
            return slots

    def _count_queued(self, change: int) -> None:
        with self._slots_lock:  # loops in other threads share the count
            self._queued += change

    async def _run(self, fn: Callable[..., _T], *args: str) -> _T:
        """Run ``fn(*args)`` in the pool once a slot is free; ServiceBusyError if none."""
        loop = asyncio.get_running_loop()
        slots = self._slots_for(loop)
        started = loop.time()
        self._count_queued(1)
        try:
            async with asyncio.timeout(self.queue_timeout):
                await slots.acquire()
        except TimeoutError:
            raise ServiceBusyError("password hashing is saturated; retry shortly") from None
        finally:
            self._count_queued(-1)
            if self.on_wait is not None:
                self.on_wait(loop.time() - started)
        try:
            work = loop.run_in_executor(self._executor, fn, *args)
        except BaseException:
            slots.release()
            raise

        def done(finished: asyncio.Future[_T]) -> None:
            # The slot is freed when the computation ends, not when the caller stops
            # waiting: a cancelled request must not let more hashes in than run.
            slots.release()
            if not finished.cancelled():
                finished.exception()  # retrieved, so a caller gone away logs nothing

        work.add_done_callback(done)
        return await asyncio.shield(work)
