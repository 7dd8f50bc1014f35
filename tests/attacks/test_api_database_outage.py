"""Attack: take the database away under a running service, then give it back.

PostgreSQL: the app talks to the shared server through a TCP proxy (tests/tcp_proxy.py)
which the test cuts (every connection closed, new ones refused) and restores; the
shared server is never stopped. A fake server answers "the database system is starting
up" as PostgreSQL does. SQLite: another connection holds the database's write
lock past the engine's busy timeout (``?timeout=`` in the URL).

Meanwhile every route that needs the database answers 503 ``service-unavailable`` with
``Retry-After`` as a problem, nothing half-written stays, the outage is logged once
(no traceback, not once per request), and once the database answers again the same
process serves again and logs the recovery once, with the count of refused requests.
A database bug stays a 500 with its traceback. The attachment disk, full (its files
written to ``/dev/full``), is the same kind of outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, BinaryIO

import httpx
import pytest
import sqlalchemy as sa

from bastion.errors import DatabaseUnavailableError
from bastion.stores.sql import create_engine
from bastion.uploads import LocalAttachmentStorage
from tests import samples
from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, user
from tests.tcp_proxy import TCPProxy


class Outage:
    """The backend's database, made unavailable and available again."""

    def __init__(self, database_url: str) -> None:
        self._url = sa.make_url(database_url)
        self._proxy: TCPProxy | None = None
        self._lock: sqlite3.Connection | None = None

    @property
    def database_url(self) -> str:
        """The URL the app is given: through the proxy, or with a short busy timeout."""
        if self._proxy is not None:
            url = self._url.set(host="127.0.0.1", port=self._proxy.port)
            return url.render_as_string(hide_password=False)
        return self._url.update_query_dict({"timeout": "0.2"}).render_as_string()

    @property
    def refuses_reads(self) -> bool:
        """PostgreSQL cut off refuses everything; a locked SQLite still serves reads."""
        return self._proxy is not None

    async def start(self) -> None:
        if self._url.get_backend_name() == "postgresql":
            self._proxy = TCPProxy(self._url.host or "127.0.0.1", self._url.port or 5432)
            await self._proxy.start()

    async def cut(self) -> None:
        if self._proxy is not None:
            await self._proxy.cut()
            return
        assert self._url.database is not None
        self._lock = sqlite3.connect(self._url.database, isolation_level=None)
        self._lock.execute("BEGIN IMMEDIATE")

    async def restore(self) -> None:
        if self._proxy is not None:
            await self._proxy.restore()
            return
        assert self._lock is not None
        self._lock.execute("ROLLBACK")
        self._lock.close()
        self._lock = None

    async def close(self) -> None:
        if self._proxy is not None:
            await self._proxy.aclose()
        if self._lock is not None:
            self._lock.close()


@pytest.fixture
async def outage(database_url: str) -> AsyncIterator[Outage]:
    fault = Outage(database_url)
    await fault.start()
    try:
        yield fault
    finally:
        await fault.close()


async def _during_outage(
    client: httpx.AsyncClient,
    owner: dict[str, Any],
    admin: dict[str, Any],
    task: str,
    *,
    reads: bool,
) -> dict[str, httpx.Response]:
    """Requests to every kind of route that writes, and to some that read."""
    answers = {
        "login": await client.post(
            "/auth/login", json={"email": "owner@example.com", "password": STRONG_PASSWORD}
        ),
        "refresh": await client.post(
            "/auth/refresh", json={"refresh_token": owner["refresh_token"]}
        ),
        "create task": await client.post("/tasks", json={"title": "lost"}, headers=owner["auth"]),
        "edit task": await client.patch(
            f"/tasks/{task}", json={"title": "changed"}, headers=owner["auth"]
        ),
        "attach": await samples.upload(client, task, owner["auth"], samples.text(), "a.txt"),
        "admin": await client.patch(
            f"/admin/users/{owner['id']}", json={"role": "admin"}, headers=admin["auth"]
        ),
    }
    if reads:
        answers["list tasks"] = await client.get("/tasks", headers=owner["auth"])
        answers["read task"] = await client.get(f"/tasks/{task}", headers=owner["auth"])
        answers["attachments"] = await client.get(
            f"/tasks/{task}/attachments", headers=owner["auth"]
        )
        answers["admin list"] = await client.get("/admin/users", headers=admin["auth"])
        answers["sessions"] = await client.get("/auth/sessions", headers=owner["auth"])
    return answers


