"""``bastion events verify``: check the tamper-evident chain of the stored events.

The chain and its problem kinds are :mod:`bastion.events.chain`. The command reads the
configured database and derives the chain key from the configured key file, as the
service does; it compares the log with the chain head the service publishes in the data
folder (and with one given from a shipped JSON event line); on a large log it shows a
progress bar (on stderr) over the row count.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.config import BastionSettings
from bastion.errors import ConfigurationError
from bastion.events.chain import ChainHead, ChainReport, verify_chain
from bastion.runtime import load_keys
from bastion.tokens import purposes

__all__ = ["PROGRESS_FROM", "chain_key", "parse_head", "print_report", "verify_events"]

PROGRESS_FROM = 10_000  # rows: smaller logs verify before a bar would be worth drawing


def chain_key(settings: BastionSettings) -> bytes:
    """The chain key the service uses, from the same key file (or HS256 secret).

    Raises ``ConfigurationError`` when the key file is missing or unreadable: a key made
    up now would only report every chained row as modified.
    """
    if settings.jwt_algorithm != "HS256" and not settings.keys_path.exists():
        raise ConfigurationError("BASTION_DATA_DIR", f"key file {settings.keys_path} missing")
    keys, _ = load_keys(settings)
    return keys.derive_secret(purposes.EVENT_CHAIN)


class _Bar:
    """A progress bar started on the first report of a log of ``PROGRESS_FROM`` rows or more."""

    def __init__(self, console: Console, threshold: int) -> None:
        self._console = console
        self._threshold = threshold
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int) -> None:
        if total < self._threshold:
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("verifying"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=self._console,
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task("verify", total=total)
        assert self._task is not None
        self._progress.update(self._task, completed=done, total=total)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def parse_head(text: str) -> ChainHead:
    """``SEQ:MAC``, the ``chain`` member of a JSON event line; raises ``ValueError``."""
    seq, _, mac = text.partition(":")
    if not seq.isdigit() or len(mac) != 64 or any(c not in "0123456789abcdef" for c in mac):
        raise ValueError("expected SEQ:MAC, the chain member of an event line")
    return ChainHead(int(seq), mac)


async def verify_events(
    engine: AsyncEngine,
    key: bytes,
    console: Console,
    *,
    threshold: int = PROGRESS_FROM,
    head: ChainHead | None = None,
    head_name: str = "the head",
) -> ChainReport:
    """Verify the chain, with a progress bar on ``console`` for ``threshold`` rows or more,
    against ``head`` when given."""
    bar = _Bar(console, threshold)
    try:
        return await verify_chain(engine, key, head=head, head_name=head_name, on_progress=bar)
    finally:
        bar.close()


def print_report(report: ChainReport, console: Console) -> int:
    """Print the report; the exit status: 0 when intact, 1 at a problem."""
    checkpoint = report.checkpoint
    problem = report.problem
    if checkpoint is not None and (problem is None or problem.kind != "checkpoint"):
        console.print(
            Text(
                f"from checkpoint {checkpoint.id}: events through row {checkpoint.through_id} "
                f"purged on {checkpoint.created_at:%Y-%m-%d %H:%M:%S} UTC"
            )
        )
    for gap in report.gaps:
        types = ", ".join(f"{name} {count}" for name, count in gap.types.items()) or "-"
        console.print(
            Text(
                f"gap recorded at row {gap.row_id}: {gap.count} events not written "
                f"({gap.reason.replace('_', ' ')}) from {gap.first or '-'} to "
                f"{gap.last or '-'}: {types}"
            )
        )
    if problem is None:
        console.print(Text(f"chain intact: {report.events} events"))
        return 0
    if problem.kind == "truncated":
        where = f" at row {problem.row_id}" if problem.timestamp is not None else ""
        console.print(
            Text(f"chain truncated{where}: {problem.reason}; {report.events} events verified")
        )
        return 1
    when = problem.timestamp.isoformat() if problem.timestamp else "-"
    where = "checkpoint" if problem.kind == "checkpoint" else "row"
    console.print(
        Text(
            f"chain broken at {where} {problem.row_id}: {problem.kind} "
            f"(timestamp {when}): {problem.reason}; {report.events} events verified before it"
        )
    )
    return 1
