"""A real ``bastion serve`` with a sign-in provider (the real OpenID provider of the test
suite): a sign-in's callback carries the provider's code and state in its query, and the
server's access log writes the request line without it."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import httpx

from tests.oidc.harness import CLIENT_ID, CLIENT_SECRET, running_provider
from tests.system.service import BASTION, free_port


async def test_the_access_log_keeps_a_callbacks_code_and_state_out(
    tmp_path: Path, clean_environment: None
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with running_provider() as provider:
        providers = {
            "corp": {
                "preset": "oidc",
                "issuer": provider.issuer,
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
            }
        }
        env = {
            **os.environ,
            "BASTION_PUBLIC_URL": url,
            "BASTION_PASSWORD_PROFILE": "test-only-insecure",
            "BASTION_OAUTH_PROVIDERS": json.dumps(providers),
        }
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                *BASTION,
                "serve",
                "--port",
                str(port),
                cwd=tmp_path,
                env=env,
                stdout=out,
                stderr=out,
            )
        try:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                deadline = time.monotonic() + 30
                while True:
                    try:
                        if (await client.get("/healthz")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    assert time.monotonic() < deadline, log.read_text(errors="replace")
                    await asyncio.sleep(0.1)
                answer = await client.get(
                    "/auth/oauth/corp/callback",
                    params={"code": "the-providers-secret-code", "state": "a-state-value"},
                )
                started = await client.get("/auth/oauth/corp/authorize")
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 10)

    written = log.read_text(errors="replace")
    assert answer.status_code == 400
    assert started.status_code == 302
    assert "GET /auth/oauth/corp/callback?[query not logged]" in written
    assert "the-providers-secret-code" not in written
    assert "a-state-value" not in written
    assert CLIENT_SECRET not in written
    assert "Traceback" not in written
