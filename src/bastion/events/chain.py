"""A tamper-evident chain over the stored security events, and its verification.

Each event a SQL event store writes with a chain key carries two hex values:

- ``chain_prev``: the ``chain_mac`` of the event stored before it (:data:`GENESIS`, 64
  zeros, for the first chained event);
- ``chain_mac``: ``HMAC-SHA256(key, chain_prev || canonical(event))``, where
  :func:`canonical` is sorted-key compact JSON of every stored field, the row id included.

The key is derived from the signing key file (``KeySet.derive_secret("bastion event
chain")``), which is kept outside the database: someone who can write the database but
not read the key file cannot make a row that verifies (OWASP Logging Cheat Sheet,
"protect log integrity"; ASVS V7.3.3 / V16.4.2, logs protected from modification).

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

What a chain alone cannot show: deleting the *last* rows (the rest is still a valid
chain) and a rewrite by someone holding the key file. Rows without chain values before
the first chained row (written before the chain existed) are counted as unchained.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "CHAINED_FIELDS",
    "GENESIS",
    "ChainProblem",
    "ChainReport",
    "ProblemKind",
    "canonical",
    "link_mac",
    "verify_chain",
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
ProblemKind = Literal["modified", "deleted", "inserted"]
Progress = Callable[[int, int], None]

_BATCH = 1000


def _table() -> sa.Table:
    # Imported on use: the SQL event store imports this module to chain what it writes.
    from bastion.stores.sql.tables import SecurityEventRow

    table: sa.Table = SecurityEventRow.__table__  # type: ignore[attr-defined]
    return table


def canonical(row: Mapping[str, Any]) -> bytes:
    """The deterministic serialization of a stored event: sorted-key compact ASCII JSON of
    :data:`CHAINED_FIELDS`, the time as UTC with microseconds (what both backends keep)."""
    values = {name: row[name] for name in CHAINED_FIELDS}
    moment: datetime = values["timestamp"]
    values["timestamp"] = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
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
class ChainReport:
    """``events`` chained rows verified before ``problem`` (all of them when None);
    ``unchained`` rows before the first chained row were skipped."""

    events: int
    unchained: int
    problem: ChainProblem | None = None

    @property
    def intact(self) -> bool:
        return self.problem is None


async def verify_chain(
    source: AsyncEngine | Any,
    key: bytes,
    *,
    on_progress: Progress | None = None,
    batch: int = _BATCH,
) -> ChainReport:
    """Verify the chain of the stored events with ``key``; stop at the first problem.

    ``source`` is an engine or a SQL event store (its ``engine``). Rows are read in id
    order, ``batch`` at a time, so a large log is never held in memory;
    ``on_progress(done, total)`` is called after each batch with the rows read so far
    and the row count at the start.
    """
    engine: AsyncEngine = source if isinstance(source, AsyncEngine) else source.engine
    count = sa.select(sa.func.count()).select_from(_table())
    async with engine.connect() as conn:
        total = (await conn.execute(count)).scalar_one()
    rows = _rows(engine, batch, total, on_progress)
    chained = unchained = 0
    expected: str | None = None  # None until the first chained row
    current = await anext(rows, None)
    while current is not None:
        following = await anext(rows, None)
        if current["chain_mac"] is None and expected is None:
            unchained += 1
        else:
            problem = _check(current, following, expected or GENESIS, key)
            if problem is not None:
                await rows.aclose()
                return ChainReport(chained, unchained, problem)
            chained += 1
            expected = current["chain_mac"]
        current = following
    return ChainReport(chained, unchained)


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
