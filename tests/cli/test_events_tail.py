"""``bastion events tail``: the latest stored events, oldest first, from the database.

The command runs in-process with the real settings machinery (CliRunner); ``--follow``
is tested through ``tail`` with an injected sleep that stores events between polls, and
once as a real process stopped with Ctrl-C (SIGINT).
"""

from __future__ import annotations

import asyncio
import json
import select
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import bastion_cli.events
from bastion.stores import SecurityEvent, open_stores
from bastion.stores.memory import MemoryEventStore
from bastion_cli import app
from bastion_cli.events import JSONLinesPrinter, printable, tail

runner = CliRunner()
T0 = datetime(2024, 7, 1, 8, 0, 0, 250000, tzinfo=UTC)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environment: None) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BASTION_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("BASTION_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("BASTION_PASSWORD_PROFILE", "test-only-insecure")
    monkeypatch.setenv("BASTION_LOG_EVENTS_TO_STDOUT", "false")
    monkeypatch.setenv("COLUMNS", "200")  # a wide table: no cell is wrapped
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)  # plain text, as to any pipe
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    return tmp_path


def event(minute: int, event_type: str = "auth_failure", **overrides: Any) -> SecurityEvent:
    values: dict[str, Any] = {
        "event_type": event_type,
        "timestamp": T0 + timedelta(minutes=minute),
        "severity": "medium",
        "user_id": "8c7e1d2a-0000-4000-8000-000000000001",
        "ip_address": "192.0.2.1",
        "endpoint": "/auth/login",
        "method": "POST",
        "details": f"at {minute}",
        "request_id": f"req-{minute}",
    }
    values.update(overrides)
    return SecurityEvent(**values)


def store_events(tmp_path: Path, *events: SecurityEvent) -> None:
    async def append() -> None:
        stores = open_stores(f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}")
        try:
            await stores.events.append(list(events))
        finally:
            await stores.aclose()

    asyncio.run(append())


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# -- the latest events ------------------------------------------------------------------


def test_tail_prints_the_latest_events_oldest_first(env: Path) -> None:
    store_events(env, *[event(m) for m in range(5)])

    result = runner.invoke(app, ["events", "tail", "--json", "--limit", "3"])

    assert result.exit_code == 0, result.output
    assert [e["details"] for e in lines(result.stdout)] == ["at 2", "at 3", "at 4"]


def test_json_lines_have_the_event_log_s_shape(env: Path) -> None:
    store_events(env, event(0, extra={"category": "malicious_csrf"}))

    result = runner.invoke(app, ["events", "tail", "--json"])

    assert lines(result.stdout) == [
        {
            "timestamp": "2024-07-01T08:00:00.250Z",
            "event_type": "auth_failure",
            "user_id": "8c7e1d2a-0000-4000-8000-000000000001",
            "ip_address": "192.0.2.1",
            "endpoint": "/auth/login",
            "method": "POST",
            "details": "at 0",
            "severity": "medium",
            "request_id": "req-0",
            "category": "malicious_csrf",
        }
    ]


def test_tail_filters_by_type(env: Path) -> None:
    store_events(env, event(0), event(1, "role_changed"), event(2), event(3, "role_changed"))

    result = runner.invoke(app, ["events", "tail", "--json", "--type", "role_changed"])

    assert [e["details"] for e in lines(result.stdout)] == ["at 1", "at 3"]


def test_the_default_is_a_table_of_twenty(env: Path) -> None:
    store_events(env, *[event(m) for m in range(25)])

    result = runner.invoke(app, ["events", "tail"])

    assert result.exit_code == 0, result.output
    header, *rows = result.stdout.strip().splitlines()
    assert header.split() == ["time", "severity", "event", "user", "ip", "request", "details"]
    assert len(rows) == 20
    assert rows[0].startswith("2024-07-01T08:05:00.250Z")
    assert "POST /auth/login" in rows[0]
    assert rows[-1].rstrip().endswith("at 24")


def test_an_empty_log_prints_an_empty_table(env: Path) -> None:
    result = runner.invoke(app, ["events", "tail"])

    assert result.exit_code == 0, result.output
    assert result.stdout.split() == [
        "time",
        "severity",
        "event",
        "user",
        "ip",
        "request",
        "details",
    ]


# -- hostile event data -----------------------------------------------------------------

HOSTILE = {
    "endpoint": "/\x1b[2J\x1b]0;owned\x07",
    "details": "[bold red]fake alert[/bold red] \u202eevil\u202c\r\nforged line",
}


def test_the_table_shows_control_characters_as_escapes(env: Path) -> None:
    store_events(env, event(0, **HOSTILE))

    result = runner.invoke(app, ["events", "tail"])

    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.stdout
    assert "\u202e" not in result.stdout
    assert "\\x1b[2J\\x1b]0;owned\\x07" in result.stdout
    assert "\\r\\nforged line" in result.stdout


def test_the_table_prints_markup_in_events_as_text(env: Path) -> None:
    store_events(env, event(0, **HOSTILE))

    result = runner.invoke(app, ["events", "tail"])

    assert "[bold red]fake alert[/bold red]" in result.stdout


def test_json_lines_escape_every_control_character(env: Path) -> None:
    store_events(env, event(0, **HOSTILE))

    result = runner.invoke(app, ["events", "tail", "--json"])

    assert result.stdout.isascii()
    assert "\x1b" not in result.stdout
    assert [e["endpoint"] for e in lines(result.stdout)] == [HOSTILE["endpoint"]]


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain /path", "plain /path"),
        ("\x1b[31m", "\\x1b[31m"),
        ("a\u200bb", "a\\u200bb"),
        ("line\u2028break", "line\\u2028break"),
        ("caf\u00e9 \u4e2d", "caf\u00e9 \u4e2d"),
    ],
    ids=["plain", "escape", "zero-width", "line-separator", "letters-kept"],
)
def test_printable_escapes_only_what_a_terminal_would_act_on(text: str, shown: str) -> None:
    assert printable(text) == shown