async def test_database_outage_is_503_logged_once_and_recovers(
    make: AppMaker, outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make.app(database_url=outage.database_url)
    client = await make.client(app)
    owner = await user(client, app, "owner@example.com")
    admin = await user(client, app, "admin@example.com", role="admin")
    created = await client.post("/tasks", json={"title": "kept"}, headers=owner["auth"])
    assert created.status_code == 201, created.text
    task = str(created.json()["id"])

    caplog.set_level(logging.INFO)
    await outage.cut()
    reads = outage.refuses_reads
    refused = await _during_outage(client, owner, admin, task, reads=reads)
    refused_again = await _during_outage(client, owner, admin, task, reads=reads)
    ready = await client.get("/readyz")
    during = list(caplog.records)

    for name, response in [*refused.items(), *refused_again.items()]:
        assert response.status_code == 503, (name, response.status_code, response.text)
        assert response.headers["content-type"] == "application/problem+json", name
        assert response.json()["type"] == "/problems/service-unavailable", name
        assert int(response.headers["Retry-After"]) >= 1, name
    assert ready.status_code == 503
    assert ready.headers["content-type"] == "application/problem+json"
    assert ready.json()["checks"]["database"] == "unavailable"
    assert [r for r in during if r.exc_info] == []  # no traceback, from any logger
    assert len([r for r in during if "database unavailable" in r.getMessage()]) == 1

    await outage.restore()
    await asyncio.sleep(1.1)  # an outage ends at a success a second after its last failure
    caplog.clear()
    after = await client.get(f"/tasks/{task}", headers=owner["auth"])
    listed = await client.get("/tasks", headers=owner["auth"])
    login = await client.post(
        "/auth/login", json={"email": "owner@example.com", "password": STRONG_PASSWORD}
    )
    ready = await client.get("/readyz")

    assert after.status_code == 200
    assert after.json()["title"] == "kept"  # the refused edit left nothing behind
    assert [t["title"] for t in listed.json()["items"]] == ["kept"]
    assert samples.stored_files(app) == []  # the refused upload kept no file
    assert login.status_code == 200
    assert ready.status_code == 200
    assert ready.json()["status"] == "ok"
    recovered = [r for r in caplog.records if "database recovered" in r.getMessage()]
    assert len(recovered) == 1
    assert f"{2 * len(refused)} requests refused" in recovered[0].getMessage()


async def test_a_database_bug_is_still_one_500_with_its_traceback(
    make: AppMaker, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make.app()
    engine = app.state.security.stores.engine

    @app.get("/broken", dependencies=[app.state.guard.public("a route with a broken query")])
    async def broken() -> None:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT * FROM no_such_table"))

    client = await make.client(app)
    response = await client.get("/broken")

    assert response.status_code == 500
    assert response.json()["type"] == "/problems/internal-error"
    assert "Retry-After" not in response.headers
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1
    assert "database unavailable" not in caplog.text


class StartingUpServer:
    """Answers every connection as PostgreSQL does while it starts: FATAL 57P03."""

    def __init__(self) -> None:
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> StartingUpServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    @staticmethod
    async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:  # an SSLRequest is refused with "N"; then comes the startup
                size = struct.unpack("!I", await reader.readexactly(4))[0]
                body = await reader.readexactly(size - 4)
                if struct.unpack("!I", body[:4])[0] != _SSL_REQUEST:
                    break
                writer.write(b"N")
            fields = b"".join(
                code + text.encode() + b"\0"
                for code, text in (
                    (b"S", "FATAL"),
                    (b"V", "FATAL"),
                    (b"C", "57P03"),
                    (b"M", "the database system is starting up"),
                )
            )
            writer.write(b"E" + struct.pack("!I", len(fields) + 5) + fields + b"\0")
            await writer.drain()
        except (asyncio.IncompleteReadError, OSError):
            pass
        finally:
            writer.close()


_SSL_REQUEST = 80877103


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_server_starting_up_is_unavailable(database_url: str) -> None:
    async with StartingUpServer() as server:
        url = sa.make_url(database_url).set(host="127.0.0.1", port=server.port)
        engine = create_engine(url.render_as_string(hide_password=False))
        try:
            with pytest.raises(DatabaseUnavailableError, match="57P03"):
                async with engine.connect() as conn:
                    await conn.execute(sa.text("SELECT 1"))
        finally:
            await engine.dispose()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_connection_cut_mid_query_is_unavailable(outage: Outage) -> None:
    engine = create_engine(outage.database_url)
    try:
        async with engine.connect() as conn:
            query = asyncio.ensure_future(conn.execute(sa.text("SELECT pg_sleep(30)")))
            await asyncio.sleep(0.5)
            await outage.cut()
            with pytest.raises(DatabaseUnavailableError, match="database unavailable"):
                await query
        await outage.restore()
        async with engine.connect() as conn:  # the same engine, without a restart
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
    finally:
        await engine.dispose()


class FullDisk(LocalAttachmentStorage):
    """The app's attachment folder, on a disk that is full while ``full`` is set: its
    files are written to ``/dev/full``, which refuses every write with ENOSPC."""

    full = False

    def _create(self, key: str) -> BinaryIO:
        file = super()._create(key)
        if not self.full:
            return file
        file.close()
        return Path("/dev/full").open("wb")  # the writer closes it


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_full_attachment_disk_is_503_logged_once(
    make: AppMaker, caplog: pytest.LogCaptureFixture
) -> None:
    app = await make.app()
    storage = FullDisk(app.state.attachments.storage.root)
    app.state.attachments.storage = storage
    client = await make.client(app)
    owner = await user(client, app, "owner@example.com")
    task = (await client.post("/tasks", json={"title": "t"}, headers=owner["auth"])).json()["id"]
    caplog.set_level(logging.INFO)

    storage.full = True
    refused = [
        await samples.upload(client, task, owner["auth"], samples.text(), f"{n}.txt")
        for n in range(3)
    ]
    during = list(caplog.records)
    storage.full = False
    stored = await samples.upload(client, task, owner["auth"], samples.text(), "ok.txt")

    for response in refused:
        assert response.status_code == 503
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/service-unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    assert [r for r in during if r.exc_info] == []
    assert len([r for r in during if "unavailable: ENOSPC" in r.getMessage()]) == 1
    assert stored.status_code == 201
    assert len(samples.stored_files(app)) == 1  # the refused uploads left no file
    assert len([r for r in caplog.records if "recovered" in r.getMessage()]) == 1


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_server_that_never_answers_is_unavailable_within_the_connect_timeout(
    database_url: str,
) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            await reader.read()  # never a byte back, like packets dropped by a firewall
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    url = sa.make_url(database_url).set(host="127.0.0.1", port=port)
    engine = create_engine(url.update_query_dict({"timeout": "0.5"}).render_as_string(False))
    try:
        with pytest.raises(DatabaseUnavailableError, match="TimeoutError"):
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
    finally:
        await engine.dispose()
        server.close()
        await server.wait_closed()
