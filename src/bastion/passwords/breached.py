"""Breached-password checks: is a new password in a corpus of leaked passwords?

OWASP ASVS 6.2.12 and NIST SP 800-63B §3.1.1.2 ask that a new password be checked
against "passwords obtained from previous breach corpuses". Two sources are offered,
both over Troy Hunt's Pwned Passwords corpus (the SHA-1 of every password seen in a
breach, with how often it was seen):

- :class:`PwnedRangeAPI` asks the online range API
  (https://haveibeenpwned.com/API/v3#SearchingPwnedPasswordsByRange) using its
  k-anonymity model: the password is hashed with SHA-1 locally and only the first five
  hex characters of the hash (one of 16^5 = 1,048,576 buckets) are sent. The API answers
  with the remaining 35 hex characters of *every* hash in that bucket (several hundred)
  and the number of times each was seen; the match is made here. The service therefore
  learns neither the password nor its hash, only a bucket shared by hundreds of known
  hashes and by countless unknown passwords. With padding on (``Add-Padding: true``),
  the answer is also padded with fake entries of count 0, so its size does not reveal
  the bucket to an observer of the encrypted traffic either
  (https://www.troyhunt.com/enhancing-pwned-passwords-privacy-with-padding/).
- :class:`PwnedFile` searches a local copy of the corpus, as downloaded "ordered by
  hash" (https://github.com/HaveIBeenPwned/PwnedPasswordsDownloader): nothing leaves the
  machine. The file (tens of gigabytes) is binary-searched on disk, never loaded.

A source that cannot answer raises :class:`BreachCheckUnavailableError`;
:class:`BreachChecks` runs every source, says whether any of them knows the password, and
lists the sources that could not answer, so that the caller can fail open (accept the
password and log a warning) rather than refuse registrations while a third party is down.
No message, error, or log line ever contains the password or its full hash.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import httpx

from bastion.errors import ServiceUnavailableError

__all__ = [
    "BreachCheck",
    "BreachCheckUnavailableError",
    "BreachChecks",
    "BreachVerdict",
    "PwnedFile",
    "PwnedRangeAPI",
]

_PREFIX_LENGTH = 5
_HASH_LENGTH = 40
# One line of a range answer: the other 35 hex characters of a SHA-1 and a count.
_RANGE_LINE = re.compile(rb"[0-9A-Fa-f]{35}:[0-9]+")
_HEX = frozenset(b"0123456789ABCDEFabcdef")
# One line of a downloaded file: 40 hex characters, ":" and a count (optional), CR LF or
# LF. Counts are below 10^8 today; 20 digits leave room without allowing unbounded lines.
_FILE_LINE = re.compile(rb"[0-9A-Fa-f]{40}(?::[0-9]{1,20})?\r?")
_MAX_FILE_LINE = _HASH_LENGTH + 1 + 20 + 2  # hash, ":", count, CR LF


class BreachCheckUnavailableError(ServiceUnavailableError):
    """A breached-password source could not answer.

    Timeouts, connection failures, HTTP errors, malformed answers, unreadable files. The
    text says which source failed and why; it never contains the password or its hash.
    """


@runtime_checkable
class BreachCheck(Protocol):
    """A source of breached passwords."""

    name: str
    """A short name for logs, such as ``"pwned-api"``."""

    async def is_breached(self, password: str) -> bool:
        """Whether the password is known to have appeared in a breach.

        Raises :class:`BreachCheckUnavailableError` when the source cannot answer.
        """
        ...

    async def aclose(self) -> None:
        """Release the source's resources."""
        ...


def _sha1_hex(password: str) -> str:
    """The upper-case hex SHA-1 of the UTF-8 password, as the Pwned Passwords corpus has it.

    Lone surrogates cannot come from valid UTF-8, so such a password is in no corpus;
    ``surrogatepass`` hashes it anyway instead of raising.
    """
    data = password.encode("utf-8", "surrogatepass")
    return hashlib.sha1(data, usedforsecurity=False).hexdigest().upper()


