"""A TCP proxy a test can cut and restore: a real network outage of one dependency.

The shared PostgreSQL must never be stopped; a test that needs it to go away connects
through this proxy instead and cuts it: every open connection is closed and new ones
are refused until :meth:`TCPProxy.restore`.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["TCPProxy"]


class TCPProxy:
    """Forwards 127.0.0.1:``port`` (a free port) to ``target_host``:``target_port``."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        """Close every connection and stop listening: new connections are refused."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def point_at(self, target_host: str, target_port: int) -> None:
        """Forward new connections to another target (one known only after the port)."""
        self._target = (target_host, target_port)

    async def restore(self) -> None:
        await self.start()

    async def aclose(self) -> None:
        await self.cut()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, upstream_writer}
        pipes = [
            asyncio.ensure_future(self._pipe(reader, upstream_writer)),
            asyncio.ensure_future(self._pipe(upstream_reader, writer)),
        ]
        self._tasks.update(pipes)
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
                self._tasks.discard(pipe)
            for end in (writer, upstream_writer):
                self._writers.discard(end)
                end.transport.abort()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
