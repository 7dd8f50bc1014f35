"""Receive one file from a ``multipart/form-data`` body, streaming it into storage.

The body is parsed as it arrives (``python-multipart``'s streaming parser), and the
file's bytes go straight to the storage writer: nothing is spooled to a temporary
file, and no more than one chunk of the body is held in memory. The size cap is
checked on every chunk, so a body that passes it is refused at once, however it is
sent (with a ``Content-Length`` or chunked), and its partial object is removed
(OWASP API4:2023; OWASP File Upload Cheat Sheet, "File Size Limit").

Exactly one part is accepted: the file, named by :attr:`UploadPolicy.field`. Any other
part, a second one, a transfer encoding, or a body that ends early is refused before
anything is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from bastion.uploads._detect import DEFAULT_TYPES, TypeSniffer, declared_type
from bastion.uploads._errors import (
    InsufficientStorageError,
    UnsupportedMediaTypeError,
    UploadError,
    UploadTooLargeError,
)
from bastion.uploads._names import safe_filename
from bastion.uploads._storage import AttachmentStorage, AttachmentWriter

if TYPE_CHECKING:
    from python_multipart.multipart import MultipartCallbacks

__all__ = ["MULTIPART_OVERHEAD", "ReceivedFile", "UploadPolicy", "receive_file"]

# Room for the boundaries and the part's headers around the file (python-multipart
# caps a part at 8 headers of 4 KiB each).
MULTIPART_OVERHEAD = 64 * 1024
_IDENTITY_ENCODINGS = frozenset({b"", b"binary", b"8bit", b"7bit"})


@dataclass(frozen=True)
class UploadPolicy:
    """What an upload may be. The defaults are the safe choice: 10 MiB, the six types
    of :data:`~bastion.uploads.DEFAULT_TYPES`, one part named ``file``."""

    max_bytes: int = 10 * 1024 * 1024
    types: frozenset[str] = DEFAULT_TYPES
    field: str = "file"

    @property
    def max_body_bytes(self) -> int:
        """The cap on the whole body: the file plus :data:`MULTIPART_OVERHEAD`."""
        return self.max_bytes + MULTIPART_OVERHEAD


@dataclass(frozen=True)
class ReceivedFile:
    """A committed object: its storage key, display name, detected type and size."""

    key: str
    filename: str
    content_type: str
    size: int


@dataclass
class _Events:
    """The parser's callbacks, recorded: they are synchronous, storage is not."""

    queue: list[tuple[str, Any]] = field(default_factory=list)
    _name: bytes = b""
    _value: bytes = b""
    _headers: dict[bytes, bytes] = field(default_factory=dict)

    def callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._data,
            "on_part_end": lambda: self.queue.append(("part_end", None)),
            "on_end": lambda: self.queue.append(("end", None)),
        }

    def _begin(self) -> None:
        self._headers = {}
        self.queue.append(("part", None))

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        name = self._name.lower()
        if name in self._headers:
            self._headers[b""] = b"repeated"  # refused when the headers are read
        self._headers[name] = self._value
        self._name = self._value = b""

    def _headers_finished(self) -> None:
        self.queue.append(("headers", self._headers))

    def _data(self, data: bytes, start: int, end: int) -> None:
        self.queue.append(("data", data[start:end]))


