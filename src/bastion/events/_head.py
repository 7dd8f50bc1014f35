"""The head of the event chain, as published outside the database (the head file).

:class:`ChainHead` names the newest stored event: its number in the log, its row id and
its MAC. The SQL stores write it to :data:`HEAD_FILE` in the data folder after each
committed write; ``bastion events verify`` reads it (:mod:`bastion.events.chain`).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HEAD_FILE", "ChainHead", "read_head", "write_head"]

HEAD_FILE = "event-chain-head.json"  # in the data folder


@dataclass(frozen=True)
class ChainHead:
    """The newest stored event as its writer saw it: its number in the log (``seq``,
    counted from the log's first event, purged ones included), its row id and MAC.

    Published outside the database (the head file, the JSON event lines), it bounds
    what deleting the newest rows can hide: the event it names must still be there.
    """

    seq: int
    mac: str
    row_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "id": self.row_id, "mac": self.mac}


def read_head(path: Path) -> ChainHead | None:
    """The head recorded in ``path``; None when there is no such file.

    Raises ``ValueError`` for a file that is not a head (an edited or broken file must
    not pass for a missing one).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    try:
        seq, mac, row_id = data["seq"], data["mac"], data.get("id")
        if not (
            isinstance(seq, int)
            and seq >= 0
            and isinstance(mac, str)
            and len(mac) == 64
            and (row_id is None or isinstance(row_id, int))
        ):
            raise TypeError
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not an event chain head") from exc
    return ChainHead(seq, mac, row_id)


def write_head(path: Path, head: ChainHead) -> None:
    """Replace ``path`` with ``head`` atomically (a reader sees the old head or the new
    one, never a part), readable by the owner only (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            json.dump(head.as_json(), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
