"""A tamper-evident chain over the stored security events, and its verification.

Each event a SQL event store writes with a chain key carries two hex values:

- ``chain_prev``: the ``chain_mac`` of the event stored before it (:data:`GENESIS`, 64
  zeros, for the first chained event);
- ``chain_mac``: ``HMAC-SHA256(key, chain_prev || canonical(event))``, where
  :func:`canonical` is sorted-key compact JSON of every stored field, the row id included.

The key is derived from the signing key file (``KeySet.derive_secret`` for
:data:`bastion.tokens.purposes.EVENT_CHAIN`), which is kept outside the database:
someone who can write the database but not read the key file cannot make a row that
verifies (OWASP Logging Cheat Sheet, "protect log integrity"; ASVS V7.3.3 / V16.4.2,
logs protected from modification).

:func:`verify_chain` walks the rows in id order, in batches, and reports the first
problem. For each chained row it knows ``expected``, the ``chain_mac`` of the row before
(or :data:`GENESIS`), and checks whether the row *links* (its ``chain_prev`` is
``expected``) and whether its *MAC verifies* (recomputed over its own ``chain_prev`` and
content). The kinds:

``modified``
    The row links but its MAC does not verify: a field of the row (or its MAC) was
    changed. Also a row whose MAC verifies over ``expected`` but not over its own
    ``chain_prev``: its link was changed. With the wrong key, the first row.
``deleted``
    The row's MAC verifies but it does not link: it was written after a row that is no
    longer its predecessor, so the rows in between (or the start of the chain) were
    deleted. Reported at the row after the gap. Ids are not used: PostgreSQL sequences
    skip numbers after a rollback, so a missing id proves nothing.
``inserted``
    A row the key holder did not write there: a row without chain values after the chain
    has begun; a row that neither links nor verifies; or a row that links and does not
    verify but that the next row passes over (the next row links to this row's
    predecessor). A forged row appended after the last one with a copied ``chain_prev``
    cannot be told from an edit of that row and is reported as ``modified``.
``stripped``
    A row without chain values where the chain starts (the first row, or the first after
    a checkpoint): every event a store writes is chained, so its chain values were
    removed (or it was written without the key).
``truncated``
    The log is shorter than a chain *head* published outside the database says
    (:class:`ChainHead`: the head file in the data folder, the ``chain`` member of each
    JSON event line): its newest events were deleted, or the event at the head's
    position is another one (events before it were deleted and the chain went on).

``checkpoint``
    A checkpoint (below) that does not match its MAC, or is not chained to the one
    before it: reported with the checkpoint's id in place of a row id.

What the stored chain alone cannot show: deleting the *last* rows (the rest is still a
valid chain) and a rewrite by someone holding the key file. The head bounds the first:
events are numbered from the start of the log (``seq``, purged ones included), and the
event the head names must be there, at its number, with its MAC.

**Gaps.** Events the service could not store (its queue was full while the database was
down, or the store refused them) are on record as chained ``events_dropped`` rows with
how many, which types and from when to when; :func:`verify_chain` lists them
(:class:`Gap`).

**Retention.** A purge (``SQLEventStore.purge``) deletes the oldest events and writes a
*checkpoint* in the same transaction: the cut-off, the last id deleted, how many, and
the ``chain_mac`` of the last deleted row (what the first kept row is chained to),
MACed with the same key (:func:`checkpoint_mac`) and chained to the previous
checkpoint. Verification starts from the newest checkpoint: the first kept row must
link to its ``chain_mac``. Deleting rows without a checkpoint, or deleting or editing a
checkpoint, is still reported.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bastion.errors import BastionError
from bastion.events._head import HEAD_FILE, ChainHead, read_head, write_head

__all__ = [
    "CHAINED_FIELDS",
    "GENESIS",
    "HEAD_FILE",
    "ChainBrokenError",
    "ChainHead",
    "ChainProblem",
    "ChainReport",
    "Checkpoint",
    "Gap",
    "ProblemKind",
    "canonical",
    "checkpoint_mac",
    "link_mac",
    "read_head",
    "verify_chain",
    "write_head",
]

GENESIS = "0" * 64
# Every stored field of an event, the row id included: a row moved to another id, or
# any field changed, no longer verifies.
CHAINED_FIELDS = (
    "id",
    "timestamp",
    "event_type",
    "severity",
    "user_id",
    "ip_address",
    "endpoint",
    "method",
    "details",
    "request_id",
    "extra",
)
ProblemKind = Literal["modified", "deleted", "inserted", "stripped", "truncated", "checkpoint"]
Progress = Callable[[int, int], None]

_BATCH = 1000


def _table() -> sa.Table:
    # Imported on use: the SQL event store imports this module to chain what it writes.
    from bastion.stores.sql.tables import SecurityEventRow

    table: sa.Table = SecurityEventRow.__table__  # type: ignore[attr-defined]
    return table


def _checkpoints() -> sa.Table:
    from bastion.stores.sql.tables import SecurityEventCheckpointRow

    table: sa.Table = SecurityEventCheckpointRow.__table__  # type: ignore[attr-defined]
    return table


class ChainBrokenError(BastionError):
    """A purge would have signed a chain that does not verify at ``row_id``."""

    def __init__(self, row_id: int) -> None:
        super().__init__(f"the event chain does not verify at row {row_id}: nothing purged")
        self.row_id = row_id


@dataclass(frozen=True)
class Checkpoint:
    """What one retention purge removed from the start of the chain (see the module)."""

    created_at: datetime
    before: datetime
    through_id: int
    purged: int
    chain_mac: str
    previous: str
    mac: str = ""
    id: int | None = None


def checkpoint_mac(key: bytes, checkpoint: Checkpoint) -> str:
    """``HMAC-SHA256(key, "checkpoint" || canonical JSON of its fields but id and mac)``;
    the prefix keeps it from ever equalling an event's MAC."""
    values: dict[str, Any] = {
        "created_at": _utc_text(checkpoint.created_at),
        "before": _utc_text(checkpoint.before),
        "through_id": checkpoint.through_id,
        "purged": checkpoint.purged,
        "chain_mac": checkpoint.chain_mac,
        "previous": checkpoint.previous,
    }
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hmac.new(key, b"checkpoint" + text.encode("ascii"), hashlib.sha256).hexdigest()


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical(row: Mapping[str, Any]) -> bytes:
    """The deterministic serialization of a stored event: sorted-key compact ASCII JSON of
    :data:`CHAINED_FIELDS`, the time as UTC with microseconds (what both backends keep)."""
    values = {name: row[name] for name in CHAINED_FIELDS}
    values["timestamp"] = _utc_text(values["timestamp"])
    text = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.encode("ascii")


