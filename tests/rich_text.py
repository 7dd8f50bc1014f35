"""The rich-text attack corpus and the checker that judges sanitized HTML.

The corpus lives in ``tests/vectors/xss.txt`` (one payload a line, taken literally) and
``tests/vectors/xss_control.json`` (payloads that need control characters). The checker
parses sanitized HTML with the standard library's parser, the way a renderer would see
it, and lists every rule it breaks: the tag and attribute allowlist, event handlers, the
URL schemes of links and their ``rel``, comments and declarations.

Link URLs are judged more strictly than a browser would: besides what the WHATWG URL
parser strips (leading C0 controls and spaces, tabs and newlines anywhere), every
control, format and space character is removed, the text is NFKC-normalized, lower-cased
and percent-decoded once, so that a link that only a lenient consumer (an old browser, a
mail client, a Markdown renderer) would read as ``javascript:`` is caught too.
"""

from __future__ import annotations

import json
import re
import unicodedata
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

__all__ = [
    "ALLOWED_TAGS",
    "LINK_REL",
    "SAFE_SCHEMES",
    "Violations",
    "href_scheme",
    "html_violations",
    "xss_payloads",
]

VECTORS = Path(__file__).parent / "vectors"
ALLOWED_TAGS = frozenset(
    {"p", "br", "strong", "em", "b", "i", "u", "s", "ul", "ol", "li", "code", "pre"}
    | {"blockquote", "a"}
)
LINK_ATTRIBUTES = frozenset({"href", "title", "rel"})
LINK_REL = frozenset({"noopener", "noreferrer", "nofollow"})
SAFE_SCHEMES = frozenset({"http", "https", "mailto"})
_SCHEME = re.compile(r"^([a-z][a-z0-9+.\-]*):")
_INVISIBLE = {"Cc", "Cf", "Zs", "Zl", "Zp"}


def xss_payloads() -> dict[str, str]:
    """Every payload of the corpus by a short id (``line-N`` or the JSON key)."""
    payloads: dict[str, str] = {}
    lines = (VECTORS / "xss.txt").read_text(encoding="utf-8").split("\n")
    for number, line in enumerate(lines, start=1):
        if line and not line.startswith("#"):
            payloads[f"line-{number}"] = line
    control = json.loads((VECTORS / "xss_control.json").read_text(encoding="utf-8"))
    payloads.update(control["payloads"])
    return payloads


def href_scheme(href: str) -> str | None:
    """The scheme a lenient consumer could read in ``href`` (entities already decoded by
    the HTML parser), lower-cased: an unsafe one if any reading gives one; None for a
    relative reference."""
    text = unicodedata.normalize("NFKC", href)
    schemes = []
    for reading in (text, unquote(text)):  # as written, and percent-decoded once
        visible = "".join(ch for ch in reading if unicodedata.category(ch) not in _INVISIBLE)
        match = _SCHEME.match(visible.lower())
        schemes.append(match.group(1) if match else None)
    unsafe = [s for s in schemes if s is not None and s not in SAFE_SCHEMES]
    return unsafe[0] if unsafe else schemes[0]


class Violations(HTMLParser):
    """Feed it sanitized HTML; ``found`` lists what breaks the rules."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.found.append(f"tag <{tag}> is not allowed")
        for name, _ in attrs:
            if name.startswith("on"):
                self.found.append(f"event handler {name} on <{tag}>")
            elif tag != "a" or name not in LINK_ATTRIBUTES:
                self.found.append(f"attribute {name} on <{tag}> is not allowed")
        if tag == "a":
            self._check_link(dict(attrs))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def _check_link(self, attrs: dict[str, str | None]) -> None:
        rel = set((attrs.get("rel") or "").split())
        if rel != LINK_REL:
            self.found.append(f"link rel is {attrs.get('rel')!r}")
        href = attrs.get("href")
        if href is not None:
            scheme = href_scheme(href)
            if scheme is not None and scheme not in SAFE_SCHEMES:
                self.found.append(f"link scheme {scheme!r} in {href!r}")

    def handle_comment(self, data: str) -> None:
        self.found.append(f"comment {data!r}")

    def handle_decl(self, decl: str) -> None:
        self.found.append(f"declaration {decl!r}")

    def handle_pi(self, data: str) -> None:
        self.found.append(f"processing instruction {data!r}")

    def unknown_decl(self, data: str) -> None:
        self.found.append(f"declaration {data!r}")


def html_violations(html: str) -> list[str]:
    """What in ``html`` (a sanitizer's output) breaks the rich-text rules; empty if none."""
    checker = Violations()
    checker.feed(html)
    checker.close()
    if "\x00" in html:
        checker.found.append("NUL character")
    return checker.found
