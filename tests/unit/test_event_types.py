"""Every event type the code emits has a default severity and a row in the docs' table.

The code is read with ``ast``: the literal event types given to ``emit``,
``emit_soon`` and ``build`` (a conditional expression counts both of its branches).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bastion.events import DEFAULT_SEVERITY

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "errors-and-events.md"
ROW = re.compile(r"^\| `([a-z_]+)` \| ([^|]+) \| ([^|]+) \|", re.MULTILINE)
EMITTERS = {"emit", "emit_soon", "build"}


def _literals(node: ast.expr) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _literals(node.body) | _literals(node.orelse)
    return set()


def emitted_types(root: Path) -> dict[str, str]:
    """Each literal event type in ``root``'s code, with one place that emits it."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not (isinstance(node, ast.Call) and node.args):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in EMITTERS:
                for event_type in _literals(node.args[0]):
                    found.setdefault(event_type, f"{path.relative_to(root)}:{node.lineno}")
    return found


def documented() -> dict[str, str]:
    """The rows of the table headed ``| event_type | severity |``, up to its end."""
    text = DOC.read_text()
    start = text.index("| event_type | severity |")
    table = text[start : text.index("\n\n", start)]
    return {name: severity.strip() for name, severity, _ in ROW.findall(table)}


def test_the_scan_finds_the_events_it_should() -> None:
    # The scan itself can fail: it finds emit, emit_soon, build and both branches.
    found = emitted_types(ROOT / "src")

    assert {"auth_failure", "permission_denied", "role_changed", "events_dropped"} <= set(found)
    assert {"account_enabled", "account_disabled"} <= set(found)


def test_every_emitted_type_has_a_default_severity() -> None:
    found = emitted_types(ROOT / "src")

    assert {t: where for t, where in found.items() if t not in DEFAULT_SEVERITY} == {}


def test_the_docs_table_lists_every_type_with_its_severity() -> None:
    table = documented()
    found = set(emitted_types(ROOT / "src")) | set(DEFAULT_SEVERITY)

    assert sorted(found - set(table)) == []
    assert sorted(set(table) - found) == []  # no row for an event that never happens
    for event_type, severity in DEFAULT_SEVERITY.items():
        assert table[event_type].startswith(("the rule's", severity)), event_type
