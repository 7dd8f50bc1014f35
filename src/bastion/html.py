"""Rich text through an allowlist: nh3 (the Ammonia sanitizer) decides what survives.

Only paragraphs, line breaks, emphasis, lists, code, quotes and links stay; links keep
``http``, ``https`` and ``mailto`` URLs only and get ``rel="noopener noreferrer nofollow"``
(OWASP XSS Prevention Cheat Sheet, rule 6: sanitize HTML with a library built for it).
"""

from __future__ import annotations

import nh3

__all__ = ["sanitize_html"]

_TAGS = {
    "p",
    "br",
    "strong",
    "em",
    "b",
    "i",
    "u",
    "s",
    "ul",
    "ol",
    "li",
    "code",
    "pre",
    "blockquote",
    "a",
}
_ATTRIBUTES = {"a": {"href", "title"}}
_SCHEMES = {"http", "https", "mailto"}


def sanitize_html(text: str) -> str:
    return nh3.clean(
        text,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
