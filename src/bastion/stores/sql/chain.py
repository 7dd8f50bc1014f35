"""Appending to the tamper-evident event chain, and publishing its head.

:class:`EventChain` is the one writer of the chain for a process: every SQL store that
stores events (the event store, the account store's changes, a purge) appends through
it. An append holds the chain's lock, links each new row to the MAC of the row before
(:func:`bastion.events.chain.link_mac`) and numbers it: ``seq`` counts the log's events
from its first one, purged ones included. Once the transaction has committed, the store
calls :meth:`EventChain.committed` and the head (the newest event's number, row id and
MAC) is written to the head file in the data folder and shown in each JSON event line:
outside the database, so that deleting the newest rows, or all of them, shows
(``bastion events verify``).

The number continues from the head this process knows (the head file at start), not
from whatever the database holds now: if the newest rows were deleted, the next events
keep their true numbers, and verification finds the ones missing before them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bastion.events.chain import GENESIS, ChainHead, link_mac, read_head, write_head
from bastion.stores.sql.tables import SecurityEventCheckpointRow, SecurityEventRow

__all__ = ["CHAIN_LOCK", "EventChain", "lock_chain"]

_logger = logging.getLogger("bastion.events")

_events = SecurityEventRow.__table__  # type: ignore[attr-defined]
_checkpoints = SecurityEventCheckpointRow.__table__  # type: ignore[attr-defined]

# The PostgreSQL advisory lock that serializes chained appends (any constant the
# application uses for nothing else).
CHAIN_LOCK = int.from_bytes(b"bastion\x07", "big")


async def lock_chain(conn: Any) -> None:
    """Hold the chain until the transaction ends: PostgreSQL's transaction-scoped advisory
    lock (taken again by the same transaction, it is the same lock); on SQLite the
    transaction began with ``BEGIN IMMEDIATE`` and holds the write lock already."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(CHAIN_LOCK)))


class EventChain:
    """The chain's key, and the head this process last committed (or read at start)."""

    def __init__(self, key: bytes, *, head_file: Path | None = None) -> None:
        self.key = key
        self._head_file = head_file
        self._head: ChainHead | None = None
        self._loaded = head_file is None
        self._written = 0  # the seq of the head in the file
        self._file_lock = threading.Lock()
        self._failing = False

    @property
    def head(self) -> ChainHead | None:
        """The newest head this process committed (or found in the head file)."""
        return self._head

    async def append(self, conn: Any, rows: list[dict[str, Any]]) -> ChainHead:
        """Insert ``rows`` (stored events' columns) chained; the head they make.

        Two writers must not both link to the same last row (a fork): the chain's lock is
        taken before the last MAC is read (SQLite callers begin ``BEGIN IMMEDIATE``).
        """
        await lock_chain(conn)
        last = (
            await conn.execute(
                sa.select(_events.c.id, _events.c.chain_mac)
                .where(_events.c.chain_mac.is_not(None))
                .order_by(_events.c.id.desc())
                .limit(1)
            )
        ).first()
        seq = await self._seq_of(conn, last)
        prev = last.chain_mac if last is not None else GENESIS
        insert = _events.insert().returning(_events.c.id, sort_by_parameter_order=True)
        ids = (await conn.execute(insert, rows)).scalars().all()
        links = []
        for row, row_id in zip(rows, ids, strict=True):
            mac = link_mac(self.key, prev, {**row, "id": row_id})
            links.append({"row_id": row_id, "prev": prev, "mac": mac})
            prev = mac
        link = (
            _events.update()
            .where(_events.c.id == sa.bindparam("row_id"))
            .values(chain_prev=sa.bindparam("prev"), chain_mac=sa.bindparam("mac"))
        )
        await conn.execute(link, links)
        return ChainHead(seq + len(rows), prev, ids[-1])

    async def committed(self, head: ChainHead) -> None:
        """Publish ``head`` after its transaction committed: the newest head of this
        process, and the head file (atomically, mode 0600). A head file that cannot be
        written is logged, never raised: the events are stored."""
        if self._head is not None and head.seq <= self._head.seq:
            return  # a later batch committed first
        self._head = head
        if self._head_file is None:
            return
        try:
            await asyncio.to_thread(self._write, self._head_file, head)
        except OSError:
            if not self._failing:  # once until it works again, not once a write
                _logger.exception("event chain head file %s not written", self._head_file)
            self._failing = True
        else:
            self._failing = False

    def _write(self, path: Path, head: ChainHead) -> None:
        with self._file_lock:
            if head.seq <= self._written:
                return
            write_head(path, head)
            self._written = head.seq

    def _known(self) -> ChainHead | None:
        if not self._loaded:
            self._loaded = True
            assert self._head_file is not None
            try:
                self._head = read_head(self._head_file)
            except (ValueError, OSError):
                _logger.exception("event chain head file %s unreadable", self._head_file)
            if self._head is not None:
                self._written = self._head.seq
        return self._head

    async def _seq_of(self, conn: Any, last: Any) -> int:
        """The number of the newest chained row ``last`` (of the rows stored, when None).

        From the known head: its number plus the rows stored after it. Counted from the
        log's start (the checkpoints' purged rows plus the rows kept) only without a head,
        or when a purge removed the head's row; the head file makes that rare.
        """
        known = self._known()
        newest_purge = sa.select(sa.func.max(_checkpoints.c.through_id))
        through = (await conn.execute(newest_purge)).scalar()
        purged_head = known is not None and through is not None and through >= (known.row_id or 0)
        if known is None or known.row_id is None or purged_head:
            return await _counted(conn, last, through)
        if last is None or last.id < known.row_id:
            _logger.error(
                "security events after row %s (event %d of the chain) are missing from the "
                "database: they were deleted; the chain goes on from event %d",
                known.row_id,
                known.seq,
                known.seq,
            )
            return known.seq
        after = sa.select(sa.func.count()).where(
            _events.c.id > known.row_id, _events.c.id <= last.id
        )
        return known.seq + int((await conn.execute(after)).scalar_one())


async def _counted(conn: Any, last: Any, through: int | None) -> int:
    """The purged rows and the kept rows up to ``last``: a row a purge removed in this
    same transaction (not yet deleted) is counted once."""
    total = sa.select(sa.func.coalesce(sa.func.sum(_checkpoints.c.purged), 0))
    purged = (await conn.execute(total)).scalar_one()
    kept = sa.select(sa.func.count()).select_from(_events)
    if last is not None:
        kept = kept.where(_events.c.id <= last.id)
    if through is not None:
        kept = kept.where(_events.c.id > through)
    return int(purged) + int((await conn.execute(kept)).scalar_one())
