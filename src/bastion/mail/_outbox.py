"""The development mailer: ``.eml`` files in a private folder, and a note on the console."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import TextIO

from bastion.mail._message import MailError, Message, envelope_sender, recipient_tag, render

__all__ = ["OutboxMailer"]

_logger = logging.getLogger("bastion.mail")
_RULE = "-" * 72


class OutboxMailer:
    """Writes each message as an RFC 5322 ``.eml`` file instead of sending it.

    Files are named ``<UTC timestamp>-<kind>-<random>.eml`` (they sort by time) and
    open in any mail client. The folder is created with mode 0700 when missing and
    each file with mode 0600: the bodies hold one-time links. When ``console`` is
    given, a short block with the recipient, subject and body is printed to it, so a
    developer can follow the link. Disk writes run in a worker thread, off the loop.

    Raises:
        ValueError: ``sender`` is not one email address.
    """

    def __init__(self, folder: Path, *, sender: str, console: TextIO | None = None) -> None:
        envelope_sender(sender)
        self._folder = Path(folder)
        self._sender = sender
        self._console = console

    def __repr__(self) -> str:
        return f"OutboxMailer(folder={str(self._folder)!r}, sender={self._sender!r})"

    @property
    def folder(self) -> Path:
        """Where the ``.eml`` files go."""
        return self._folder

    async def send(self, message: Message) -> None:
        """Write ``message`` to the outbox folder (and the console, if any).

        Raises:
            MailError: the folder or the file could not be written (``stage="outbox"``).
        """
        now = datetime.now(UTC)
        email = render(message, sender=self._sender, now=now)
        name = f"{now:%Y%m%dT%H%M%S.%fZ}-{message.kind}-{secrets.token_hex(4)}.eml"
        try:
            path = await asyncio.to_thread(self._write, name, email, message)
        except OSError as exc:
            raise MailError(
                f"could not write to the outbox {self._folder}: {type(exc).__name__}"
                f" ({exc.strerror or 'error'})",
                transient=False,
                stage="outbox",
            ) from exc
        _logger.info(
            "mail written to outbox kind=%s to=%s file=%s",
            message.kind,
            recipient_tag(message.to),
            path.name,
        )

    async def aclose(self) -> None:
        """Nothing to release: every send finishes its file."""

    def _write(self, name: str, email: EmailMessage, message: Message) -> Path:
        try:
            self._folder.mkdir(mode=0o700, parents=True)
        except FileExistsError:
            pass
        else:
            os.chmod(self._folder, 0o700)  # whatever the umask made of it
        path = self._folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as file:
            file.write(email.as_bytes())
        if self._console is not None:
            self._console.write(
                f"{_RULE}\n"
                f"Mail ({message.kind}) to {message.to}\n"
                f"Subject: {message.subject}\n"
                f"Saved as {path}\n\n"
                f"{message.text.rstrip()}\n"
                f"{_RULE}\n"
            )
            self._console.flush()
        return path