class _Receiver:
    def __init__(self, storage: AttachmentStorage, policy: UploadPolicy, space: int | None) -> None:
        self.storage = storage
        self.policy = policy
        self.space = space
        self.sniffer = TypeSniffer()
        self.writer: AttachmentWriter | None = None
        self.parts = 0
        self.filename = ""
        self.declared: str | None = None
        self.part_done = False
        self.finished = False

    async def handle(self, kind: str, value: Any) -> None:
        if kind == "part":
            self.parts += 1
            if self.parts > 1:
                raise UploadError(f"send exactly one part, named {self.policy.field!r}")
        elif kind == "headers":
            await self._start(value)
        elif kind == "data":
            if self.writer is None:
                raise UploadError("the body is not valid multipart/form-data")
            size = self.sniffer.size + len(value)
            if size > self.policy.max_bytes:
                raise UploadTooLargeError(f"The file exceeds {self.policy.max_bytes} bytes.")
            if self.space is not None and size > self.space:
                raise InsufficientStorageError("The file does not fit in the storage quota.")
            self.sniffer.feed(value)
            await self.writer.write(value)
        elif kind == "part_end":
            self.part_done = True
        elif kind == "end":
            self.finished = True

    async def _start(self, headers: dict[bytes, bytes]) -> None:
        disposition, options = parse_options_header(headers.get(b"content-disposition"))
        name = options.get(b"name")
        if b"" in headers or disposition != b"form-data" or name != self.policy.field.encode():
            raise UploadError(f"send exactly one part, named {self.policy.field!r}")
        encoding = headers.get(b"content-transfer-encoding", b"").strip().lower()
        if encoding not in _IDENTITY_ENCODINGS:
            # RFC 7578 §4.7: deprecated in form data; the bytes must be the file itself.
            raise UploadError("a part may not declare a Content-Transfer-Encoding")
        declared = declared_type(headers.get(b"content-type", b"").decode("latin-1"))
        if declared is not None and declared not in self.policy.types:
            raise UnsupportedMediaTypeError(f"{declared} is not an allowed type")
        self.declared = declared
        raw_name = options.get(b"filename")
        self.filename = safe_filename(raw_name.decode("utf-8", "replace") if raw_name else None)
        self.writer = await self.storage.open_writer()

    def verdict(self) -> str:
        """The detected type, once the body is complete; raises why it is refused."""
        if not self.finished or not self.part_done:
            if self.parts == 0 and self.finished:
                raise UploadError(f"a part named {self.policy.field!r} is required")
            raise UploadError("the multipart body is incomplete")
        if self.sniffer.size == 0:
            raise UploadError("the file is empty")
        detected = self.sniffer.result()
        if detected is None or detected not in self.policy.types:
            raise UnsupportedMediaTypeError(
                f"{detected} is not an allowed type"
                if detected
                else "the content is not one of the allowed types"
            )
        if self.declared is not None and self.declared != detected:
            raise UploadError(f"the part declares {self.declared}, but the content is {detected}")
        return detected


def _boundary(content_type: str | None) -> bytes:
    media, params = parse_options_header(content_type)
    if media != b"multipart/form-data":
        raise UnsupportedMediaTypeError("the body must be multipart/form-data")
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError("the multipart/form-data body has no boundary")
    return boundary


async def receive_file(
    chunks: AsyncIterable[bytes],
    content_type: str | None,
    storage: AttachmentStorage,
    policy: UploadPolicy | None = None,
    *,
    space: int | None = None,
) -> ReceivedFile:
    """Stream the one file of a ``multipart/form-data`` body (``chunks``, with the
    request's ``content_type``) into a new object of ``storage``, and commit it.

    ``space``: the bytes left of a storage quota, if there is one. It is checked on
    every chunk like the size cap; the caller still checks the quota again when it
    records the file, since other uploads may have used the space meanwhile.

    Raises:
        UploadTooLargeError: the file passed ``policy.max_bytes`` (or the body
            ``policy.max_body_bytes``); nothing is kept.
        InsufficientStorageError: the file passed ``space``; nothing is kept.
        UnsupportedMediaTypeError: the body is not multipart/form-data, or the part
            declares, or the content is, a type not in ``policy.types``.
        UploadError: missing, other or repeated parts, an empty file, a declared type
            that disagrees with the content, or a malformed or incomplete body.
    """
    policy = policy or UploadPolicy()
    events = _Events()
    receiver = _Receiver(storage, policy, space)
    try:
        parser = MultipartParser(_boundary(content_type), events.callbacks())
        received = 0
        async for chunk in chunks:
            received += len(chunk)
            if received > policy.max_body_bytes:
                raise UploadTooLargeError(
                    f"The request body exceeds {policy.max_body_bytes} bytes."
                )
            parser.write(chunk)
            for kind, value in events.queue:
                await receiver.handle(kind, value)
            events.queue.clear()
        parser.finalize()
        content_type = receiver.verdict()
        assert receiver.writer is not None  # verdict() saw the part
        await receiver.writer.commit()
    except FormParserError:
        await _abort(receiver.writer)
        raise UploadError("the body is not valid multipart/form-data") from None
    except BaseException:
        await _abort(receiver.writer)
        raise
    return ReceivedFile(receiver.writer.key, receiver.filename, content_type, receiver.sniffer.size)


async def _abort(writer: AttachmentWriter | None) -> None:
    if writer is not None:
        # Shielded: a request cancelled by its timeout still removes its partial file.
        await asyncio.shield(writer.abort())
