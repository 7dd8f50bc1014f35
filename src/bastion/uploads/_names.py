"""File names from clients, reduced to a safe display name, and the download header.

A client's file name is only ever shown to people and offered back in
``Content-Disposition``; it never names a stored file (OWASP File Upload Cheat Sheet,
"File Name Sanitization": the application generates the storage name). Still, what we
show and hand back must not carry a path, invisible or control characters, or a name
that Windows refuses or treats as a device, once a user saves the download.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

__all__ = ["FALLBACK_FILENAME", "MAX_FILENAME_BYTES", "content_disposition", "safe_filename"]

FALLBACK_FILENAME = "attachment"
MAX_FILENAME_BYTES = 255  # the longest name of a file on common file systems (ext4, NTFS, APFS)
_MAX_EXTENSION_CHARS = 16  # a longer "extension" is just part of the name

# Cc (controls), Cf (format: bidi overrides, zero-width), Cs (lone surrogates),
# Co (private use), Cn (unassigned), Zl/Zp (line and paragraph separators).
_DROPPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# Refused in Windows file names (the path separators are cut before this).
_WINDOWS_INVALID = re.compile(r'[<>:"|?*]')
# Microsoft, "Naming Files, Paths, and Namespaces": device names, with or without an
# extension, and the superscript digits that Windows reads as COM/LPT numbers too.
_DEVICE_DIGITS = "123456789\u00b9\u00b2\u00b3"
_RESERVED = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"COM{d}" for d in _DEVICE_DIGITS}
    | {f"LPT{d}" for d in _DEVICE_DIGITS}
)
# RFC 6266 §4.3 / RFC 5987 §3.2.1: the ASCII ``filename`` is a quoted-string for old
# clients, kept to characters no client misreads; ``filename*`` carries the real name.
_ASCII_UNSAFE = re.compile(r"[^A-Za-z0-9 ._()+-]")
_ATTR_CHARS = "!#$&+-.^_`|~"


def _visible(name: str) -> str:
    kept = []
    for char in name:
        category = unicodedata.category(char)
        if category in _DROPPED_CATEGORIES:
            continue
        kept.append(" " if category == "Zs" else char)  # any space becomes a plain one
    return "".join(kept)


def _trimmed(name: str) -> str:
    # No leading dot (a hidden file) and no trailing dot or space (Windows drops them,
    # so "a.txt." and "a.txt" would name the same file).
    return name.strip(" .")


def _not_a_device(name: str) -> str:
    stem = name.split(".", 1)[0].rstrip(" ")
    return f"_{name}" if stem.upper() in _RESERVED else name


def _truncated(name: str, limit: int) -> str:
    if len(name.encode()) <= limit:
        return name
    stem, dot, extension = name.rpartition(".")
    if not dot or not stem or len(extension) > _MAX_EXTENSION_CHARS:
        stem, extension = name, ""
    tail = f".{extension}" if extension else ""
    room = limit - len(tail.encode())
    # Cut at a character boundary: drop the bytes of a character cut in half.
    cut = stem.encode()[:room].decode(errors="ignore")
    return _trimmed(cut) + tail


def safe_filename(name: str | None, *, fallback: str = FALLBACK_FILENAME) -> str:
    """A display name made from a client's file name.

    Keeps the last path segment (``/`` and ``\\`` alike), normalizes to NFC, drops
    control, format and other invisible characters, replaces characters Windows
    refuses with ``_``, trims leading dots and leading or trailing dots and spaces,
    prefixes Windows device names (``CON``, ``com1.txt``...) with ``_``, and cuts the
    name to :data:`MAX_FILENAME_BYTES` UTF-8 bytes keeping its extension. ``fallback``
    when nothing is left. Never a path: the result is for display and
    ``Content-Disposition`` only.
    """
    if not name:
        return fallback
    name = re.split(r"[/\\]", name)[-1]
    name = unicodedata.normalize("NFC", name)
    name = _visible(name)
    name = _WINDOWS_INVALID.sub("_", name)
    name = re.sub(r" {2,}", " ", name)
    name = _trimmed(name)
    if not name:
        return fallback
    name = _truncated(_not_a_device(name), MAX_FILENAME_BYTES)
    return name or fallback


def _ascii(text: str) -> str:
    # Accents come off (NFKD, then the combining marks go); anything else becomes "_".
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _ASCII_UNSAFE.sub("_", bare)


def _ascii_fallback(name: str) -> str:
    stem, dot, extension = name.rpartition(".")
    if not dot:
        stem, extension = name, ""
    ascii_stem = _trimmed(_ascii(stem))
    ascii_extension = _ascii(extension)[:_MAX_EXTENSION_CHARS]
    if not ascii_stem.strip("_ "):
        ascii_stem = FALLBACK_FILENAME
    if ascii_extension.strip("_"):
        return f"{ascii_stem}.{ascii_extension}"
    return ascii_stem


def content_disposition(filename: str) -> str:
    """``attachment`` with the name twice, as RFC 6266 §4.3 advises: an ASCII
    ``filename`` for old clients and ``filename*=UTF-8''...`` (RFC 5987 / RFC 8187)
    with the real name. ``attachment`` tells a browser to save, never to render."""
    name = safe_filename(filename)
    encoded = quote(name, safe=_ATTR_CHARS)
    return f"attachment; filename=\"{_ascii_fallback(name)}\"; filename*=UTF-8''{encoded}"
