"""Injection: no query, command or template is ever built from data.

OWASP Injection Prevention and Query Parameterization Cheat Sheets, ASVS 1.2.4 (SQL
through parameterized queries), 1.2.5 (no OS command built from input), 1.3.2 (no
``eval`` or dynamic code execution), 1.3.7 (no template built from input), 1.5.2 (no
unsafe deserialization). Three layers of proof:

- A source scan of ``src/``: every SQL call takes a construct or a literal, never a
  string built with an f-string, ``%``, ``.format()``, ``.join()`` or ``+``; and no
  ``eval``/``exec``, shell, pickle, unsafe YAML or template engine anywhere. The scanner
  is itself tested on bad sources, so that it can fail.
- Search: SQL and LIKE metacharacters in ``GET /tasks?q=`` are data on both backends:
  they match themselves only, find none of another user's tasks, drop no table.
- Path parameters: ids that are not UUIDs answer a 404 or 422 problem, never a 500.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.helpers import user

SRC = Path(__file__).resolve().parent.parent.parent / "src"

# Calls whose first argument is a query or a script for another interpreter (SQL, the
# Redis Lua of register_script/eval): it must not be a string built at run time.
QUERY_METHODS = {
    "execute",
    "executemany",
    "executescript",
    "exec_driver_sql",
    "text",
    "literal_column",
    "register_script",
    "eval",
}
QUERY_FUNCTIONS = {"text", "literal_column"}
QUERY_KEYWORDS = {"statement", "sql", "script", "text"}
# Calls that run code, a shell, or unpickle, by qualified name (after import aliases).
FORBIDDEN_CALLS = {
    "eval": "eval() runs code",
    "exec": "exec() runs code",
    "compile": "compile() builds code",
    "__import__": "__import__() loads a module by a run-time name",
    "os.system": "a shell command",
    "os.popen": "a shell command",
    "asyncio.create_subprocess_shell": "a shell command",
    "pickle.load": "unpickling runs code",
    "pickle.loads": "unpickling runs code",
    "marshal.load": "unmarshalling code objects",
    "marshal.loads": "unmarshalling code objects",
    "shelve.open": "shelve unpickles",
    "yaml.unsafe_load": "unsafe YAML constructs objects",
    "yaml.full_load": "full YAML constructs objects",
    "string.Template": "a template engine",
}
FORBIDDEN_PREFIXES = {"os.exec": "a process replaces this one", "os.spawn": "a new process"}
FORBIDDEN_MODULES = {
    "jinja2": "a template engine",
    "mako": "a template engine",
    "chameleon": "a template engine",
    "dill": "unpickling runs code",
    "cloudpickle": "unpickling runs code",
}
SAFE_YAML_LOADERS = {"SafeLoader", "CSafeLoader", "BaseLoader"}

# Findings that are legitimate, each with its reason, as (path under src/, message).
# Empty: nothing in src/ needs one. A migration that had to name a database or a role
# in DDL (CREATE DATABASE cannot take a bound parameter) would be listed here.
ALLOWED: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    message: str


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _built_at_run_time(node: ast.expr) -> bool:
    """A string made from parts at run time: f-string, ``%``, ``.format``, ``.join``,
    or ``+`` with anything but literals."""
    if isinstance(node, ast.JoinedStr):
        return any(isinstance(part, ast.FormattedValue) for part in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Mod):
        return True
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return not (_literal(node.left) and _literal(node.right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return node.func.attr in {"format", "format_map", "join", "replace"}
    return False


def _literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _literal(node.left) and _literal(node.right)
    return False


class _Scanner(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.aliases: dict[str, str] = {}
        self.found: list[Finding] = []

    def _flag(self, node: ast.AST, message: str) -> None:
        self.found.append(Finding(self.path, getattr(node, "lineno", 0), message))

    def visit_Import(self, node: ast.Import) -> None:
        for name in node.names:
            self.aliases[name.asname or name.name.split(".")[0]] = name.name
            self._check_module(node, name.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = node.module or ""
        self._check_module(node, module)
        for name in node.names:
            qualified = f"{module}.{name.name}"
            self.aliases[name.asname or name.name] = qualified
            if qualified in FORBIDDEN_CALLS:
                self._flag(node, f"imports {qualified}: {FORBIDDEN_CALLS[qualified]}")

    def _check_module(self, node: ast.AST, module: str) -> None:
        root = module.split(".")[0]
        if root in FORBIDDEN_MODULES:
            self._flag(node, f"imports {module}: {FORBIDDEN_MODULES[root]}")

    def _qualified(self, func: ast.expr) -> str | None:
        dotted = _dotted(func)
        if dotted is None:
            return None
        head, _, rest = dotted.partition(".")
        head = self.aliases.get(head, head)
        return f"{head}.{rest}" if rest else head

    def visit_Call(self, node: ast.Call) -> None:
        name = self._qualified(node.func)
        self._check_query(node)
        if name in FORBIDDEN_CALLS:
            self._flag(node, f"calls {name}: {FORBIDDEN_CALLS[name]}")
        for prefix, why in FORBIDDEN_PREFIXES.items():
            if name and name.startswith(prefix):
                self._flag(node, f"calls {name}: {why}")
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                self._flag(node, f"calls {name} with shell=")
        if name == "yaml.load":
            loader = next((k.value for k in node.keywords if k.arg == "Loader"), None)
            if loader is None or (_dotted(loader) or "").split(".")[-1] not in SAFE_YAML_LOADERS:
                self._flag(node, "calls yaml.load without a safe Loader")
        self.generic_visit(node)

    def _check_query(self, node: ast.Call) -> None:
        func = node.func
        is_query = (isinstance(func, ast.Attribute) and func.attr in QUERY_METHODS) or (
            isinstance(func, ast.Name) and func.id in QUERY_FUNCTIONS
        )
        if not is_query:
            return
        arguments = node.args[:1] + [k.value for k in node.keywords if k.arg in QUERY_KEYWORDS]
        if any(_built_at_run_time(argument) for argument in arguments):
            self._flag(node, f"{_dotted(func)}() takes a string built at run time")


def scan(source: str, path: str = "<source>") -> list[Finding]:
    """What in ``source`` builds a query from strings or runs code, shells or templates."""
    scanner = _Scanner(path)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.found


def _scan_src() -> list[Finding]:
    found: list[Finding] = []
    for file in sorted(SRC.rglob("*.py")):
        found += scan(file.read_text(encoding="utf-8"), str(file.relative_to(SRC)))
    return found


def test_no_source_file_builds_a_query_or_runs_code() -> None:
    found = [f for f in _scan_src() if (f.path, f.message) not in ALLOWED]

    assert found == []


def test_every_allowed_finding_still_exists() -> None:
    found = {(f.path, f.message) for f in _scan_src()}

    assert set(ALLOWED) <= found


def test_the_scan_reads_every_source_file() -> None:
    files = list(SRC.rglob("*.py"))

    assert len(files) > 50
    assert any(path.name == "services.py" for path in files)


BAD_SOURCES = {
    "fstring-execute": 'conn.execute(f"SELECT * FROM tasks WHERE title = {title}")',
    "fstring-text": 'sa.text(f"DELETE FROM tasks WHERE id = {task_id}")',
    "bare-text-imported": 'from sqlalchemy import text\ntext(f"SELECT {x}")',
    "percent-execute": 'cursor.execute("SELECT * FROM t WHERE a = %s" % value)',
    "format-execute": 'conn.execute("SELECT * FROM t WHERE a = {}".format(value))',
    "concat-execute": 'conn.exec_driver_sql("SELECT * FROM t WHERE a = " + value)',
    "join-execute": 'conn.execute(" AND ".join(conditions))',
    "keyword-statement": 'conn.execute(statement=f"SELECT {x}")',
    "lua-script": "client.register_script(f\"return redis.call('GET', '{key}')\")",
    "eval": "eval(expression)",
    "exec": "exec(code)",
    "os-system": "import os\nos.system(command)",
    "os-system-imported": "from os import system\nsystem(command)",
    "os-popen": "import os\nos.popen(command)",
    "os-execv": "import os\nos.execv(path, args)",
    "subprocess-shell": "import subprocess\nsubprocess.run(command, shell=True)",
    "subprocess-shell-variable": "import subprocess as sp\nsp.Popen(command, shell=flag)",
    "asyncio-shell": "import asyncio\nasyncio.create_subprocess_shell(command)",
    "pickle-loads": "import pickle\npickle.loads(data)",
    "pickle-loads-imported": "from pickle import loads\nloads(data)",
    "yaml-load-default": "import yaml\nyaml.load(text)",
    "yaml-load-unsafe-loader": "import yaml\nyaml.load(text, Loader=yaml.Loader)",
    "yaml-unsafe-load": "import yaml\nyaml.unsafe_load(text)",
    "jinja": "from jinja2 import Template\nTemplate(source).render(user=user)",
    "string-template": "import string\nstring.Template(source).substitute(name=name)",
    "string-template-imported": "from string import Template\nTemplate(source)",
}
GOOD_SOURCES = {
    "construct": "conn.execute(sa.select(tasks).where(tasks.c.id == task_id))",
    "literal-text": 'conn.execute(sa.text("SELECT 1"))',
    "bound-text": 'conn.execute(sa.text("SELECT :x").bindparams(x=value))',
    "literal-concat": 'conn.exec_driver_sql("BEGIN " + "IMMEDIATE")',
    "pragma": 'cursor.execute("PRAGMA foreign_keys=ON")',
    "literal-lua": "client.register_script(_PUT_IF_NEWER)",
    "argv-subprocess": 'import subprocess\nsubprocess.run(["git", "status"], shell=False)',
    "yaml-safe": "import yaml\nyaml.load(text, Loader=yaml.SafeLoader)",
    "re-compile": "import re\nre.compile(pattern)",
    "format-elsewhere": 'message = "{} tasks".format(count)',
}


@pytest.mark.parametrize("source", list(BAD_SOURCES.values()), ids=list(BAD_SOURCES))
def test_the_scanner_flags_a_bad_source(source: str) -> None:
    found = scan(source)

    assert found != []


@pytest.mark.parametrize("source", list(GOOD_SOURCES.values()), ids=list(GOOD_SOURCES))
def test_the_scanner_passes_a_safe_source(source: str) -> None:
    found = scan(source)

    assert found == []


# --- search: SQL and LIKE metacharacters are data --------------------------------

TITLES = [
    "100% done",
    "100 done",
    "snake_case name",
    "snake case name",
    "it's done",
    'say "hi"',
    "back\\slash",
    "[a-z] class",
    "50%% off",
]
SEARCHES = {
    "quote-or-true": ("' OR 1=1 --", set()),
    "percent-quote-comment": ("%' --", set()),
    "drop-table": ('"; DROP TABLE tasks; --', set()),
    "union-select": ("' UNION SELECT * FROM accounts --", set()),
    "stacked-sleep": ("1; SELECT pg_sleep(5) --", set()),
    "backslash": ("\\", {"back\\slash"}),
    "escaped-percent": ("\\%", set()),
    "percent": ("%", {"100% done", "50%% off"}),
    "double-percent": ("%%", {"50%% off"}),
    "underscore": ("_", {"snake_case name"}),
    "percent-underscore": ("%_%", set()),
    "bracket-class": ("[a-z]", {"[a-z] class"}),
    "quote": ("'", {"it's done"}),
    "double-quote": ('"', {'say "hi"'}),
    "glob-star": ("*", set()),
    "prefix-with-percent": ("100%", {"100% done"}),
    "prefix-with-underscore": ("100_", set()),
}


@pytest.fixture
async def searcher(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    """A member with TITLES, next to another member with a task that holds every search
    in its description: a leak across owners would show at once."""
    alice = await user(client, app, "alice@example.com")
    bob = await user(client, app, "bob@example.com")
    for title in TITLES:
        created = await client.post("/tasks", json={"title": title}, headers=alice["auth"])
        assert created.status_code == 201, created.text
    everything = " ".join(q for q, _ in SEARCHES.values())
    created = await client.post(
        "/tasks", json={"title": "bob", "description": everything}, headers=bob["auth"]
    )
    assert created.status_code == 201, created.text
    assert created.json()["description"] == everything
    return alice


async def test_every_search_matches_its_text_literally_and_only_the_callers_tasks(
    client: httpx.AsyncClient, searcher: dict[str, Any]
) -> None:
    found = {}
    for name, (q, _) in SEARCHES.items():
        response = await client.get("/tasks", params={"q": q}, headers=searcher["auth"])
        found[name] = (response.status_code, {task["title"] for task in response.json()["items"]})

    assert found == {name: (200, expected) for name, (_, expected) in SEARCHES.items()}


async def test_no_search_drops_or_changes_a_table(
    client: httpx.AsyncClient, app: Any, searcher: dict[str, Any]
) -> None:
    engine = app.state.security.stores.engine
    before = await _tables(engine)

    statuses = [
        (await client.get("/tasks", params={"q": q}, headers=searcher["auth"])).status_code
        for q, _ in SEARCHES.values()
    ]

    assert statuses == [200] * len(SEARCHES)
    assert await _tables(engine) == before
    assert {"tasks", "accounts", "task_shares"} <= before
    listing = await client.get("/tasks", params={"limit": 100}, headers=searcher["auth"])
    assert len(listing.json()["items"]) == len(TITLES)


async def _tables(engine: Any) -> set[str]:
    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    return set(names)


# --- path parameters --------------------------------------------------------------

HOSTILE_IDS = {
    "dot-dot": "..%2f..%2fetc%2fpasswd",
    "encoded-dot-dot": "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "double-encoded": "%252e%252e%252f",
    "or-true": "1 OR 1=1",
    "quoted-or-true": "1' OR '1'='1",
    "uuid-then-sql": "00000000-0000-4000-8000-000000000000'; DROP TABLE tasks; --",
    "nul": "%00",
    "template": "{{7*7}}",
    "expression": "${7*7}",
    "markup": "<script>alert(1)</script>",
    "negative": "-1",
    "number": "1",
    "null": "null",
    "unicode-digits": "١٢٣",
    "too-long": "a" * 2000,
}
TASK_ROUTES = [("GET", "/tasks/{}"), ("PATCH", "/tasks/{}"), ("DELETE", "/tasks/{}")]
ADMIN_ROUTES = [
    ("PATCH", "/admin/users/{}"),
    ("POST", "/admin/users/{}/unlock"),
    ("POST", "/admin/users/{}/revoke-sessions"),
]


@pytest.mark.parametrize("hostile", list(HOSTILE_IDS.values()), ids=list(HOSTILE_IDS))
async def test_a_hostile_path_id_is_a_clean_client_error(
    client: httpx.AsyncClient, app: Any, hostile: str
) -> None:
    admin = await user(client, app, "admin@example.com", "admin")
    answers = {}
    for method, route in TASK_ROUTES + ADMIN_ROUTES:
        json_body = {} if method == "PATCH" else None
        response = await client.request(
            method, route.format(hostile), json=json_body, headers=admin["auth"]
        )
        answers[f"{method} {route}"] = (
            response.status_code in (404, 422),
            response.headers["content-type"],
        )

    assert answers == {
        f"{method} {route}": (True, "application/problem+json")
        for method, route in TASK_ROUTES + ADMIN_ROUTES
    }
