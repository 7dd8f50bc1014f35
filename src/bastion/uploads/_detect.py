"""What a file is, from its bytes: magic numbers, or strict UTF-8 plain text.

Never from the name's extension or the type the client declares: both are the
client's word (OWASP File Upload Cheat Sheet, "Content-Type Validation" and "File
Signature Validation"). Binary formats are recognised by their signatures with the
``filetype`` library; text is ours to judge: valid UTF-8 (strict), without NUL or
other control characters than tab, CR and LF, and not starting like a document a
browser would render (WHATWG MIME Sniffing §7.1: ``<html``, ``<script``, ``<?xml``,
``<svg``...). Such markup is reported as the type a browser would take it for, so the
allowlist refuses it even though it is valid text.
"""

from __future__ import annotations

import codecs
import re

import filetype  # type: ignore[import-untyped]  # no stubs; one call, typed below

__all__ = [
    "DEFAULT_TYPES",
    "SUPPORTED_TYPES",
    "TEXT",
    "TypeSniffer",
    "declared_type",
    "detect_type",
    "served_type",
]

TEXT = "text/plain"
SUPPORTED_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", TEXT)
DEFAULT_TYPES = frozenset(SUPPORTED_TYPES)

_SIGNATURE_BYTES = 8192  # what ``filetype`` looks at
_MARKUP_BYTES = 1445  # WHATWG MIME Sniffing §5.2: the resource header to sniff
# An animated PNG is a PNG: browsers take it as image/png.
_DETECTED_ALIASES = {"image/apng": "image/png"}
# Names clients use for the allowed types besides the registered ones.
_DECLARED_ALIASES = {
    "image/jpg": "image/jpeg",
    "image/pjpeg": "image/jpeg",
    "image/x-png": "image/png",
}
_NO_DECLARATION = frozenset({"", "application/octet-stream"})
# C0 controls but tab, LF and CR; DEL; C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_HTML_TAGS = (
    "!doctype html", "html", "head", "script", "iframe", "h1", "div", "font", "table",
    "a", "style", "title", "b", "body", "br", "p", "!--",
)  # fmt: skip
# WHATWG's tag-terminating bytes (space, ">"), and what else ends a tag name for an
# HTML parser: other white space and "/" (``<svg/onload=...>``).
_TAG_END = " \t\n\r\f>/"
_MARKUP_PREFIXES = (("<?xml", "text/xml"), ("%!PS-Adobe-", "application/postscript"))


def _markup_type(head: str) -> str | None:
    """The type a browser would sniff from the start of ``head``, or None."""
    start = head.lstrip("\ufeff").lstrip(" \t\n\r\f")
    lowered = start[:64].lower()
    for prefix, media in _MARKUP_PREFIXES:
        if start.startswith(prefix):
            return media
    for tag, media in [(t, "text/html") for t in _HTML_TAGS] + [("svg", "image/svg+xml")]:
        opening = f"<{tag}"
        if lowered.startswith(opening) and lowered[len(opening) : len(opening) + 1] in _TAG_END:
            # An opening at the very end of the header counts too (nothing follows).
            return media
    return None


class TypeSniffer:
    """Judges a file as it streams by: feed every chunk, then ask :meth:`result`.

    Keeps the first 8 KiB (for the signatures) and a running strict UTF-8 decoder; no
    other copy of the content.
    """

    def __init__(self) -> None:
        self._head = bytearray()
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._text = True
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if len(self._head) < _SIGNATURE_BYTES:
            self._head += chunk[: _SIGNATURE_BYTES - len(self._head)]
        if self._text:
            self._check_text(chunk, final=False)

    def _check_text(self, chunk: bytes, *, final: bool) -> None:
        try:
            decoded = self._decoder.decode(chunk, final)
        except UnicodeDecodeError:
            self._text = False
            return
        if _CONTROL.search(decoded):
            self._text = False

    def result(self) -> str | None:
        """The detected media type (without parameters), or None: empty, or neither a
        known signature nor plain text."""
        if self.size == 0:
            return None
        head = bytes(self._head)
        kind = filetype.guess(head)
        if kind is not None:
            mime = str(kind.mime)
            return _DETECTED_ALIASES.get(mime, mime)
        if self._text:
            self._check_text(b"", final=True)  # a sequence cut at the end is not UTF-8
        if not self._text:
            return None
        text_head = head[:_MARKUP_BYTES].decode("utf-8", errors="ignore")
        return _markup_type(text_head) or TEXT


def detect_type(data: bytes) -> str | None:
    """The media type of a whole file in memory (see :class:`TypeSniffer`)."""
    sniffer = TypeSniffer()
    sniffer.feed(data)
    return sniffer.result()


def declared_type(value: str | None) -> str | None:
    """The media type a client declared for a part, lowercased, without parameters and
    with common aliases resolved; None for no declaration or ``application/octet-stream``
    (which declares nothing)."""
    media = (value or "").split(";", 1)[0].strip().lower()
    if media in _NO_DECLARATION:
        return None
    return _DECLARED_ALIASES.get(media, media)


def served_type(media_type: str) -> str:
    """The ``Content-Type`` to serve a stored file with: text says its charset (it was
    checked to be UTF-8), so no client guesses another (RFC 9110 §8.3)."""
    return f"{media_type}; charset=utf-8" if media_type == TEXT else media_type
