"""A redis-server of a test's own, on a free port, that the test may stop, empty or
restart (the shared Redis is never stopped nor emptied)."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis

__all__ = ["RedisServer"]


class RedisServer:
    """``redis-server`` without persistence: stopped and started again, it is empty."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is required for the outage tests", pytrace=False)
        self._process = subprocess.Popen(  # noqa: ASYNC220  (started once, waited below)
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self._workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = aioredis.Redis.from_url(self.url)
        try:
            for _ in range(100):
                try:
                    if await client.ping():
                        return
                except (OSError, aioredis.RedisError):
                    await asyncio.sleep(0.05)
            pytest.fail("the test's redis-server did not start", pytrace=False)
        finally:
            await client.aclose()

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None

    async def restart_empty(self) -> None:
        """Stop and start again on the same port: what a restart without persistence
        (or a failover to an empty replica) looks like to its clients."""
        self.stop()
        await self.start()
