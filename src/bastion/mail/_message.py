"""The message, the error, the mailer protocol, and the RFC 5322 rendering they share."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from typing import Literal, Protocol

from bastion.errors import BastionError

__all__ = [
    "MailError",
    "MailStage",
    "Mailer",
    "Message",
    "envelope_sender",
    "recipient_tag",
    "render",
]

MailStage = Literal["connect", "tls", "auth", "send", "outbox", "queue"]

# A kind names a file in the outbox and a field in logs: keep it a plain short label.
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Per-process key: log tags correlate lines of one run, but a guessed address cannot be
# confirmed offline against the logs (an unkeyed hash of an email is a dictionary away).
_TAG_KEY = secrets.token_bytes(32)


def recipient_tag(address: str) -> str:
    """A short keyed hash of ``address`` (case-insensitive) for logs, never the address.

    The key is random per process, so the same address gives the same tag within one
    run and an unrelated one after a restart.
    """
    digest = hmac.new(_TAG_KEY, address.strip().casefold().encode(), hashlib.sha256)
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class Message:
    """One account email to one recipient.

    ``text`` holds one-time links, which are secrets: it is rendered into the email
    and nowhere else (not in logs, events, reprs or error messages). ``kind`` is the
    short label logs and events use instead, for example ``"verify-email"``.

    Raises:
        ValueError: ``to`` or ``subject`` holds a line break (header injection), ``to``
            is not one bare address, or ``kind`` is not a short label of letters,
            digits, ``-``, ``_`` and ``.`` starting with a letter or digit.
    """

    to: str
    subject: str
    text: str
    kind: str

    def __post_init__(self) -> None:
        for name, value in (("to", self.to), ("subject", self.subject)):
            if "\r" in value or "\n" in value:
                raise ValueError(f"Message.{name} must not contain line breaks")
        if "@" not in self.to or any(c in self.to for c in ",;<>"):
            raise ValueError("Message.to must be one bare email address")
        if not _KIND.fullmatch(self.kind):
            raise ValueError(f"Message.kind is not a short label: {self.kind!r}")

    def __repr__(self) -> str:
        return (
            f"Message(kind={self.kind!r}, to=<{recipient_tag(self.to)}>, "
            f"subject={self.subject!r}, text=<{len(self.text)} chars>)"
        )


class MailError(BastionError):
    """A message could not be handed over to the mail system.

    The text says what failed (``stage``: connect, tls, auth, send, outbox, queue) and
    never holds the message body or a password.

    Attributes:
        transient: a retry may succeed (a 4xx reply, a lost or refused connection, a
            timeout); ``False`` for permanent failures (a 5xx reply, an untrusted
            certificate, a server without STARTTLS, rejected credentials).
        stage: the step that failed.
        reply_code: the SMTP reply code, when the server gave one (``code`` is the
            error's problem slug, as for every :class:`~bastion.errors.BastionError`).
    """

    def __init__(
        self,
        text: str,
        *,
        transient: bool = False,
        stage: MailStage = "send",
        reply_code: int | None = None,
    ) -> None:
        super().__init__(text)
        self.transient = transient
        self.stage: MailStage = stage
        self.reply_code = reply_code

    def __repr__(self) -> str:
        return (
            f"MailError({self.args[0]!r}, transient={self.transient}, "
            f"stage={self.stage!r}, reply_code={self.reply_code})"
        )


class Mailer(Protocol):
    """Hands messages over to a mail system; :class:`~bastion.mail.Postman` drives one."""

    async def send(self, message: Message) -> None:
        """Hand ``message`` over. Raises :class:`MailError` when that fails."""
        ...

    async def aclose(self) -> None:
        """Release whatever the mailer holds; no :meth:`send` follows."""
        ...


def envelope_sender(sender: str) -> str:
    """The bare address of ``sender`` (``"Bastion <no-reply@x.org>"`` -> ``no-reply@x.org``).

    Raises:
        ValueError: ``sender`` is not one email address, or holds a line break.
    """
    if "\r" in sender or "\n" in sender:
        raise ValueError("sender must not contain line breaks")
    address = parseaddr(sender)[1]
    if "@" not in address:
        raise ValueError(f"sender is not an email address: {sender!r}")
    return address


def render(message: Message, *, sender: str, now: datetime | None = None) -> EmailMessage:
    """The RFC 5322 form of ``message``: From, To, Subject, Date, Message-ID, UTF-8 text.

    The body is quoted-printable UTF-8, so it passes 7-bit relays and stays readable
    (links included) in a raw ``.eml`` file.
    """
    domain = Address(addr_spec=envelope_sender(sender)).domain
    email = EmailMessage()
    email["From"] = sender
    email["To"] = message.to
    email["Subject"] = message.subject
    email["Date"] = format_datetime(now or datetime.now(UTC))
    email["Message-ID"] = make_msgid(domain=domain)
    email.set_content(message.text, charset="utf-8", cte="quoted-printable")
    return email
