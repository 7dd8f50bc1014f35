"""Rich text through an allowlist: nh3 (the Ammonia sanitizer) decides what survives.

Only paragraphs, line breaks, emphasis, lists, code, quotes and links stay (OWASP XSS
Prevention Cheat Sheet, rule 6: sanitize HTML with a library built for it); every other
element is removed and its text kept, escaped. Choices beyond the allowlist, each
forced by a payload of ``tests/vectors/xss.txt`` or named by the cheat sheets:

- No attribute on any element but links (Ammonia's default allows ``lang`` and
  ``title`` everywhere). Links keep ``href`` and ``title`` only, and get
  ``rel="noopener noreferrer nofollow"`` whatever they had (no ``target``, ``ping`` or
  ``id``/``name``: tab-nabbing, tracking and DOM clobbering).
- ``href`` must be an absolute ``http``, ``https`` or ``mailto`` URL. Relative
  references are dropped too: a description has no base URL of its own (it is shown
  by clients at origins the service does not know), and a value such as
  ``"\\u00a0javascript:..."`` or ``"java\\u200bscript:..."``, relative to a conforming
  URL parser, reads as ``javascript:`` to a more lenient consumer.
- The content of script, style, template and the raw-text and foreign-content
  elements goes with them: it is code or markup another parser reads differently
  (the root of mutation XSS), never text a reader meant to show.
- Comments are stripped (the ``<!--<img src="--><img onerror>`` family).
- The output is a fixed point: sanitizing it again changes nothing, so the markup a
  browser builds from it is the markup that was checked (the mutation-XSS guard).
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
# "*" empty: Ammonia otherwise allows ``lang`` and ``title`` on every element.
_ATTRIBUTES: dict[str, set[str]] = {"a": {"href", "title"}, "*": set()}
_SCHEMES = {"http", "https", "mailto"}
# Removed with their content (never allowed tags, so the two sets cannot overlap).
_CLEAN_CONTENT = {
    "script",
    "style",
    "template",
    "noscript",
    "xmp",
    "iframe",
    "noembed",
    "noframes",
    "plaintext",
    "object",
    "svg",
    "math",
}
# The HTML parser drops one newline right after <pre>, and the serializer does not add
# it back (the rule the HTML Standard once had); restoring it keeps a leading blank
# line of a code block from shrinking on every pass.
_PRE_NEWLINE = "<pre>\n"


def sanitize_html(text: str) -> str:
    """``text`` with only the allowed markup left; safe to insert into an HTML page."""
    cleaned = nh3.clean(
        text,
        tags=_TAGS,
        clean_content_tags=_CLEAN_CONTENT,
        attributes=_ATTRIBUTES,
        url_schemes=_SCHEMES,
        url_relative="deny",
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    # ``<pre>`` carries no attribute and markup in text is escaped, so this string can
    # only be the start of a pre element whose text begins with a newline.
    return cleaned.replace(_PRE_NEWLINE, _PRE_NEWLINE + "\n")
