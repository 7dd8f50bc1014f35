"""The README's newcomer path on a real ``bastion serve`` process with its embedded
default: register, find the link in the console, open its page, verify, log in."""

from __future__ import annotations

import asyncio
import os
import re
import time
from pathlib import Path

import httpx

from tests.conftest import STRONG_PASSWORD
from tests.system.service import BASTION, free_port

LINK = re.compile(r"(http://127\.0\.0\.1:\d+/auth/email/verify)#token=([A-Za-z0-9_.-]+)")


async def _wait_for(check: object, what: str, timeout: float = 30.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_newcomer_registers_clicks_the_console_link_and_logs_in(
    tmp_path: Path, clean_environment: None
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    env = {
        **os.environ,
        "BASTION_PUBLIC_URL": url,
        # Fast hashing for the test; everything else is the development default.
        "BASTION_PASSWORD_PROFILE": "test-only-insecure",
        "BASTION_REQUIRE_VERIFIED_EMAIL": "true",
    }
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *BASTION, "serve", "--port", str(port), cwd=tmp_path, env=env, stdout=out, stderr=out
        )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:

            async def up() -> bool:
                try:
                    return (await client.get("/healthz")).status_code == 200
                except httpx.TransportError:
                    return False

            await _wait_for(up, "the service to start")
            credentials = {"email": "newcomer@example.com", "password": STRONG_PASSWORD}
            registered = await client.post("/auth/register", json=credentials)

            async def link_printed() -> bool:
                return LINK.search(log.read_text(errors="replace")) is not None

            await _wait_for(link_printed, "the link on the console", timeout=10)
            match = LINK.search(log.read_text(errors="replace"))
            assert match is not None
            page = await client.get(match.group(1))
            before = await client.post("/auth/login", json=credentials)
            verified = await client.post("/auth/email/verify", json={"token": match.group(2)})
            after = await client.post("/auth/login", json=credentials)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)

    assert registered.status_code == 202
    assert page.status_code == 200
    assert before.status_code == 401  # unverified: answered like a wrong password
    assert verified.status_code == 204
    assert after.status_code == 200
    assert list((tmp_path / "var" / "outbox").glob("*-verify-email-*.eml"))
    assert "Traceback" not in log.read_text(errors="replace")
