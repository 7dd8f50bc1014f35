"""Real ``bastion serve`` processes for the system tests: start, wait, stop."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import redis.asyncio as aioredis

from tests.conftest import REDIS_URL

START_TIMEOUT = 30.0  # seconds for an instance to answer /healthz
STOP_TIMEOUT = 10.0  # seconds for an instance to stop on SIGTERM before SIGKILL
# The ``bastion`` console script, run by this interpreter (no dependency on PATH).
BASTION = [sys.executable, "-c", "from bastion_cli import main; main()"]


@dataclass
class Instance:
    port: int
    process: asyncio.subprocess.Process
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def service_environment() -> dict[str, str]:
    """This process's environment without its ``BASTION_*`` settings (the tests' own
    ``BASTION_TEST_*`` stay): a service started with it has only the settings given."""
    return {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BASTION_") or name.startswith("BASTION_TEST_")
    }


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


async def spawn(env: dict[str, str], workdir: Path, name: str) -> Instance:
    """``bastion serve`` on a free port, its output in ``workdir/name.log``."""
    port = free_port()
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *BASTION,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            env=env,
            cwd=workdir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one
        )
    return Instance(port, process, log)


async def ready(client: httpx.AsyncClient, instance: Instance, deadline: float) -> bool:
    """Whether ``instance`` answers /healthz; False when its process exited first."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        if instance.process.returncode is not None:
            return False
        try:
            response = await client.get(f"{instance.url}/healthz")
            if response.status_code == 200:
                return True
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.05)
    pytest.fail(f"instance on port {instance.port} not ready:\n{tail(instance.log)}")


async def stop(instance: Instance, first: signal.Signals = signal.SIGTERM) -> None:
    """Stop the process group with ``first``, then SIGKILL if it is still there."""
    process = instance.process
    for sig in (first, signal.SIGKILL):
        if process.returncode is not None:
            break
        with suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
    await process.wait()


async def delete_keys(prefix: str) -> None:
    """Delete the Redis keys under ``prefix`` (a test's own key space)."""
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=5)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()
