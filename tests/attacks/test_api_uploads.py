"""Attack: abuse the attachment upload (OWASP File Upload Cheat Sheet, OWASP API4:2023).

Hostile file names never name a file and come back harmless; the attachment id cannot
reach a path; markup and scripts are refused whatever they are called or declared; a
declared type that lies is refused; oversized and malformed bodies are refused with
nothing left on disk or in the table; and the process keeps serving after each.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from bastion.testing import capture_events
from tests import samples
from tests.conftest import AppMaker
from tests.helpers import user
from tests.samples import (
    attachment_rows,
    multipart,
    part,
    stored_files,
    upload,
    upload_raw,
)

VECTORS = Path(__file__).parent.parent / "vectors"
FILENAMES = json.loads((VECTORS / "filenames.json").read_text())
_KEY = re.compile(r"[0-9a-f]{32}")
_RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{n}" for d in ("COM", "LPT") for n in "123456789"}


@pytest.fixture
async def owner(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "owner@example.com")


@pytest.fixture
async def task_id(client: httpx.AsyncClient, owner: dict[str, Any]) -> str:
    response = await client.post("/tasks", json={"title": "target"}, headers=owner["auth"])
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def _still_serving(client: httpx.AsyncClient, task_id: str, auth: dict[str, str]) -> None:
    assert (await client.get("/healthz")).status_code == 200
    response = await upload(client, task_id, auth, samples.text(), "after.txt")
    assert response.status_code == 201, response.text


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


async def _nothing_kept(app: Any) -> None:
    assert await attachment_rows(app) == []
    assert stored_files(app) == []


# -- file names ------------------------------------------------------------------------


def _sendable(name: str) -> bool:
    # A raw part header cannot carry a line break or an unescaped quote; those names are
    # sent the way a browser escapes them, in the next test.
    return not any(c in name for c in '\r\n"')


async def test_hostile_file_names_never_name_a_file_and_come_back_harmless(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    data_dir = Path(app.state.security.settings.data_dir)
    for case in [c for c in FILENAMES if _sendable(c["name"])]:
        before = _files_under(data_dir.parent)
        body = multipart(part(samples.text(), filename=case["name"]))

        response = await upload_raw(client, task_id, owner["auth"], body)

        assert response.status_code == 201, (case["id"], response.text)
        name = response.json()["filename"]
        assert "/" not in name, case["id"]
        assert "\\" not in name, case["id"]
        assert not any(unicodedata.category(c) in {"Cc", "Cf"} for c in name), case["id"]
        assert name.split(".")[0].rstrip().upper() not in _RESERVED, case["id"]
        assert not name.startswith("."), case["id"]
        assert len(name.encode()) <= 255, case["id"]
        [new] = _files_under(data_dir.parent) - before
        assert new.parent == data_dir / "attachments", case["id"]
        assert _KEY.fullmatch(new.name), case["id"]
        download = await client.get(
            f"/tasks/{task_id}/attachments/{response.json()['id']}", headers=owner["auth"]
        )
        disposition = download.headers["content-disposition"]
        assert disposition.startswith("attachment; "), case["id"]
        assert unquote(disposition.split("filename*=UTF-8''", 1)[1]) == name, case["id"]
        await client.delete(
            f"/tasks/{task_id}/attachments/{response.json()['id']}", headers=owner["auth"]
        )
    await _still_serving(client, task_id, owner["auth"])


@pytest.mark.parametrize(
    "name",
    ['a.txt"\r\nContent-Type: text/html\r\n\r\n<script>', 'x"; filename="../../etc/passwd'],
    ids=["header injection", "second filename parameter"],
)
async def test_a_name_built_to_inject_headers_stays_one_harmless_name(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str, name: str
) -> None:
    response = await upload(client, task_id, owner["auth"], samples.text(), name, "text/plain")

    assert response.status_code == 201, response.text
    download = await client.get(
        f"/tasks/{task_id}/attachments/{response.json()['id']}", headers=owner["auth"]
    )
    assert download.headers["content-type"] == "text/plain; charset=utf-8"
    disposition = download.headers["content-disposition"]
    assert "\r" not in disposition
    assert "\n" not in disposition
    assert disposition.count("filename=") == 1
    assert "/" not in response.json()["filename"]
    assert len(stored_files(app)) == 1


# -- the attachment id -----------------------------------------------------------------


@pytest.mark.parametrize(
    "attachment_id",
    [
        "..%2F..%2F..%2Fvar%2Fsigning-keys.json",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "..%5C..%5Cwindows%5Cwin.ini",
        "%2Fetc%2Fpasswd",
        "not-a-uuid",
        "{key}",
        "{id}%00",
        "{id}.txt",
        "{id}%2F..",
    ],
    ids=[
        "traversal to the keys",
        "encoded traversal",
        "backslash traversal",
        "absolute path",
        "not a uuid",
        "the storage key",
        "nul after the id",
        "extension after the id",
        "dot segment after the id",
    ],
)
async def test_an_attachment_id_cannot_reach_a_path(
    client: httpx.AsyncClient,
    app: Any,
    owner: dict[str, Any],
    task_id: str,
    attachment_id: str,
) -> None:
    created = await upload(client, task_id, owner["auth"], samples.text(), "n.txt")
    [row] = await attachment_rows(app)
    concrete = attachment_id.format(id=created.json()["id"], key=row["storage_key"])
    url = f"/tasks/{task_id}/attachments/{concrete}"

    read = await client.get(url, headers=owner["auth"])
    deleted = await client.delete(url, headers=owner["auth"])

    assert read.status_code == 404
    assert read.headers["content-type"] == "application/problem+json"
    assert deleted.status_code == 404
    assert len(stored_files(app)) == 1
    await _still_serving(client, task_id, owner["auth"])


# -- markup, scripts and lies ----------------------------------------------------------

HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(document.domain)"/>'
XML_SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"><script>x</script></svg>'
JS = b"fetch('/users/me').then(r => r.text()).then(alert);\n"


@pytest.mark.parametrize(
    ("data", "filename", "declared"),
    [
        (HTML, "page.html", "text/html"),
        (HTML, "image.png", "image/png"),
        (HTML, "image.png", None),
        (HTML, "notes.txt", "text/plain"),
        (SVG, "logo.svg", "image/svg+xml"),
        (SVG, "logo.png", "application/octet-stream"),
        (XML_SVG, "logo.gif", "image/gif"),
        (JS, "app.js", "application/javascript"),
        (JS, "app.js", "text/javascript"),
        (b"<script>alert(1)</script>", "x.txt", "text/plain"),
        (b"MZ\x90\x00" + b"\x00" * 200, "setup.exe", "application/octet-stream"),
        (b"\x7fELF\x02\x01\x01" + b"\x00" * 200, "run.png", "image/png"),
        (b"PK\x03\x04" + b"\x00" * 200, "archive.pdf", "application/pdf"),
        (b"text with a\x00nul byte", "nul.txt", "text/plain"),
    ],
    ids=[
        "html as html",
        "html as png",
        "html without a type",
        "html as text",
        "svg as svg",
        "svg as octet-stream",
        "xml svg as gif",
        "script as javascript",
        "script as text/javascript",
        "script tag as text",
        "windows executable",
        "elf renamed png",
        "zip renamed pdf",
        "text with a nul byte",
    ],
)
async def test_markup_scripts_and_executables_are_refused(
    client: httpx.AsyncClient,
    app: Any,
    owner: dict[str, Any],
    task_id: str,
    data: bytes,
    filename: str,
    declared: str | None,
) -> None:
    response = await upload(client, task_id, owner["auth"], data, filename, declared)

    assert response.status_code == 415, response.text
    assert response.json()["type"] == "/problems/unsupported-media-type"
    await _nothing_kept(app)
    await _still_serving(client, task_id, owner["auth"])


@pytest.mark.parametrize(
    ("data", "declared", "status"),
    [
        (samples.png(), "image/jpeg", 422),
        (samples.text(), "image/png", 422),
        (samples.pdf(), "image/gif", 422),
        (samples.gif(), "text/plain", 422),
        (samples.png(), "text/html", 415),
        (samples.gif(), "image/svg+xml", 415),
    ],
    ids=["png as jpeg", "text as png", "pdf as gif", "gif as text", "png as html", "gif as svg"],
)
async def test_a_declared_type_that_lies_is_refused(
    client: httpx.AsyncClient,
    app: Any,
    owner: dict[str, Any],
    task_id: str,
    data: bytes,
    declared: str,
    status: int,
) -> None:
    response = await upload(client, task_id, owner["auth"], data, "file", declared)

    assert response.status_code == status, response.text
    await _nothing_kept(app)


async def test_a_polyglot_is_served_as_its_detected_type_and_never_inline(
    client: httpx.AsyncClient, owner: dict[str, Any], task_id: str
) -> None:
    polyglot = samples.png(b"<html><script>alert(document.cookie)</script></html>")
    created = await upload(
        client, task_id, owner["auth"], polyglot, "x.html", "application/octet-stream"
    )

    response = await client.get(
        f"/tasks/{task_id}/attachments/{created.json()['id']}", headers=owner["auth"]
    )

    assert created.json()["content_type"] == "image/png"
    assert response.headers["content-type"] == "image/png"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert response.headers["content-security-policy"].startswith("default-src 'none'")


async def test_refused_uploads_are_logged(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    with capture_events() as events:
        await upload(client, task_id, owner["auth"], HTML, "x.png", "image/png")
        await app.state.security.drain()

    [refused] = [e for e in events if e.event_type == "upload_refused"]
    assert refused.user_id == owner["id"]
    assert refused.endpoint == f"/tasks/{task_id}/attachments"


# -- size ------------------------------------------------------------------------------


@pytest.fixture
async def capped(make: AppMaker) -> tuple[Any, httpx.AsyncClient, dict[str, Any], str]:
    app = await make.app(attachment_max_bytes=10 * 1024)
    client = await make.client(app)
    member = await user(client, app, "member@example.com")
    response = await client.post("/tasks", json={"title": "t"}, headers=member["auth"])
    return app, client, member, str(response.json()["id"])


async def test_an_endless_chunked_upload_is_cut_off_and_leaves_nothing(capped: Any) -> None:
    app, client, member, task_id = capped
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        yield part(b"", filename="endless.txt")[:-2]
        while True:
            sent += 1
            yield b"a" * 4096

    response = await upload_raw(client, task_id, member["auth"], endless())

    assert response.status_code == 413
    assert response.json()["type"] == "/problems/payload-too-large"
    assert sent <= 4
    await _nothing_kept(app)
    await _still_serving(client, task_id, member["auth"])


async def test_an_oversized_upload_with_a_length_is_refused_and_leaves_nothing(
    capped: Any,
) -> None:
    app, client, member, task_id = capped

    response = await upload(client, task_id, member["auth"], b"a" * (10 * 1024 + 1), "big.txt")

    assert response.status_code == 413
    await _nothing_kept(app)
    await _still_serving(client, task_id, member["auth"])


async def test_junk_around_the_part_cannot_stretch_the_body_cap(capped: Any) -> None:
    app, client, member, task_id = capped
    preamble = b"x" * (100 * 1024) + b"\r\n"  # ignored by parsers, but it is still body

    response = await upload_raw(client, task_id, member["auth"], preamble + multipart(part(b"a")))

    assert response.status_code == 413
    await _nothing_kept(app)


# -- malformed bodies ------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        multipart(*[part(b"x", name=f"f{i}", filename=None) for i in range(5000)]),
        multipart(*[part(samples.text()) for _ in range(50)]),
        multipart(part(b"x", name="title", filename=None)),
        multipart(part(samples.text(), name="files")),
        multipart(part(samples.text()), part(b"1", name="size", filename=None)),
        multipart(part(samples.text(), headers=tuple(f"X-H{i}: v" for i in range(20)))),
        multipart(part(samples.text(), headers=("X-Long: " + "a" * 10_000,))),
        multipart(part(samples.text()), closed=False),
        multipart(part(samples.text(), headers=("Content-Transfer-Encoding: base64",))),
        b"--not-the-boundary\r\n\r\nhello\r\n--not-the-boundary--\r\n",
    ],
    ids=[
        "5000 fields",
        "50 files",
        "no file part",
        "file under another name",
        "file and an extra field",
        "too many part headers",
        "a huge part header",
        "no closing boundary",
        "transfer encoding",
        "wrong boundary",
    ],
)
async def test_a_body_that_is_not_exactly_one_file_part_is_422(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str, body: bytes
) -> None:
    response = await upload_raw(client, task_id, owner["auth"], body)

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "file"]
    await _nothing_kept(app)
    await _still_serving(client, task_id, owner["auth"])


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b'{"file": "PGh0bWw+"}', "application/json"),
        (b"file=hello", "application/x-www-form-urlencoded"),
        (b"hello", "text/plain"),
        (samples.png(), "image/png"),
    ],
    ids=["json", "urlencoded form", "text", "a bare png"],
)
async def test_a_body_that_is_not_multipart_is_415(
    client: httpx.AsyncClient,
    app: Any,
    owner: dict[str, Any],
    task_id: str,
    content: bytes,
    content_type: str,
) -> None:
    response = await client.post(
        f"/tasks/{task_id}/attachments",
        content=content,
        headers={**owner["auth"], "Content-Type": content_type},
    )

    assert response.status_code == 415
    await _nothing_kept(app)
