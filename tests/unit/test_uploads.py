"""The upload core: file names, type detection, the multipart receiver, local storage."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import unicodedata
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bastion.errors import NotFoundError
from bastion.uploads import (
    MAX_FILENAME_BYTES,
    LocalAttachmentStorage,
    TypeSniffer,
    UnsupportedMediaTypeError,
    UploadError,
    UploadPolicy,
    UploadTooLargeError,
    content_disposition,
    declared_type,
    detect_type,
    receive_file,
    safe_filename,
    served_type,
)
from bastion_tasks.settings import TaskSettings
from tests import samples
from tests.samples import MULTIPART_TYPE, multipart, part

VECTORS = Path(__file__).parent.parent / "vectors"
FILENAMES = json.loads((VECTORS / "filenames.json").read_text())
_RESERVED_STEMS = {"CON", "PRN", "AUX", "NUL"} | {
    f"{d}{n}" for d in ("COM", "LPT") for n in "123456789"
}


# -- file names ------------------------------------------------------------------------


@pytest.mark.parametrize("case", FILENAMES, ids=[c["id"] for c in FILENAMES])
def test_safe_filename_reduces_a_client_name_to_its_display_name(case: dict[str, str]) -> None:
    assert safe_filename(case["name"]) == case["safe"]


@pytest.mark.parametrize("case", FILENAMES, ids=[c["id"] for c in FILENAMES])
def test_a_safe_filename_has_no_path_no_invisible_character_and_no_device_name(
    case: dict[str, str],
) -> None:
    name = safe_filename(case["name"])

    assert name
    assert "/" not in name
    assert "\\" not in name
    assert not any(unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"} for c in name)
    assert name == unicodedata.normalize("NFC", name)
    assert not name.startswith((".", " "))
    assert not name.endswith((".", " "))
    assert name.split(".")[0].rstrip().upper() not in _RESERVED_STEMS
    assert len(name.encode()) <= MAX_FILENAME_BYTES


def test_a_long_name_is_cut_to_255_bytes_keeping_its_extension() -> None:
    name = safe_filename("é" * 200 + ".jpeg")

    assert name.endswith(".jpeg")
    assert len(name.encode()) <= 255
    assert name[:-5] == "é" * len(name[:-5])  # no character cut in half


def test_a_missing_name_gets_the_fallback() -> None:
    assert safe_filename(None) == "attachment"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        (
            "Résumé 東京.txt",
            'attachment; filename="Resume __.txt"; '
            "filename*=UTF-8''R%C3%A9sum%C3%A9%20%E6%9D%B1%E4%BA%AC.txt",
        ),
        (
            "東京.pdf",
            "attachment; filename=\"attachment.pdf\"; filename*=UTF-8''%E6%9D%B1%E4%BA%AC.pdf",
        ),
        (
            'quote" semi; back\\slash.txt',
            "attachment; filename=\"slash.txt\"; filename*=UTF-8''slash.txt",
        ),
        (
            '50% off; "deal".txt',
            'attachment; filename="50_ off_ _deal_.txt"; '
            "filename*=UTF-8''50%25%20off%3B%20_deal_.txt",
        ),
    ],
    ids=[
        "ascii",
        "accents and cjk",
        "no ascii left",
        "quote and backslash",
        "percent and semicolon",
    ],
)
def test_content_disposition_offers_an_ascii_name_and_the_utf8_name(
    name: str, expected: str
) -> None:
    assert content_disposition(name) == expected


def test_content_disposition_never_carries_a_line_break_or_a_quote_in_the_ascii_name() -> None:
    header = content_disposition('a"\r\nSet-Cookie: x=1.txt')

    assert "\r" not in header
    assert "\n" not in header
    ascii_name = header.split('filename="', 1)[1].split('"', 1)[0]
    assert '"' not in ascii_name
    assert "\\" not in ascii_name


# -- type detection --------------------------------------------------------------------

DETECTIONS = [
    *[(kind, build(), kind) for kind, build in samples.SAMPLES.items()],
    ("png with html appended", samples.png(b"<html><script>alert(1)</script>"), "image/png"),
    ("gif and javascript polyglot", b"GIF89a/*\x01\x00\x01\x00*/=alert(1);", "image/gif"),
    ("html with a pdf header later", b"<html><body>x</body></html>\n%PDF-1.4\n", "text/html"),
    ("html renamed .png", b"<!DOCTYPE html><html><body>hi</body></html>", "text/html"),
    ("html after white space", b"\n\n   <HTML>\n<body onload=alert(1)>", "text/html"),
    ("html after a byte order mark", "\ufeff<html>".encode(), "text/html"),
    ("script tag", b"<script>alert(document.cookie)</script>", "text/html"),
    ("iframe tag", b"<iframe src=https://evil.example>", "text/html"),
    ("html comment", b"<!-- x --><img src=x onerror=alert(1)>", "text/html"),
    ("svg", b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>', "image/svg+xml"),
    ("svg with slash", b"<svg/onload=alert(1)>", "image/svg+xml"),
    (
        "xml prolog svg",
        b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>',
        "text/xml",
    ),
    ("postscript", b"%!PS-Adobe-3.0\n", "application/postscript"),
    ("text mentioning a tag later", b"Use <b>bold</b> sparingly.\n", "text/plain"),
    ("text starting with a less-than", b"<3 thanks for the notes\n", "text/plain"),
    ("plain javascript", b"alert(document.cookie);\n", "text/plain"),
    ("utf-8 text", "café\n".encode(), "text/plain"),
    ("latin-1 text", "café\n".encode("latin-1"), None),
    ("utf-16 text", "hello".encode("utf-16"), None),
    ("text with a nul byte", b"hello\x00world", None),
    ("text with an escape", b"hello\x1b[31mred", None),
    ("text with a c1 control", "a\u0085b".encode(), None),
    ("utf-8 cut in the middle of a character", "café".encode()[:-1], None),
    ("overlong utf-8", b"\xc0\xafetc", None),
    ("zip", b"PK\x03\x04" + b"\x00" * 40, "application/zip"),
    ("windows executable", b"MZ\x90\x00" + b"\x00" * 60, "application/x-msdownload"),
    ("elf executable", b"\x7fELF\x02\x01\x01" + b"\x00" * 60, "application/x-executable"),
    ("empty", b"", None),
]


@pytest.mark.parametrize(
    ("data", "expected"), [d[1:] for d in DETECTIONS], ids=[d[0] for d in DETECTIONS]
)
def test_the_type_comes_from_the_bytes(data: bytes, expected: str | None) -> None:
    assert detect_type(data) == expected


def test_text_split_inside_a_character_across_chunks_is_still_text() -> None:
    data = "東京 café 🙂\n".encode()
    sniffer = TypeSniffer()
    for index in range(len(data)):
        sniffer.feed(data[index : index + 1])

    assert sniffer.result() == "text/plain"
    assert sniffer.size == len(data)


def test_a_control_character_past_the_first_chunk_still_makes_it_binary() -> None:
    sniffer = TypeSniffer()
    sniffer.feed(b"a" * 100_000)
    sniffer.feed(b"\x00")

    assert sniffer.result() is None


@pytest.mark.parametrize(
    ("declared", "expected"),
    [
        (None, None),
        ("", None),
        ("application/octet-stream", None),
        ("IMAGE/PNG", "image/png"),
        ("text/plain; charset=utf-8", "text/plain"),
        ("image/jpg", "image/jpeg"),
        ("text/html", "text/html"),
    ],
    ids=["missing", "empty", "octet-stream", "upper case", "with parameters", "alias", "other"],
)
def test_the_declared_type_is_normalized(declared: str | None, expected: str | None) -> None:
    assert declared_type(declared) == expected


def test_text_is_served_with_its_charset() -> None:
    assert served_type("text/plain") == "text/plain; charset=utf-8"
    assert served_type("image/png") == "image/png"


# -- the multipart receiver ------------------------------------------------------------


async def _chunks(body: bytes, size: int = 977) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


@pytest.fixture
def storage(tmp_path: Path) -> LocalAttachmentStorage:
    return LocalAttachmentStorage(tmp_path / "attachments")


async def _receive(storage: LocalAttachmentStorage, body: bytes, **policy: Any) -> Any:
    return await receive_file(_chunks(body), MULTIPART_TYPE, storage, UploadPolicy(**policy))


@pytest.mark.parametrize("kind", list(samples.SAMPLES))
async def test_each_allowed_type_is_received_and_stored(
    storage: LocalAttachmentStorage, kind: str
) -> None:
    data = samples.SAMPLES[kind]()

    received = await _receive(
        storage, multipart(part(data, filename="../x/sample", content_type=kind))
    )

    assert received.content_type == kind
    assert received.size == len(data)
    assert received.filename == "sample"
    assert storage.path_of(received.key).read_bytes() == data
    assert _files(storage.root) == [received.key]


async def test_a_png_declared_as_html_is_refused_before_anything_is_stored(
    storage: LocalAttachmentStorage,
) -> None:
    body = multipart(part(samples.png(), content_type="text/html"))

    with pytest.raises(UnsupportedMediaTypeError):
        await _receive(storage, body)

    assert _files(storage.root) == []


async def test_a_png_declared_as_another_allowed_type_is_refused(
    storage: LocalAttachmentStorage,
) -> None:
    body = multipart(part(samples.png(), content_type="image/jpeg"))

    with pytest.raises(UploadError) as refused:
        await _receive(storage, body)

    assert type(refused.value) is UploadError
    assert _files(storage.root) == []


async def test_html_sent_as_a_png_is_refused(storage: LocalAttachmentStorage) -> None:
    body = multipart(
        part(b"<html><script>alert(1)</script>", filename="x.png", content_type="image/png")
    )

    with pytest.raises(UnsupportedMediaTypeError):
        await _receive(storage, body)

    assert _files(storage.root) == []


async def test_a_type_outside_the_configured_list_is_refused(
    storage: LocalAttachmentStorage,
) -> None:
    body = multipart(part(samples.pdf()))

    with pytest.raises(UnsupportedMediaTypeError):
        await _receive(storage, body, types=frozenset({"image/png"}))


async def test_a_file_of_exactly_the_cap_is_received(storage: LocalAttachmentStorage) -> None:
    received = await _receive(storage, multipart(part(b"a" * 1000)), max_bytes=1000)

    assert received.size == 1000


async def test_one_byte_over_the_cap_is_refused_and_nothing_is_left(
    storage: LocalAttachmentStorage,
) -> None:
    with pytest.raises(UploadTooLargeError):
        await _receive(storage, multipart(part(b"a" * 1001)), max_bytes=1000)

    assert _files(storage.root) == []


async def test_the_cap_stops_reading_the_body_as_soon_as_it_is_passed(
    storage: LocalAttachmentStorage,
) -> None:
    pulled = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal pulled
        yield part(b"", filename="big.txt")[:-2]
        while True:
            pulled += 1
            yield b"a" * 1024

    with pytest.raises(UploadTooLargeError):
        await receive_file(endless(), MULTIPART_TYPE, storage, UploadPolicy(max_bytes=10 * 1024))

    assert pulled == 11
    assert _files(storage.root) == []


@pytest.mark.parametrize(
    "body",
    [
        multipart(part(b"x", name="other")),
        multipart(part(b"a"), part(b"b")),
        multipart(part(b"a"), part(b"b", name="extra", filename=None)),
        multipart(part(b"x", name="other", filename=None), part(b"a")),
        multipart(),
        multipart(part(b"abc"), closed=False),
        multipart(part(b"")),
        multipart(part(b"aGVsbG8=", headers=("Content-Transfer-Encoding: base64",))),
        multipart(part(b"a", headers=('Content-Disposition: form-data; name="file"',))),
        b"this is not multipart at all",
    ],
    ids=[
        "other name",
        "two files",
        "file and a field",
        "field before the file",
        "no part",
        "no closing boundary",
        "empty file",
        "transfer encoding",
        "repeated disposition",
        "garbage",
    ],
)
async def test_a_body_that_is_not_exactly_one_whole_file_part_is_refused(
    storage: LocalAttachmentStorage, body: bytes
) -> None:
    with pytest.raises(UploadError) as refused:
        await _receive(storage, body)

    assert refused.value.status == 422
    assert _files(storage.root) == []


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "text/plain", "application/x-www-form-urlencoded", None],
    ids=["json", "text", "urlencoded form", "missing"],
)
async def test_a_body_that_is_not_multipart_is_unsupported(
    storage: LocalAttachmentStorage, content_type: str | None
) -> None:
    with pytest.raises(UnsupportedMediaTypeError):
        await receive_file(_chunks(b"{}"), content_type, storage)


async def test_multipart_without_a_boundary_is_refused(storage: LocalAttachmentStorage) -> None:
    with pytest.raises(UploadError):
        await receive_file(_chunks(multipart(part(b"a"))), "multipart/form-data", storage)


# -- local storage ---------------------------------------------------------------------


async def test_stored_files_are_private_to_the_service(storage: LocalAttachmentStorage) -> None:
    received = await _receive(storage, multipart(part(samples.text())))

    assert stat.S_IMODE(storage.root.stat().st_mode) == 0o700
    assert stat.S_IMODE(storage.path_of(received.key).stat().st_mode) == 0o600


async def test_a_stored_file_reads_back_in_chunks(storage: LocalAttachmentStorage) -> None:
    data = bytes(range(256)) * 1024
    writer = await storage.open_writer()
    await writer.write(data)
    await writer.commit()

    read = b"".join([chunk async for chunk in await storage.read(writer.key)])

    assert read == data


async def test_an_aborted_writer_leaves_nothing(storage: LocalAttachmentStorage) -> None:
    writer = await storage.open_writer()
    await writer.write(b"partial")
    await writer.abort()

    assert _files(storage.root) == []


async def test_reading_a_missing_object_is_not_found(storage: LocalAttachmentStorage) -> None:
    with pytest.raises(NotFoundError):
        await storage.read("0" * 32)


async def test_deleting_twice_is_harmless(storage: LocalAttachmentStorage) -> None:
    received = await _receive(storage, multipart(part(samples.text())))

    await storage.delete(received.key)
    await storage.delete(received.key)

    assert _files(storage.root) == []


@pytest.mark.parametrize(
    "key",
    ["../../etc/passwd", "/etc/passwd", "0" * 31 + "/", "A" * 32, "0" * 33, ""],
    ids=["traversal", "absolute", "separator", "upper case", "too long", "empty"],
)
async def test_a_key_that_storage_did_not_make_never_becomes_a_path(
    storage: LocalAttachmentStorage, key: str
) -> None:
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.read(key)
    with pytest.raises(ValueError, match="not a storage key"):
        await storage.delete(key)


async def test_keys_are_random_and_never_reused(storage: LocalAttachmentStorage) -> None:
    writers = [await storage.open_writer() for _ in range(20)]
    for writer in writers:
        await writer.abort()

    assert len({w.key for w in writers}) == 20


# -- settings --------------------------------------------------------------------------


def test_the_attachment_settings_default_to_10_mib_and_the_six_types(
    clean_environment: None,
) -> None:
    settings = TaskSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.attachment_max_bytes == 10 * 1024 * 1024
    assert set(settings.attachment_types) == set(samples.SAMPLES)


def test_the_allowed_types_come_from_a_comma_separated_variable(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_ATTACHMENT_TYPES", "image/png, Application/PDF")

    settings = TaskSettings(_env_file=None)  # type: ignore[call-arg]

    assert settings.attachment_types == ["image/png", "application/pdf"]


@pytest.mark.parametrize("value", ["text/html", "image/svg+xml", ""], ids=["html", "svg", "empty"])
def test_a_type_that_cannot_be_detected_safely_is_refused_at_start(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("BASTION_ATTACHMENT_TYPES", value)

    with pytest.raises(ValueError, match="attachment_types"):
        TaskSettings(_env_file=None)  # type: ignore[call-arg]


# -- boundaries ------------------------------------------------------------------------


def test_the_upload_core_imports_no_web_framework() -> None:
    # STYLE: only bastion.fastapi imports FastAPI; the core works with any ASGI layer.
    script = (
        "import sys, bastion.uploads\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'starlette', 'bastion_tasks') or m.startswith('bastion.fastapi')))"
    )

    found = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )

    assert found.stdout.strip() == "[]"