class PwnedRangeAPI:
    """The Have I Been Pwned range API, with k-anonymity (only 5 hex characters leave).

    ``timeout`` bounds the whole call (connecting, sending, and reading the answer),
    ``max_response_bytes`` the decoded answer (a real one is 20-40 kB). Redirects are not
    followed and TLS certificates are verified. ``transport`` is for tests. One HTTP
    client is shared by all calls, created on first use; close it with :meth:`aclose`.
    """

    name = "pwned-api"

    def __init__(
        self,
        base_url: str = "https://api.pwnedpasswords.com",
        *,
        timeout: float = 2.0,
        padding: bool = True,
        max_response_bytes: int = 2 * 1024 * 1024,
        user_agent: str = "bastion-password-check",
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        try:
            url = httpx.URL(base_url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"invalid range API base URL {base_url!r}: {exc}") from exc
        if url.scheme not in {"https", "http"} or not url.host:
            raise ValueError(f"the range API base URL must be an http(s) URL, got {base_url!r}")
        if url.query or url.fragment:
            raise ValueError(f"the range API base URL takes no query or fragment: {base_url!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if max_response_bytes <= 0:
            raise ValueError(f"max_response_bytes must be positive, got {max_response_bytes!r}")
        if not user_agent.strip():
            # The API refuses requests without a user agent (HTTP 403).
            raise ValueError("user_agent must not be empty")
        self._base_url = str(url).rstrip("/")
        self._host = url.host
        self.timeout = timeout
        self.padding = padding
        self.max_response_bytes = max_response_bytes
        self._headers = {"User-Agent": user_agent}
        if padding:
            self._headers["Add-Padding"] = "true"
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"PwnedRangeAPI({self._base_url!r}, timeout={self.timeout!r})"

    def _unavailable(self, reason: str) -> BreachCheckUnavailableError:
        return BreachCheckUnavailableError(f"{self.name}: {reason} ({self._host})")

    def _http_client(self) -> httpx.AsyncClient:
        if self._closed:
            raise self._unavailable("the checker is closed")
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                verify=True,
            )
        return self._client

    async def is_breached(self, password: str) -> bool:
        digest = _sha1_hex(password)
        prefix, suffix = digest[:_PREFIX_LENGTH], digest[_PREFIX_LENGTH:]
        body = await self._fetch_range(prefix)
        return self._find(body, suffix.encode("ascii"))

    async def _fetch_range(self, prefix: str) -> bytes:
        client = self._http_client()
        url = f"{self._base_url}/range/{prefix}"
        # httpx's timeout bounds each step (connect, each read); asyncio.timeout bounds
        # the whole call, so a server dripping one byte at a time cannot stretch it.
        try:
            async with asyncio.timeout(self.timeout):
                async with client.stream("GET", url, headers=self._headers) as response:
                    return await self._read_body(response)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise self._unavailable(f"no answer within {self.timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise self._unavailable(f"connection failed: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise self._unavailable(f"request failed: {type(exc).__name__}") from exc

    async def _read_body(self, response: httpx.Response) -> bytes:
        if response.is_redirect:
            raise self._unavailable(f"refused a redirect (HTTP {response.status_code})")
        if response.status_code != httpx.codes.OK:
            raise self._unavailable(f"HTTP {response.status_code}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise self._unavailable(f"answer larger than {self.max_response_bytes} bytes")
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_response_bytes:
                raise self._unavailable(f"answer larger than {self.max_response_bytes} bytes")
        return bytes(body)

    def _find(self, body: bytes, suffix: bytes) -> bool:
        """Whether ``suffix`` is listed with a count above 0; every line is checked."""
        breached = False
        seen_line = False
        for number, raw_line in enumerate(body.split(b"\n"), start=1):
            line = raw_line.removesuffix(b"\r")
            if not line:
                continue
            if _RANGE_LINE.fullmatch(line) is None:
                raise self._unavailable(f"malformed answer at line {number}")
            seen_line = True
            # Padding entries have count 0: not seen in any breach.
            if line[:35].upper() == suffix and line[36:].lstrip(b"0"):
                breached = True
        if not seen_line:
            # Every one of the 16^5 ranges holds hundreds of hashes; an empty answer
            # comes from something between us and the API, not from the API.
            raise self._unavailable("empty answer")
        return breached

    async def aclose(self) -> None:
        self._closed = True
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()


class PwnedFile:
    """A local copy of the Pwned Passwords corpus, searched without loading it.

    The file holds one ``SHA1HEX:COUNT`` line per hash (``:COUNT`` may be absent; hex in
    either case; LF or CR LF), sorted by hash: the "ordered by hash" download. A check
    binary-searches the file's byte offsets, reading about 128 bytes per step, so it
    takes O(log n) small reads (about 35 for the full 40 GB corpus), in a worker thread.

    The file is opened for each check, so it may be replaced (by a rename) while in use.
    Plain reads are used rather than :mod:`mmap`: a mapped file that is truncated while
    being read kills the process with ``SIGBUS``; a read just returns fewer bytes.
    """

    name = "pwned-file"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with self.path.open("rb") as file:
            first = file.read(_MAX_FILE_LINE + 1).split(b"\n", 1)[0]
        if _FILE_LINE.fullmatch(first) is None:
            raise ValueError(
                f"{self.path} is not in the Pwned Passwords format: its first line "
                "should be 40 hex characters, optionally followed by ':' and a count"
            )

    def __repr__(self) -> str:
        return f"PwnedFile({str(self.path)!r})"

    def _unavailable(self, reason: str) -> BreachCheckUnavailableError:
        return BreachCheckUnavailableError(f"{self.name}: {reason} ({self.path})")

    async def is_breached(self, password: str) -> bool:
        target = _sha1_hex(password).encode("ascii")
        return await asyncio.to_thread(self._search, target)

    def _search(self, target: bytes) -> bool:
        try:
            with self.path.open("rb", buffering=0) as file:
                size = os.fstat(file.fileno()).st_size
                if size == 0:
                    raise self._unavailable("the file is empty")
                return _FileSearch(file, size, self._unavailable).contains(target)
        except OSError as exc:
            raise self._unavailable(f"cannot read the file: {exc.strerror or exc}") from exc

    async def aclose(self) -> None:
        """Nothing to release: the file is opened for each check."""


class _FileSearch:
    """One binary search over a sorted file, by byte offset.

    ``_line_at(p)`` is the first line starting at or after offset ``p``. As ``p`` grows,
    so does that line's hash, so the first offset whose line has a hash >= the target is
    found by bisection; the target is in the file if and only if that line holds it.
    """

    def __init__(
        self,
        file: io.FileIO,
        size: int,
        unavailable: Callable[[str], BreachCheckUnavailableError],
    ) -> None:
        self._file = file
        self._size = size
        self._unavailable = unavailable

    def contains(self, target: bytes) -> bool:
        # Invariant: the line at ``high`` has a hash >= the target (past the end counts).
        low, high = 0, self._size
        while low < high:
            middle = (low + high) // 2
            start, key, _ = self._line_at(middle)
            if key is not None and key < target:
                # Every offset up to ``start`` leads to this line or an earlier one,
                # whose hash is also below the target.
                low = start + 1
            else:
                high = middle
        _, key, count = self._line_at(low)
        return key == target and count != b"0"

    def _line_at(self, offset: int) -> tuple[int, bytes | None, bytes | None]:
        """The line starting at or after ``offset``: its start, upper-case hash, count.

        The hash is ``None`` past the last line (it sorts after every hash); the count is
        ``None`` when the line has none.
        """
        if offset == 0:
            start, chunk = 0, self._read(0, _MAX_FILE_LINE)
        else:
            # A line starts at ``offset`` exactly when the byte before it is a newline.
            chunk = self._read(offset - 1, 2 * _MAX_FILE_LINE)
            newline = chunk.find(b"\n", 0, _MAX_FILE_LINE)
            if newline < 0:
                if len(chunk) < _MAX_FILE_LINE:
                    return self._size, None, None  # in the last line, which has no newline
                raise self._unavailable(f"malformed file near byte {offset}")
            start = offset + newline
            chunk = chunk[newline + 1 :]
        if start >= self._size:
            return self._size, None, None
        line, newline_found, _ = chunk.partition(b"\n")
        if not newline_found and start + len(line) < self._size:
            raise self._unavailable(f"malformed file near byte {start}")  # line too long
        if _FILE_LINE.fullmatch(line) is None:
            raise self._unavailable(f"malformed file near byte {start}")
        line = line.removesuffix(b"\r")
        count = (line[_HASH_LENGTH + 1 :].lstrip(b"0") or b"0") if b":" in line else None
        return start, line[:_HASH_LENGTH].upper(), count

    def _read(self, offset: int, length: int) -> bytes:
        self._file.seek(offset)
        return self._file.read(length) or b""


@dataclass(frozen=True)
class BreachVerdict:
    """What the breach checks said about a password.

    ``breached`` is true when any source knows the password. ``unavailable`` holds a
    ``"<source name>: <reason>"`` for each source that could not answer; a password not
    found is then only "not found by the sources that answered".
    """

    breached: bool
    unavailable: tuple[str, ...] = ()


class BreachChecks:
    """Every configured breached-password source, asked together.

    A source that raises :class:`BreachCheckUnavailableError` is listed in the verdict's
    ``unavailable``; the caller decides (fail open and log a warning, by design). Any
    other exception is a bug and propagates, after every source has finished.
    A ``BreachChecks`` with no sources is falsy and finds nothing.
    """

    def __init__(self, checks: Sequence[BreachCheck]) -> None:
        self.checks: tuple[BreachCheck, ...] = tuple(checks)

    def __bool__(self) -> bool:
        return bool(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def __repr__(self) -> str:
        return f"BreachChecks({list(self.checks)!r})"

    async def check(self, password: str) -> BreachVerdict:
        if not self.checks:
            return BreachVerdict(breached=False, unavailable=())
        results = await asyncio.gather(
            *(check.is_breached(password) for check in self.checks), return_exceptions=True
        )
        breached = False
        unavailable: list[str] = []
        for check, result in zip(self.checks, results, strict=True):
            if isinstance(result, BreachCheckUnavailableError):
                unavailable.append(_source_reason(check.name, result))
            elif isinstance(result, BaseException):
                raise result
            elif result:
                breached = True
        return BreachVerdict(breached=breached, unavailable=tuple(unavailable))

    async def aclose(self) -> None:
        """Close every source, even when one of them fails to close."""
        results = await asyncio.gather(
            *(check.aclose() for check in self.checks), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result


def _source_reason(name: str, error: BreachCheckUnavailableError) -> str:
    """``"<source name>: <reason>"``, whether or not the error's text names the source."""
    reason = str(error) or type(error).__name__
    return reason if reason.startswith(f"{name}:") else f"{name}: {reason}"