# -- options ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [["--limit", "-1"], ["--limit", "1001"], ["--type", "x" * 65], ["--interval", "0"]],
    ids=["negative-limit", "limit-past-1000", "type-too-long", "no-interval"],
)
def test_invalid_options_are_refused(env: Path, args: list[str]) -> None:
    result = runner.invoke(app, ["events", "tail", *args])

    assert result.exit_code == 2


def test_an_in_process_database_is_refused(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_DATABASE_URL", "memory://")

    result = runner.invoke(app, ["events", "tail"])

    assert result.exit_code == 2
    assert "memory://" in result.output


def test_follow_stops_after_the_given_polls(env: Path) -> None:
    store_events(env, event(0))

    result = runner.invoke(
        app, ["events", "tail", "--json", "--follow", "--interval", "0.01", "--max-polls", "2"]
    )

    assert result.exit_code == 0, result.output
    assert [e["details"] for e in lines(result.stdout)] == ["at 0"]


# -- following --------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def print(self, events: Any) -> None:
        self.batches.append([e.details for e in events])


def storing(store: MemoryEventStore, *arrivals: list[SecurityEvent]) -> Any:
    """A sleep that stores the next batch of ``arrivals`` at each poll."""
    pending = list(arrivals)

    async def sleep(seconds: float) -> None:
        if pending:
            await store.append(pending.pop(0))

    return sleep


async def test_follow_prints_each_new_event_once_in_order() -> None:
    store = MemoryEventStore()
    await store.append([event(0), event(1)])
    printer = Recorder()
    sleep = storing(store, [event(2), event(3)], [], [event(4)])

    await tail(store, printer, limit=1, follow=True, max_polls=3, sleep=sleep)

    assert printer.batches == [["at 1"], ["at 2", "at 3"], ["at 4"]]


async def test_follow_keeps_to_the_type() -> None:
    store = MemoryEventStore()
    printer = Recorder()
    sleep = storing(store, [event(0), event(1, "role_changed")], [event(2, "role_changed")])

    await tail(store, printer, event_type="role_changed", follow=True, max_polls=2, sleep=sleep)

    assert printer.batches == [[], ["at 1"], ["at 2"]]


async def test_follow_loses_nothing_of_a_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bastion_cli.events, "_BATCH", 2)
    store = MemoryEventStore()
    await store.append([event(0)])
    printer = Recorder()
    # Seven at once, two pairs on equal timestamps: four pages of two to catch up.
    sleep = storing(store, [event(1 + m % 5, request_id=f"{m}") for m in range(7)])

    await tail(store, printer, follow=True, max_polls=1, sleep=sleep)

    assert printer.batches[0] == ["at 0"]
    assert printer.batches[1] == ["at 1", "at 1", "at 2", "at 2", "at 3", "at 4", "at 5"]


async def test_limit_zero_follows_only_new_events() -> None:
    store = MemoryEventStore()
    await store.append([event(0), event(1)])
    printer = Recorder()
    sleep = storing(store, [event(2)])

    await tail(store, printer, limit=0, follow=True, max_polls=1, sleep=sleep)

    assert printer.batches == [[], ["at 2"]]


async def test_follow_shows_a_late_event_with_an_older_time_only_if_after_the_last() -> None:
    store = MemoryEventStore()
    await store.append([event(5)])
    printer = Recorder()
    # Stored after "at 5" was shown, but timed before it: the order is (timestamp, id).
    sleep = storing(store, [event(4), event(6)])

    await tail(store, printer, follow=True, max_polls=1, sleep=sleep)

    assert printer.batches == [["at 5"], ["at 6"]]


async def test_follow_waits_the_interval_between_polls() -> None:
    store = MemoryEventStore()
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    await tail(store, Recorder(), follow=True, interval=0.5, max_polls=3, sleep=sleep)

    assert waited == [0.5, 0.5, 0.5]


def test_a_real_process_follows_until_ctrl_c(env: Path) -> None:
    store_events(env, event(0))
    command = [sys.executable, "-c", "from bastion_cli import main; main()"]
    args = ["events", "tail", "--json", "--follow", "--interval", "0.05"]
    process = subprocess.Popen(
        [*command, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        first = _read_line(process, timeout=30)
        store_events(env, event(1))
        second = _read_line(process, timeout=30)
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()

    assert json.loads(first)["details"] == "at 0"
    assert json.loads(second)["details"] == "at 1"
    assert code == 0


def _read_line(process: subprocess.Popen[str], *, timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            return process.stdout.readline()
        assert process.poll() is None, "the command ended early"
    raise AssertionError("no line in time")


def test_json_lines_are_flushed_at_once(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    with path.open("w") as stream:
        JSONLinesPrinter(stream).print([event(0)])

        written = path.read_text()

    assert json.loads(written)["details"] == "at 0"


def test_a_narrow_table_folds_cells_and_cuts_nothing(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store_events(env, event(0, details="a rather long detail that cannot fit in one cell"))
    monkeypatch.setenv("COLUMNS", "60")

    result = runner.invoke(app, ["events", "tail"])

    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    assert "2024-07-01T08:00:00.250Z" in result.stdout


def test_an_unreachable_database_is_a_short_error(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BASTION_DATABASE_URL", "postgresql+asyncpg://bastion@127.0.0.1:9/none")

    result = runner.invoke(app, ["events", "tail"])

    assert result.exit_code == 1
    assert "Cannot read the security events" in result.output
    assert "Traceback" not in result.output