def link_mac(key: bytes, prev: str, row: Mapping[str, Any]) -> str:
    """``HMAC-SHA256(key, prev || canonical(row))`` in hex: a stored event's ``chain_mac``."""
    return hmac.new(key, prev.encode("ascii") + canonical(row), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    """The first place where the stored events are not the chain the key holder wrote."""

    row_id: int
    kind: ProblemKind
    timestamp: datetime | None
    reason: str


@dataclass(frozen=True)
class Gap:
    """A stored ``events_dropped`` record: ``count`` events of ``types`` not written,
    between ``first`` and ``last`` (their times, as recorded), for ``reason``."""

    row_id: int
    timestamp: datetime
    count: int
    reason: str
    types: Mapping[str, int]
    first: str | None
    last: str | None


@dataclass(frozen=True)
class ChainReport:
    """``events`` chained rows verified before ``problem`` (all of them when None);
    ``checkpoint`` is the newest checkpoint, verification's start (None when nothing was
    ever purged); ``head`` the published head it was compared with (None: none given);
    ``gaps`` the records of events that could not be stored, oldest first."""

    events: int
    problem: ChainProblem | None = None
    checkpoint: Checkpoint | None = None
    head: ChainHead | None = None
    gaps: tuple[Gap, ...] = field(default=())

    @property
    def intact(self) -> bool:
        return self.problem is None


async def verify_chain(
    source: AsyncEngine | Any,
    key: bytes,
    *,
    head: ChainHead | None = None,
    head_name: str = "the head",
    on_progress: Progress | None = None,
    batch: int = _BATCH,
) -> ChainReport:
    """Verify the chain of the stored events with ``key``; stop at the first problem.

    ``source`` is an engine or a SQL event store (its ``engine``). Rows are read in id
    order, ``batch`` at a time, so a large log is never held in memory;
    ``on_progress(done, total)`` is called after each batch with the rows read so far
    and the row count at the start. With ``head`` (published outside the database),
    the event it names must be stored at its number with its MAC (kind ``truncated``;
    ``head_name`` says where the head came from in the problem's reason).
    """
    engine: AsyncEngine = source if isinstance(source, AsyncEngine) else source.engine
    count = sa.select(sa.func.count()).select_from(_table())
    async with engine.connect() as conn:
        total = (await conn.execute(count)).scalar_one()
        checkpoints = [
            Checkpoint(**row._mapping)
            for row in await conn.execute(_checkpoints().select().order_by("id"))
        ]
    latest, problem = _verify_checkpoints(checkpoints, key)
    if problem is not None:
        return ChainReport(0, problem, latest, head)
    walk = _Walk(key, latest, head, head_name, purged=sum(c.purged for c in checkpoints))
    rows = _rows(engine, batch, total, on_progress)
    current = await anext(rows, None)
    while current is not None:
        following = await anext(rows, None)
        problem = walk.step(current, following)
        if problem is not None:
            await rows.aclose()
            return walk.report(problem)
        current = following
    return walk.report(walk.finish())


class _Walk:
    """The state of one verification: what the next row must link to, the number of the
    last event seen (``seq``), and the gaps recorded so far."""

    def __init__(
        self,
        key: bytes,
        latest: Checkpoint | None,
        head: ChainHead | None,
        head_name: str,
        purged: int,
    ) -> None:
        self.key, self.latest, self.head, self.head_name = key, latest, head, head_name
        # None until the first row; after a purge, the checkpoint's last MAC.
        self.expected = latest.chain_mac if latest and latest.chain_mac != GENESIS else None
        self.seq = purged
        self.chained = 0
        self.last_id = 0
        self.gaps: list[Gap] = []

    def step(
        self, row: Mapping[str, Any], following: Mapping[str, Any] | None
    ) -> ChainProblem | None:
        latest = self.latest
        if latest is not None and row["id"] <= latest.through_id:
            return _problem(row, "inserted", f"a row the purge of checkpoint {latest.id} removed")
        if row["chain_mac"] is None and self.expected is None:
            where = (
                "the log's first row"
                if latest is None
                else f"the first row after checkpoint {latest.id}"
            )
            return _problem(
                row,
                "stripped",
                f"{where} has no chain values: every stored event is chained, so they "
                "were removed (or the row was written without the key)",
            )
        problem = _check(row, following, self.expected or GENESIS, self.key)
        if problem is not None:
            return problem
        self.chained += 1
        self.seq += 1
        self.last_id = row["id"]
        self.expected = row["chain_mac"]
        if row["event_type"] == "events_dropped":
            self.gaps.append(_gap(row))
        return self._against_head(row)

    def _against_head(self, row: Mapping[str, Any]) -> ChainProblem | None:
        """The head's event must be this row exactly when this row has the head's number."""
        head, name = self.head, self.head_name
        if head is None:
            return None
        named = hmac.compare_digest(head.mac, row["chain_mac"])
        if named and head.seq > self.seq:
            return _problem(
                row,
                "truncated",
                f"{name} records this row as event {head.seq}, the database holds it as "
                f"event {self.seq}: {head.seq - self.seq} events before it are missing",
            )
        if head.seq == self.seq and not named:
            return _problem(
                row,
                "truncated",
                f"{name} records event {head.seq} with another MAC: the event it names "
                "was deleted (or replaced) and the chain went on",
            )
        return None

    def finish(self) -> ChainProblem | None:
        """At the end of the rows: the head's event must have been among them."""
        head = self.head
        if head is None or head.seq <= self.seq:
            return None
        return ChainProblem(
            self.last_id,
            "truncated",
            None,
            f"{self.head_name} records {head.seq} events, the database holds {self.seq}: "
            f"the newest {head.seq - self.seq} were deleted",
        )

    def report(self, problem: ChainProblem | None) -> ChainReport:
        return ChainReport(self.chained, problem, self.latest, self.head, tuple(self.gaps))


def _problem(row: Mapping[str, Any], kind: ProblemKind, reason: str) -> ChainProblem:
    return ChainProblem(row["id"], kind, row["timestamp"], reason)


def _gap(row: Mapping[str, Any]) -> Gap:
    extra = row["extra"] or {}
    if isinstance(extra, str):  # a JSON column read as text
        extra = json.loads(extra)
    types = extra.get("types")
    return Gap(
        row_id=row["id"],
        timestamp=row["timestamp"],
        count=int(extra.get("count", 0)),
        reason=str(extra.get("reason", "")),
        types=dict(types) if isinstance(types, dict) else {},
        first=extra.get("first"),
        last=extra.get("last"),
    )


def _verify_checkpoints(
    checkpoints: list[Checkpoint], key: bytes
) -> tuple[Checkpoint | None, ChainProblem | None]:
    """The newest checkpoint, and the first that does not verify or link (in id order)."""
    previous = GENESIS
    for checkpoint in checkpoints:
        assert checkpoint.id is not None
        if not hmac.compare_digest(checkpoint_mac(key, checkpoint), checkpoint.mac):
            reason = "the checkpoint does not match its MAC"
        elif not hmac.compare_digest(checkpoint.previous, previous):
            reason = "the checkpoint before this one is missing or was changed"
        else:
            previous = checkpoint.mac
            continue
        return checkpoint, ChainProblem(checkpoint.id, "checkpoint", checkpoint.created_at, reason)
    return (checkpoints[-1] if checkpoints else None), None


def _check(
    row: Mapping[str, Any], following: Mapping[str, Any] | None, expected: str, key: bytes
) -> ChainProblem | None:
    """The problem at ``row`` (see the module's kinds), or None when it links and verifies."""

    def problem(kind: ProblemKind, reason: str) -> ChainProblem:
        return ChainProblem(row["id"], kind, row["timestamp"], reason)

    mac, prev = row["chain_mac"], row["chain_prev"] or ""
    if mac is None:
        return problem("inserted", "a row without a chain MAC after the chain began")
    links = hmac.compare_digest(prev, expected)
    verifies = hmac.compare_digest(link_mac(key, prev, row), mac)
    if links and verifies:
        return None
    if verifies:
        return problem("deleted", "the rows this one was chained after are missing")
    if links:
        if following is not None and following["chain_prev"] == expected:
            return problem("inserted", "the next row is chained past this one")
        return problem("modified", "the row does not match its MAC")
    if hmac.compare_digest(link_mac(key, expected, row), mac):
        return problem("modified", "the row's link to the previous row was changed")
    return problem("inserted", "the row neither follows the previous row nor matches its MAC")


async def _rows(
    engine: AsyncEngine, batch: int, total: int, on_progress: Progress | None
) -> AsyncGenerator[Mapping[str, Any]]:
    """Every stored event in id order, read ``batch`` rows per query (keyset paging)."""
    _events = _table()
    columns = [_events.c[name] for name in (*CHAINED_FIELDS, "chain_prev", "chain_mac")]
    after: int | None = None
    done = 0
    while True:
        statement = sa.select(*columns).order_by(_events.c.id).limit(batch)
        if after is not None:
            statement = statement.where(_events.c.id > after)
        async with engine.connect() as conn:
            page: list[Mapping[str, Any]] = [
                dict(row._mapping) for row in await conn.execute(statement)
            ]
        done += len(page)
        if on_progress is not None:
            on_progress(done, max(total, done))
        for row in page:
            yield row
        if len(page) < batch:
            return
        after = page[-1]["id"]
