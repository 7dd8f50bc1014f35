"""``sanitize_html`` against the rich-text attack corpus (tests/vectors/xss*.txt|json).

OWASP XSS Prevention Cheat Sheet rule 6 and the XSS Filter Evasion Cheat Sheet: every
payload comes out with allowlisted tags and attributes only, no event handler, links
with safe schemes and ``rel``; the output is a fixed point (mutation-XSS guard); the
markup the allowlist names survives intact.
"""

from __future__ import annotations

import pytest

from bastion.html import sanitize_html
from tests.rich_text import html_violations, xss_payloads

PAYLOADS = xss_payloads()
REL = 'rel="noopener noreferrer nofollow"'

ALLOWED = {
    "paragraphs": ("<p>one</p><p>two</p>", "<p>one</p><p>two</p>"),
    "line-break": ("<p>a<br>b</p>", "<p>a<br>b</p>"),
    "emphasis": (
        "<strong>s</strong><em>e</em><b>b</b><i>i</i><u>u</u><s>x</s>",
        "<strong>s</strong><em>e</em><b>b</b><i>i</i><u>u</u><s>x</s>",
    ),
    "lists": ("<ul><li>a</li></ul><ol><li>b</li></ol>", "<ul><li>a</li></ul><ol><li>b</li></ol>"),
    "code": ("<pre><code>x = 1 &lt; 2</code></pre>", "<pre><code>x = 1 &lt; 2</code></pre>"),
    "pre-leading-blank-line": ("<pre>\n\nindented</pre>", "<pre>\n\nindented</pre>"),
    "quote": ("<blockquote><p>q</p></blockquote>", "<blockquote><p>q</p></blockquote>"),
    "https-link": (
        '<a href="https://example.org/a?b=c&amp;d=e#f" title="T">x</a>',
        f'<a href="https://example.org/a?b=c&amp;d=e#f" title="T" {REL}>x</a>',
    ),
    "http-link": (
        '<a href="http://example.org">x</a>',
        f'<a href="http://example.org" {REL}>x</a>',
    ),
    "mailto-link": (
        '<a href="mailto:team@example.org">x</a>',
        f'<a href="mailto:team@example.org" {REL}>x</a>',
    ),
    "text-with-entities": ("Fish &amp; chips &lt;3", "Fish &amp; chips &lt;3"),
    "unicode-text": ("Grüße, 東京 👩\u200d💻", "Grüße, 東京 👩\u200d💻"),
}

DROPPED = {
    "unknown-tag-keeps-text": ("<div>text</div>", "text"),
    "script-with-content": ("a<script>alert(1)</script>b", "ab"),
    "relative-link-loses-href": ('<a href="/tasks">x</a>', f"<a {REL}>x</a>"),
    "fragment-link-loses-href": ('<a href="#top">x</a>', f"<a {REL}>x</a>"),
    "scheme-relative-link-loses-href": ('<a href="//example.org">x</a>', f"<a {REL}>x</a>"),
    "target-and-rel-replaced": (
        '<a href="https://example.org" target="_blank" rel="opener">x</a>',
        f'<a href="https://example.org" {REL}>x</a>',
    ),
    "comment": ("a<!-- note -->b", "ab"),
    "style-attribute": ('<p style="color:red">x</p>', "<p>x</p>"),
}

UNSAFE = {
    "script": "<script>alert(1)</script>",
    "img": "<img src=x>",
    "event-handler": '<p onclick="alert(1)">x</p>',
    "javascript-link": f'<a href="javascript:alert(1)" {REL}>x</a>',
    "entity-encoded-scheme": f'<a href="&#106;avascript:alert(1)" {REL}>x</a>',
    "nbsp-before-scheme": f'<a href="&nbsp;javascript:alert(1)" {REL}>x</a>',
    "percent-encoded-scheme": f'<a href="%6A%61vascript:alert(1)" {REL}>x</a>',
    "data-link": f'<a href="data:text/html,x" {REL}>x</a>',
    "missing-rel": '<a href="https://example.org">x</a>',
    "style-attribute": '<p style="x">x</p>',
    "link-id": f'<a id="x" {REL}>x</a>',
    "comment": "<!-- x -->",
    "nul": "a\x00b",
}


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_corpus_payload_comes_out_safe(payload: str) -> None:
    cleaned = sanitize_html(payload)

    assert html_violations(cleaned) == []


@pytest.mark.parametrize("payload", list(PAYLOADS.values()), ids=list(PAYLOADS))
def test_sanitizing_the_output_again_changes_nothing(payload: str) -> None:
    cleaned = sanitize_html(payload)

    assert sanitize_html(cleaned) == cleaned


@pytest.mark.parametrize(("markup", "expected"), list(ALLOWED.values()), ids=list(ALLOWED))
def test_allowed_markup_survives(markup: str, expected: str) -> None:
    cleaned = sanitize_html(markup)

    assert cleaned == expected
    assert html_violations(cleaned) == []


@pytest.mark.parametrize(("markup", "expected"), list(DROPPED.values()), ids=list(DROPPED))
def test_what_the_allowlist_does_not_name_is_removed(markup: str, expected: str) -> None:
    cleaned = sanitize_html(markup)

    assert cleaned == expected


@pytest.mark.parametrize("html", list(UNSAFE.values()), ids=list(UNSAFE))
def test_the_checker_flags_unsafe_html(html: str) -> None:
    found = html_violations(html)

    assert found != []


def test_the_corpus_is_broad() -> None:
    count = len(PAYLOADS)

    assert count >= 200
