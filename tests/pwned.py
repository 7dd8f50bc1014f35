"""A real local HTTP server that speaks the Pwned Passwords range API.

``GET /range/{5 hex}`` answers, as https://api.pwnedpasswords.com does, with one
``SUFFIX:COUNT`` line (CR LF) per known hash in that range. Use it as a context manager::

    with PwnedRangeServer({"hunter2": 17}) as server:
        checker = PwnedRangeAPI(server.url, timeout=0.5)

Every answer also lists ``filler_entries`` random suffixes with counts above 0 (a real
range always holds hundreds of hashes, and the checker treats an empty answer as
broken), plus ``padding_entries`` random suffixes with count 0 when the request carries
``Add-Padding: true``. A random suffix matches a given password with probability 2^-140.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

_RANGE_PATH = re.compile(r"/range/([0-9A-Fa-f]{5})")


def sha1_hex(password: str) -> str:
    """The upper-case hex SHA-1 of the UTF-8 password, as the corpus has it."""
    return hashlib.sha1(password.encode(), usedforsecurity=False).hexdigest().upper()


def random_suffix() -> str:
    return secrets.token_hex(35 // 2 + 1)[:35].upper()


class PwnedRangeServer:
    """A range API on 127.0.0.1, a free port, in a daemon thread.

    - ``passwords``: password -> count; their SHA-1 suffixes are listed in their ranges
      (a count of 0 lists the suffix like a padding entry).
    - ``padding_entries``: count-0 entries added when the request asks for padding.
    - ``filler_entries``: random entries with a count above 0, in every answer.
    - ``delay``: seconds to wait before answering (cut short when the server stops).
    - ``drip``: seconds to wait between the lines of the body (sent without
      Content-Length, so the client reads until the connection closes).
    - ``status`` / ``raw_body``: answer every request with this status and body instead.
    - ``redirect_to``: answer every request with a 302 to this URL.
    - ``send_length``: whether to send Content-Length (else the body ends at close).

    ``requests`` records ``(path, headers)`` of each request, header names lower-cased.
    """

    def __init__(
        self,
        passwords: Mapping[str, int] | None = None,
        *,
        padding_entries: int = 10,
        filler_entries: int = 3,
        delay: float = 0.0,
        drip: float = 0.0,
        status: int = 200,
        raw_body: bytes | None = None,
        redirect_to: str | None = None,
        send_length: bool = True,
    ) -> None:
        self.passwords = dict(passwords or {})
        self.padding_entries = padding_entries
        self.filler_entries = filler_entries
        self.delay = delay
        self.drip = drip
        self.status = status
        self.raw_body = raw_body
        self.redirect_to = redirect_to
        self.send_length = send_length
        self.requests: list[tuple[str, dict[str, str]]] = []
        self._stopping = threading.Event()
        self._httpd: _QuietServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def range_body(self, prefix: str, *, padding: bool) -> bytes:
        """The answer for one range, as the real API would give it."""
        entries = [
            (digest[5:], count)
            for digest, count in ((sha1_hex(p), c) for p, c in self.passwords.items())
            if digest.startswith(prefix.upper())
        ]
        entries += [
            (random_suffix(), secrets.randbelow(1000) + 1) for _ in range(self.filler_entries)
        ]
        if padding:
            entries += [(random_suffix(), 0) for _ in range(self.padding_entries)]
        entries.sort()
        return b"".join(f"{suffix}:{count}\r\n".encode() for suffix, count in entries)

    def start(self) -> Self:
        handler = _handler_for(self)
        httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._stopping.clear()
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers waiting out a delay or a drip
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server stops first; True if it kept running."""
        return seconds <= 0 or not self._stopping.wait(seconds)


class _QuietServer(ThreadingHTTPServer):
    # Handler threads never hold up stop(): a slow one is a daemon and is not joined.
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up mid-answer (a timeout test) is expected: stay quiet."""


def _handler_for(server: PwnedRangeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            headers = {name.lower(): value for name, value in self.headers.items()}
            server.requests.append((self.path, headers))
            if not server._wait(server.delay):
                return
            if server.redirect_to is not None:
                self._answer(302, b"", extra={"Location": server.redirect_to})
                return
            if server.raw_body is not None or server.status != 200:
                self._answer(server.status, server.raw_body or b"")
                return
            match = _RANGE_PATH.fullmatch(self.path)
            if match is None:
                self._answer(404, b"Not found")
                return
            padding = headers.get("add-padding", "").lower() == "true"
            self._answer(200, server.range_body(match.group(1), padding=padding))

        def _answer(
            self, status: int, body: bytes, *, extra: Mapping[str, str] | None = None
        ) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            for name, value in (extra or {}).items():
                self.send_header(name, value)
            if server.send_length and not server.drip:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not server.drip:
                self.wfile.write(body)
                return
            for line in body.splitlines(keepends=True):
                self.wfile.write(line)
                if not server._wait(server.drip):
                    return

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler
