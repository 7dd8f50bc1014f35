"""A small HTTP server on loopback that answers what a test tells it, for what a real
provider will not do: answer slowly, compressed, or with a document of the test's own."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Answer", "JSONServer"]


@dataclass
class Answer:
    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering
    raw: bytes | None = None  # sent as is instead of the JSON of ``body``


class JSONServer:
    """Answers ``GET/POST path`` with ``answers[path]`` (404 otherwise); counts requests."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer] = {}
        self.requests: list[str] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> JSONServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode().split("?")[0]
            self.requests.append(path)
            answer = self.answers.get(path, Answer({"error": "not found"}, status=404))
            await asyncio.sleep(answer.delay)
            body = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
            headers = {"content-type": "application/json", **answer.headers}
            lines = [f"HTTP/1.1 {answer.status} X", f"content-length: {len(body)}"]
            lines += [f"{name}: {value}" for name, value in headers.items()]
            writer.write(("\r\n".join([*lines, "connection: close", "", ""])).encode() + body)
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
