"""docs/quickstart.md's first Python block, run as written: saved as ``app.py`` in an
empty folder and served by ``uvicorn app:app`` with no settings at all."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import httpx
import jwt

from tests.conftest import STRONG_PASSWORD
from tests.system.service import Instance, free_port, ready, service_environment, stop, tail

QUICKSTART = Path(__file__).parents[2] / "docs" / "quickstart.md"
MAX_LINES = 25  # non-blank, non-comment lines of the block


def quickstart_app() -> str:
    """The first ```python block of the quickstart."""
    match = re.search(r"```python\n(.*?)```", QUICKSTART.read_text(), re.DOTALL)
    assert match is not None, "docs/quickstart.md has no python block"
    return match.group(1)


def test_the_quickstart_app_is_at_most_25_lines() -> None:
    code = [
        line
        for line in quickstart_app().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert len(code) <= MAX_LINES, f"{len(code)} lines"


async def test_the_quickstart_app_protects_its_routes(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(quickstart_app())
    port = free_port()
    log = tmp_path / "uvicorn.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "uvicorn", "app:app", "--port", str(port),
            cwd=tmp_path,
            env=service_environment(),  # no BASTION_* setting
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    instance = Instance(port, process, log)
    try:
        async with httpx.AsyncClient(base_url=instance.url, timeout=30) as client:
            loop = asyncio.get_running_loop()
            assert await ready(client, instance, loop.time() + 60), tail(log)
            public = await client.get("/public")
            anonymous_me = await client.get("/me")
            anonymous_undeclared = await client.get("/undeclared")
            credentials = {"email": "reader@example.com", "password": STRONG_PASSWORD}
            registered = await client.post("/auth/register", json=credentials)
            login = await client.post("/auth/login", json=credentials)
            assert login.status_code == 200, login.text
            token = login.json()["access_token"]
            bearer = {"authorization": f"Bearer {token}"}
            me = await client.get("/me", headers=bearer)
            signed_in_undeclared = await client.get("/undeclared", headers=bearer)
            forged = await client.get("/me", headers={"authorization": f"Bearer {token}x"})
    finally:
        await stop(instance)

    assert public.status_code == 200
    assert public.json() == {"hello": "world"}
    assert anonymous_me.status_code == 401
    assert anonymous_me.headers["content-type"] == "application/problem+json"
    assert registered.status_code == 202
    assert me.status_code == 200
    assert me.json() == {"user_id": jwt.decode(token, options={"verify_signature": False})["sub"]}
    assert forged.status_code == 401
    for refused in (anonymous_undeclared, signed_in_undeclared):
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
        assert "never" not in refused.text
    assert (tmp_path / "var" / "bastion.db").is_file()  # the embedded default, in the folder
    assert "Traceback" not in log.read_text(errors="replace")
