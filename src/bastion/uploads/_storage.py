"""Where uploaded bytes live: a small protocol, and the local-folder backend.

Stored objects are named by keys the storage generates (128 random bits as hex),
never by anything a client sent, so no request can name a path (OWASP File Upload
Cheat Sheet, "File Storage Location": generated names, outside the web root). The
protocol is what an S3-compatible backend would implement too: a writer that streams
an object in and is then committed (complete the multipart upload) or aborted; a
streaming read; an idempotent delete.

:class:`LocalAttachmentStorage` keeps objects in one folder (0700), one file each
(0600). A writer streams into ``<key>.part`` and renames it to ``<key>`` on commit, so
a reader never sees a partial file and a crash leaves only ``.part`` files behind.
Every file operation runs in a worker thread, off the event loop. A disk that is full,
read-only or failing (``ENOSPC``, ``EDQUOT``, ``EROFS``, ``EIO``) raises
:class:`~bastion.errors.ServiceUnavailableError` (503, retry later), logged once when
it starts and once when a file is stored again, never once per upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from bastion.errors import NotFoundError, ServiceUnavailableError

__all__ = ["AttachmentStorage", "AttachmentWriter", "LocalAttachmentStorage", "new_key"]

_KEY = re.compile(r"[0-9a-f]{32}")
_READ_CHUNK = 64 * 1024
_WRITE_BUFFER = 256 * 1024
_PARTIAL = ".part"
_DISK_FAILURES = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})
_logger = logging.getLogger("bastion.uploads")


def new_key() -> str:
    """A fresh storage key: 128 random bits, as 32 lowercase hex digits."""
    return secrets.token_hex(16)


def _checked(key: str) -> str:
    # Keys only ever come from new_key() and our own rows; checking again costs nothing
    # and keeps a path out even if a caller passes something else by mistake.
    if not _KEY.fullmatch(key):
        raise ValueError("not a storage key")
    return key


class AttachmentWriter(Protocol):
    """One object being written. Exactly one of :meth:`commit` or :meth:`abort` ends it."""

    key: str

    async def write(self, chunk: bytes) -> None: ...

    async def commit(self) -> None:
        """Make the object durable and readable under :attr:`key`."""
        ...

    async def abort(self) -> None:
        """Remove whatever was written; never raises for a missing partial object."""
        ...


class AttachmentStorage(Protocol):
    """Stored objects under generated keys."""

    async def open_writer(self) -> AttachmentWriter:
        """Start a new object under a fresh key."""
        ...

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """Open the object and return its bytes as a stream of chunks.

        Raises:
            NotFoundError: no object under ``key``.
        """
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; nothing happens when there is none."""
        ...


class _LocalWriter:
    def __init__(
        self, key: str, file: BinaryIO, partial: Path, final: Path, disk: _DiskState
    ) -> None:
        self.key = key
        self._file = file
        self._partial = partial
        self._final = final
        self._disk = disk
        self._buffer = bytearray()

    async def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        if len(self._buffer) >= _WRITE_BUFFER:
            await self._flush()

    async def _flush(self) -> None:
        if self._buffer:
            data = bytes(self._buffer)
            self._buffer.clear()
            with self._disk.watched():
                await asyncio.to_thread(self._file.write, data)

    async def commit(self) -> None:
        await self._flush()
        with self._disk.watched():
            await asyncio.to_thread(self._finish)
        self._disk.stored()

    def _finish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._partial, self._final)

    async def abort(self) -> None:
        self._buffer.clear()
        await asyncio.to_thread(self._discard)

    def _discard(self) -> None:
        # Closing flushes what is buffered, which a full disk refuses again: the
        # partial file goes all the same.
        with contextlib.suppress(OSError):
            self._file.close()
        self._partial.unlink(missing_ok=True)


class _DiskState:
    """Whether the folder's disk refuses writes: logged when that starts and ends."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self._failing: str | None = None

    @contextlib.contextmanager
    def watched(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            if exc.errno not in _DISK_FAILURES:
                raise
            name = errno.errorcode.get(exc.errno or 0, "?")
            if self._failing is None:
                _logger.warning("attachment storage %s unavailable: %s", self._root, name)
            self._failing = name
            raise ServiceUnavailableError(f"attachment storage unavailable: {name}") from exc

    def stored(self) -> None:
        if self._failing is not None:
            _logger.warning("attachment storage %s recovered", self._root)
            self._failing = None


class LocalAttachmentStorage:
    """Objects as files in ``root`` (created 0700 on first use; files are 0600)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._disk = _DiskState(root)

    def path_of(self, key: str) -> Path:
        """The file of a committed object (for tests and operators)."""
        return self.root / _checked(key)

    def _ensure_root(self) -> None:
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.root.chmod(0o700)

    def _create(self, key: str) -> BinaryIO:
        self._ensure_root()
        partial = self.root / f"{key}{_PARTIAL}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        descriptor = os.open(partial, flags, 0o600)
        os.fchmod(descriptor, 0o600)  # whatever the umask
        return os.fdopen(descriptor, "wb")

    async def open_writer(self) -> AttachmentWriter:
        key = new_key()
        with self._disk.watched():
            file = await asyncio.to_thread(self._create, key)
        partial = self.root / f"{key}{_PARTIAL}"
        return _LocalWriter(key, file, partial, self.root / key, self._disk)

    def _open(self, key: str) -> BinaryIO:
        try:
            return self.path_of(key).open("rb")
        except FileNotFoundError:
            raise NotFoundError("no stored object under this key") from None

    async def read(self, key: str) -> AsyncIterator[bytes]:
        with self._disk.watched():
            file = await asyncio.to_thread(self._open, key)
        return _chunks(file)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self.path_of(key).unlink, missing_ok=True)


async def _chunks(file: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while chunk := await asyncio.to_thread(file.read, _READ_CHUNK):
            yield chunk
    finally:
        file.close()
