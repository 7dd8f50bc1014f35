"""Tiny but real files of each allowed type, built byte by byte, and multipart bodies
and requests for the upload tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(extra: bytes = b"") -> bytes:
    """A 1x1 white RGB PNG; ``extra`` is appended after IEND (a polyglot's payload)."""
    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\xff\xff")
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", pixels)
        + _png_chunk(b"IEND", b"")
        + extra
    )


def gif() -> bytes:
    """A 1x1 GIF89a (one white pixel)."""
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00"
        b"!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


def jpeg() -> bytes:
    """A 1x1 grey baseline JPEG: one quantization table, one-code Huffman tables, and a
    scan whose only block is DC 0 and end-of-block (bits ``00``, padded with ones)."""
    app0 = b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    dqt = b"\xff\xdb\x00\x43\x00" + b"\x01" * 64
    sof0 = b"\xff\xc0\x00\x0b\x08\x00\x01\x00\x01\x01\x01\x11\x00"
    one_code = b"\x01" + b"\x00" * 15 + b"\x00"
    dht_dc = b"\xff\xc4\x00\x14\x00" + one_code
    dht_ac = b"\xff\xc4\x00\x14\x10" + one_code
    sos = b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00"
    return b"\xff\xd8" + app0 + dqt + sof0 + dht_dc + dht_ac + sos + b"\x3f" + b"\xff\xd9"


def webp() -> bytes:
    """A 1x1 lossless WebP (RIFF container, one VP8L chunk)."""
    bitstream = bytes.fromhex("2f000000100710111188 88fe07".replace(" ", ""))
    padding = b"\x00" * (len(bitstream) % 2)  # RIFF chunks have an even length
    chunk = b"VP8L" + struct.pack("<I", len(bitstream)) + bitstream + padding
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def pdf() -> bytes:
    """A one-page PDF without content."""
    return (
        b"%PDF-1.4\n"
        b"1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
        b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
        b"3 0 obj<</Type/Page/MediaBox[0 0 3 3]/Parent 2 0 R>>endobj\n"
        b"trailer<</Root 1 0 R>>\n%%EOF\n"
    )


def text() -> bytes:
    return "Notes: café, naïve, 東京, emoji 🙂.\r\n\tindented line\n".encode()


SAMPLES = {
    "image/png": png,
    "image/jpeg": jpeg,
    "image/gif": gif,
    "image/webp": webp,
    "application/pdf": pdf,
    "text/plain": text,
}


BOUNDARY = "bastion-test-boundary-7e1f"


def part(
    data: bytes,
    *,
    name: str = "file",
    filename: str | None = "file.bin",
    content_type: str | None = None,
    headers: tuple[str, ...] = (),
) -> bytes:
    """One multipart/form-data part, written out by hand (names are not escaped: a
    test may put anything in them)."""
    disposition = f'form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    lines = [f"Content-Disposition: {disposition}"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    lines.extend(headers)
    head = "\r\n".join(lines).encode()
    return f"--{BOUNDARY}\r\n".encode() + head + b"\r\n\r\n" + data + b"\r\n"


def multipart(*parts: bytes, closed: bool = True) -> bytes:
    """A body of ``parts``; ``closed=False`` leaves out the closing boundary."""
    return b"".join(parts) + (f"--{BOUNDARY}--\r\n".encode() if closed else b"")


MULTIPART_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


async def upload(
    client: httpx.AsyncClient,
    task_id: str,
    auth: dict[str, str],
    data: bytes,
    filename: str = "file.bin",
    content_type: str | None = None,
) -> httpx.Response:
    """POST one file the way a browser form does (httpx builds the body)."""
    file: tuple[Any, ...] = (
        (filename, data) if content_type is None else (filename, data, content_type)
    )
    return await client.post(f"/tasks/{task_id}/attachments", files={"file": file}, headers=auth)


async def upload_raw(
    client: httpx.AsyncClient, task_id: str, auth: dict[str, str], body: bytes | Any
) -> httpx.Response:
    """POST a hand-built multipart body (bytes, or an async iterator for a chunked one)."""
    headers = {**auth, "Content-Type": MULTIPART_TYPE}
    return await client.post(f"/tasks/{task_id}/attachments", content=body, headers=headers)


async def attachment_rows(app: Any) -> list[dict[str, Any]]:
    """Every row of ``task_attachments``."""
    engine = app.state.security.stores.engine
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT * FROM task_attachments"))
        return [dict(row._mapping) for row in rows]


def stored_files(app: Any) -> list[Path]:
    """Every file under the app's attachments folder."""
    root = Path(app.state.security.settings.data_dir) / "attachments"
    return sorted(root.iterdir()) if root.exists() else []
