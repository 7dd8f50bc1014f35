"""The production mailer: SMTP submission with aiosmtplib, certificates always verified."""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
from pathlib import Path
from typing import Literal, NoReturn

try:
    import aiosmtplib
except ModuleNotFoundError:  # the smtp extra is not installed: SMTPMailer() says so
    aiosmtplib = None  # type: ignore[assignment]

from bastion._extras import require
from bastion.mail._message import (
    MailError,
    MailStage,
    Message,
    envelope_sender,
    recipient_tag,
    render,
)

__all__ = ["SMTPMailer", "Security"]

Security = Literal["starttls", "tls", "none"]

_logger = logging.getLogger("bastion.mail")


class SMTPMailer:
    """Submits each message to an SMTP server over a fresh connection.

    ``security`` chooses the transport:

    * ``"tls"``: implicit TLS from the first byte (port 465). RFC 8314 (§3, §3.3)
      prefers it to STARTTLS for submission: nothing travels in clear text, and there
      is no upgrade for an attacker to strip.
    * ``"starttls"`` (the default, port 587): STARTTLS is *required* (RFC 3207). A
      server that does not offer it is a failure, never a silent fall back to clear
      text: deleting ``250-STARTTLS`` from the reply is the downgrade attack RFC 3207
      §6 warns of, and requiring TLS is its defence.
    * ``"none"``: clear text, for a loopback development relay only; the caller's
      configuration check refuses it in production.

    TLS always verifies the server's certificate and name against the system trust
    store, or only ``ca_file`` when one is given (a private CA, a test certificate).
    There is no switch to turn verification off. The session logs in only when
    ``username`` is set, after TLS is up (in clear text with ``"none"``: loopback
    only). ``timeout`` (seconds) bounds each network step.

    The password is kept out of ``repr`` and every error text.

    Raises:
        ValueError: ``sender`` is not one email address, ``security`` is unknown, or a
            password is given without a username.
        OSError, ssl.SSLError: ``ca_file`` cannot be read as PEM certificates.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        sender: str,
        security: Security = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        ca_file: Path | None = None,
    ) -> None:
        require("smtp", "BASTION_MAIL_BACKEND", "the smtp mail backend")
        if security not in ("starttls", "tls", "none"):
            raise ValueError(f"unknown SMTP security mode: {security!r}")
        if password is not None and username is None:
            raise ValueError("an SMTP password needs a username")
        self._host = host
        self._port = port
        self._sender = sender
        self._envelope_sender = envelope_sender(sender)
        self._security: Security = security
        self._username = username
        self._password = password
        self._timeout = timeout
        self._tls_context: ssl.SSLContext | None = None
        if security != "none":
            context = ssl.create_default_context(
                cafile=str(ca_file) if ca_file is not None else None
            )
            context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996, RFC 8314 §4.1
            self._tls_context = context

    def __repr__(self) -> str:
        return (
            f"SMTPMailer(host={self._host!r}, port={self._port}, security={self._security!r}, "
            f"sender={self._sender!r}, username={self._username!r})"
        )

    async def send(self, message: Message) -> None:
        """Connect, secure, log in, submit ``message``, and disconnect.

        Raises:
            MailError: with ``stage`` connect, tls, auth or send, and ``transient`` set
                for a 4xx reply or a connection problem, cleared for a 5xx reply, an
                untrusted certificate, a missing STARTTLS or refused credentials.
        """
        email = render(message, sender=self._sender)
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            use_tls=self._security == "tls",
            start_tls=False,  # done by hand below, so a missing STARTTLS is an error
            tls_context=self._tls_context,
            timeout=self._timeout,
        )
        stage: MailStage = "connect"  # implicit TLS failures are told apart in _fail
        try:
            await client.connect()
            if self._security == "starttls":
                stage = "tls"
                await client.ehlo()
                if not client.supports_extension("starttls"):
                    raise MailError(
                        f"{self._where()}: the server does not offer STARTTLS, which is"
                        " required (RFC 3207); not sending in clear text",
                        transient=False,
                        stage="tls",
                    )
                await client.starttls()
            if self._username is not None:
                stage = "auth"
                await client.login(self._username, self._password or "")
            stage = "send"
            await client.send_message(email, sender=self._envelope_sender, recipients=[message.to])
        except MailError:
            raise
        except (aiosmtplib.SMTPException, OSError, ValueError) as exc:
            self._fail(stage, exc)
        finally:
            await _close(client)
        _logger.info("mail sent kind=%s to=%s", message.kind, recipient_tag(message.to))

    async def aclose(self) -> None:
        """Nothing to release: every send closes its own connection."""

    def _where(self) -> str:
        return f"SMTP {self._host}:{self._port}"

    def _fail(self, stage: MailStage, exc: BaseException) -> NoReturn:
        code = _reply_code(exc)
        if code is not None:
            transient = 400 <= code < 500
            detail = f"server replied {code} {_reply_text(exc)}"
        elif _is_tls_failure(exc):
            stage, transient = "tls", False
            detail = f"TLS failed: {_short(_tls_reason(exc))}"
        elif isinstance(exc, OSError):  # refused, reset, timed out (aiosmtplib's too)
            transient = True
            detail = f"{type(exc).__name__}: {_short(str(exc))}"
        else:  # an extension the server lacks, an address it cannot take
            transient = False
            detail = f"{type(exc).__name__}: {_short(str(exc))}"
        what = {
            "connect": "could not connect",
            "tls": "could not secure the connection",
            "auth": "login refused",
            "send": "message refused",
        }.get(stage, "failed")
        kind = "transient" if transient else "permanent"
        text = self._scrub(f"{self._where()}: {what} ({kind}): {detail}")
        raise MailError(text, transient=transient, stage=stage, reply_code=code) from exc

    def _scrub(self, text: str) -> str:
        if self._password:
            text = text.replace(self._password, "***")
        return text


def _reply_code(exc: BaseException) -> int | None:
    """The SMTP reply code behind ``exc`` (the worst one, for refused recipients)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return max(refused.code for refused in exc.recipients)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and exc.code > 0:
        return exc.code
    return None


def _reply_text(exc: BaseException) -> str:
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = max(exc.recipients, key=lambda refused: refused.code)
        return f"for the recipient: {_short(refused.message)}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _short(exc.message)
    return ""


def _is_tls_failure(exc: BaseException) -> bool:
    """An ``ssl`` error in ``exc`` or its causes (aiosmtplib wraps implicit TLS's)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__
    return False


def _tls_reason(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"certificate not trusted ({seen.verify_message})"
        if isinstance(seen, ssl.SSLError):
            return seen.reason or str(seen)
        seen = seen.__cause__
    return str(exc)


_ADDRESS = re.compile(r"[^\s<>@]+@[^\s<>@]+")


def _short(text: str, limit: int = 200) -> str:
    # A server reply may quote the recipient ("550 <bob@x> unknown"): no address in logs.
    text = _ADDRESS.sub("<address>", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


async def _close(client: aiosmtplib.SMTP) -> None:
    """QUIT politely when the session is still up, and drop the connection regardless."""
    if client.is_connected:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()
    client.close()
