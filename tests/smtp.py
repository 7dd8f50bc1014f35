"""A real SMTP server on loopback for tests (aiosmtpd on the running loop), and TLS helpers.

``SMTPTestServer`` listens on 127.0.0.1 on a free port, in the test's own event loop,
and records what it receives::

    async with SMTPTestServer() as server:
        await SMTPMailer("127.0.0.1", server.port, sender=..., security="none").send(m)
        [email] = await server.wait_for(1)

It can offer STARTTLS (``tls_context``, optionally ``require_starttls``), speak
implicit TLS (``implicit_tls``), require AUTH (``credentials``) and answer the first
messages with a failure reply (``fail_first``, ``failure``) to exercise retries.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "Received",
    "SMTPTestServer",
    "closed_port",
    "mail_settings",
    "make_certificate",
    "server_tls_context",
]


@dataclass(frozen=True)
class Received:
    """One accepted message and its envelope."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: list[str]
    over_tls: bool
    login: str | None


class _Handler:
    """aiosmtpd hooks: enforce AUTH, give scripted failures, record what arrives."""

    def __init__(self, owner: SMTPTestServer) -> None:
        self._owner = owner

    async def handle_MAIL(  # noqa: N802 (aiosmtpd's hook name)
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        # Checked here rather than with aiosmtpd's auth_required, which warns when
        # combined with implicit TLS (it only counts STARTTLS as TLS).
        if self._owner.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        owner = self._owner
        owner.attempts += 1
        if owner.attempts <= owner.fail_first:
            return owner.failure
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        # SMTP lines end in CRLF; parse with plain newlines so content compares as text.
        parsed = BytesParser(policy=policy.default).parsebytes(raw.replace(b"\r\n", b"\n"))
        assert isinstance(parsed, EmailMessage)
        transport = server.transport
        auth: object = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        owner.received.append(
            Received(
                message=parsed,
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                over_tls=transport is not None
                and transport.get_extra_info("ssl_object") is not None,
                login=login,
            )
        )
        return "250 Message accepted"


class SMTPTestServer:
    """An aiosmtpd server on 127.0.0.1 (free port) in the running loop; see the module doc.

    Args:
        tls_context: a server context: the server offers STARTTLS with it.
        require_starttls: refuse everything but EHLO/STARTTLS/QUIT before STARTTLS.
        implicit_tls: speak TLS from the first byte with ``tls_context`` (no STARTTLS).
        credentials: ``(username, password)`` the server requires (AUTH PLAIN/LOGIN,
            only over TLS) before it takes a message.
        fail_first: answer ``failure`` to the DATA of this many first messages.
        failure: the reply for those, a 451 (transient) unless told otherwise.
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        credentials: tuple[str, str] | None = None,
        fail_first: int = 0,
        failure: str = "451 4.3.0 Try again later",
    ) -> None:
        if (require_starttls or implicit_tls) and tls_context is None:
            raise ValueError("require_starttls and implicit_tls need a tls_context")
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.implicit_tls = implicit_tls
        self.credentials = credentials
        self.fail_first = fail_first
        self.failure = failure
        self.attempts = 0
        self.received: list[Received] = []
        self.host = "127.0.0.1"
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def messages(self) -> list[EmailMessage]:
        """The accepted messages, parsed, in arrival order."""
        return [item.message for item in self.received]

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        handler = _Handler(self)
        kwargs: dict[str, Any] = {
            "hostname": "localhost",  # skip socket.getfqdn(), which may query DNS
            "loop": loop,
            "enable_SMTPUTF8": True,
            # Implicit TLS is TLS, though aiosmtpd only counts STARTTLS as such.
            "auth_require_tls": not self.implicit_tls,
        }
        if self.tls_context is not None and not self.implicit_tls:
            kwargs["tls_context"] = self.tls_context
            kwargs["require_starttls"] = self.require_starttls
        if self.credentials is not None:
            kwargs["authenticator"] = self._authenticate
        self._server = await loop.create_server(
            lambda: SMTP(handler, **kwargs),
            host=self.host,
            port=0,
            ssl=self.tls_context if self.implicit_tls else None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> SMTPTestServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def wait_for(
        self,
        count: int,
        timeout: float = 5.0,  # noqa: ASYNC109 (a polling budget, named in the assertion)
    ) -> list[EmailMessage]:
        """The messages once at least ``count`` have arrived; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"expected {count} message(s) on the test SMTP server within "
                    f"{timeout}s, got {len(self.received)} ({self.attempts} DATA attempt(s))"
                )
            await asyncio.sleep(0.01)
        return self.messages

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        assert self.credentials is not None
        username, password = self.credentials
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == username.encode()
            and auth_data.password == password.encode()
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


def make_certificate(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` and 127.0.0.1, as PEM files in ``folder``.

    Returns ``(cert_path, key_path)``. The certificate is its own trust anchor: give
    ``cert_path`` to a client as its CA file.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path = folder / f"{name}.crt"
    key_path = folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server-side TLS context presenting the given certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    return context


def closed_port() -> int:
    """A loopback port nothing listens on (bound then released), for refused connections."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def mail_settings(server: SMTPTestServer, **overrides: Any) -> dict[str, Any]:
    """Settings that send the service's email to ``server`` over plain SMTP (loopback)."""
    return {
        "mail_backend": "smtp",
        "smtp_host": server.host,
        "smtp_port": server.port,
        "smtp_security": "none",
        **overrides,
    }
