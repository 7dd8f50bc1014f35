"""Account email: SMTP against a real loopback server, the outbox, background delivery."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import stat
from collections.abc import AsyncIterator, Awaitable, Callable
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from bastion.mail import MailError, Message, OutboxMailer, Postman, SMTPMailer
from tests.smtp import SMTPTestServer, closed_port, make_certificate, server_tls_context

SENDER = "Bastion <no-reply@bastion.test>"
LINK = "https://bastion.test/verify#token=Zk9vYmFyLXNlY3JldC10b2tlbg"
BODY = f"Grüße, Zoë! Confirm your address: {LINK}\n\nThis link expires in 24 hours — ✓."
PASSWORD = "s3cret-Pässword"


def message(to: str = "alice@example.org", kind: str = "verify-email") -> Message:
    return Message(to=to, subject="Vérifiez votre adresse", text=BODY, kind=kind)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def plain_server() -> AsyncIterator[SMTPTestServer]:
    async with SMTPTestServer() as server:
        yield server


@pytest.fixture
async def starttls_server(certificate: tuple[Path, Path]) -> AsyncIterator[SMTPTestServer]:
    context = server_tls_context(*certificate)
    async with SMTPTestServer(tls_context=context, require_starttls=True) as server:
        yield server


def plain_mailer(server: SMTPTestServer) -> SMTPMailer:
    return SMTPMailer(server.host, server.port, sender=SENDER, security="none", timeout=5)


class Failures:
    """An ``on_failure`` hook that records what it is told."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, BaseException]] = []

    def __call__(self, kind: str, error: BaseException) -> None:
        self.calls.append((kind, error))


def returning(value: Message | None) -> Callable[[], Awaitable[Message | None]]:
    async def job() -> Message | None:
        return value

    return job


# SMTPMailer


async def test_plain_smtp_delivers_headers_and_utf8_body(plain_server: SMTPTestServer) -> None:
    await plain_mailer(plain_server).send(message())

    [email] = await plain_server.wait_for(1)
    assert email["Subject"] == "Vérifiez votre adresse"
    assert email["From"] == SENDER
    assert email["To"] == "alice@example.org"
    assert email["Date"] is not None
    assert email["Message-ID"].endswith("@bastion.test>")
    assert email.get_content().rstrip("\n") == BODY
    assert plain_server.received[0].mail_from == "no-reply@bastion.test"
    assert plain_server.received[0].rcpt_tos == ["alice@example.org"]


async def test_starttls_with_the_ca_file_delivers_over_tls(
    starttls_server: SMTPTestServer, certificate: tuple[Path, Path]
) -> None:
    mailer = SMTPMailer(
        "127.0.0.1", starttls_server.port, sender=SENDER, ca_file=certificate[0], timeout=5
    )

    await mailer.send(message())

    [email] = await starttls_server.wait_for(1)
    assert email.get_content().rstrip("\n") == BODY
    assert starttls_server.received[0].over_tls


async def test_starttls_without_the_ca_file_fails_on_the_untrusted_certificate(
    starttls_server: SMTPTestServer,
) -> None:
    mailer = SMTPMailer("127.0.0.1", starttls_server.port, sender=SENDER, timeout=5)

    with pytest.raises(MailError) as caught:
        await mailer.send(message())

    assert caught.value.stage == "tls"
    assert not caught.value.transient
    assert "certificate" in str(caught.value)
    assert starttls_server.received == []


async def test_implicit_tls_delivers(certificate: tuple[Path, Path]) -> None:
    context = server_tls_context(*certificate)
    async with SMTPTestServer(tls_context=context, implicit_tls=True) as server:
        mailer = SMTPMailer(
            "127.0.0.1",
            server.port,
            sender=SENDER,
            security="tls",
            ca_file=certificate[0],
            timeout=5,
        )

        await mailer.send(message())

        [email] = await server.wait_for(1)
    assert email["Subject"] == "Vérifiez votre adresse"
    assert server.received[0].over_tls


async def test_auth_with_the_right_credentials_delivers(certificate: tuple[Path, Path]) -> None:
    context = server_tls_context(*certificate)
    async with SMTPTestServer(tls_context=context, credentials=("mailer", PASSWORD)) as server:
        mailer = SMTPMailer(
            "127.0.0.1",
            server.port,
            sender=SENDER,
            username="mailer",
            password=PASSWORD,
            ca_file=certificate[0],
            timeout=5,
        )

        await mailer.send(message())

        await server.wait_for(1)
    assert server.received[0].login == "mailer"


async def test_auth_with_a_wrong_password_is_permanent_and_never_shows_it(
    certificate: tuple[Path, Path],
) -> None:
    context = server_tls_context(*certificate)
    wrong = "wr0ng-Pässword-123"
    async with SMTPTestServer(tls_context=context, credentials=("mailer", PASSWORD)) as server:
        mailer = SMTPMailer(
            "127.0.0.1",
            server.port,
            sender=SENDER,
            username="mailer",
            password=wrong,
            ca_file=certificate[0],
            timeout=5,
        )

        with pytest.raises(MailError) as caught:
            await mailer.send(message())

    assert caught.value.stage == "auth"
    assert caught.value.reply_code == 535
    assert not caught.value.transient
    for text in (str(caught.value), repr(caught.value), repr(mailer)):
        assert wrong not in text
        assert PASSWORD not in text
    assert server.received == []


async def test_starttls_required_but_not_offered_refuses_to_send_in_clear(
    plain_server: SMTPTestServer,
) -> None:
    mailer = SMTPMailer("127.0.0.1", plain_server.port, sender=SENDER, timeout=5)

    with pytest.raises(MailError) as caught:
        await mailer.send(message())

    assert caught.value.stage == "tls"
    assert not caught.value.transient
    assert "STARTTLS" in str(caught.value)
    assert plain_server.attempts == 0


async def test_connection_refused_is_transient() -> None:
    mailer = SMTPMailer("127.0.0.1", closed_port(), sender=SENDER, security="none", timeout=5)

    with pytest.raises(MailError) as caught:
        await mailer.send(message())

    assert caught.value.stage == "connect"
    assert caught.value.transient


async def test_a_rejected_message_error_does_not_contain_the_body() -> None:
    async with SMTPTestServer(fail_first=1, failure="554 5.6.0 Rejected") as server:
        with pytest.raises(MailError) as caught:
            await plain_mailer(server).send(message())

    assert caught.value.reply_code == 554
    assert not caught.value.transient
    assert LINK not in str(caught.value)
    assert LINK not in repr(caught.value)


async def test_a_server_reply_quoting_the_address_is_masked() -> None:
    failure = "550 5.1.1 <alice@example.org>: Recipient address rejected"
    async with SMTPTestServer(fail_first=1, failure=failure) as server:
        with pytest.raises(MailError) as caught:
            await plain_mailer(server).send(message())

    assert "alice@example.org" not in str(caught.value)
    assert "Recipient address rejected" in str(caught.value)


# Message


def test_message_repr_hides_the_body_and_the_address() -> None:
    text = repr(message())

    assert LINK not in text
    assert "alice@example.org" not in text
    assert "verify-email" in text


@pytest.mark.parametrize(
    ("to", "subject", "kind"),
    [
        ("alice@example.org\r\nBcc: eve@example.org", "Hi", "verify-email"),
        ("alice@example.org", "Hi\nBcc: eve@example.org", "verify-email"),
        ("alice@example.org, eve@example.org", "Hi", "verify-email"),
        ("alice@example.org", "Hi", "../../etc/passwd"),
    ],
)
def test_message_refuses_header_injection_and_odd_kinds(to: str, subject: str, kind: str) -> None:
    with pytest.raises(ValueError, match=r"Message\."):
        Message(to=to, subject=subject, text=BODY, kind=kind)


# OutboxMailer


async def test_outbox_writes_a_private_eml_file_and_echoes_the_body(tmp_path: Path) -> None:
    folder = tmp_path / "outbox"
    console = io.StringIO()

    await OutboxMailer(folder, sender=SENDER, console=console).send(message())

    [path] = folder.iterdir()
    assert re.fullmatch(r"\d{8}T\d{6}\.\d{6}Z-verify-email-[0-9a-f]{8}\.eml", path.name)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    email = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert email["To"] == "alice@example.org"
    assert email["Subject"] == "Vérifiez votre adresse"
    assert email["Message-ID"] is not None
    assert email.get_content().rstrip("\n") == BODY
    assert "alice@example.org" in console.getvalue()
    assert LINK in console.getvalue()


async def test_outbox_that_cannot_be_written_raises_mail_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    mailer = OutboxMailer(blocker / "outbox", sender=SENDER)

    with pytest.raises(MailError) as caught:
        await mailer.send(message())

    assert caught.value.stage == "outbox"


# Postman


async def test_post_returns_at_once_and_the_message_arrives_after_drain(
    plain_server: SMTPTestServer,
) -> None:
    postman = Postman(plain_mailer(plain_server), retry_delays=())

    posted = postman.post(returning(message()), kind="verify-email")
    pending, attempts = postman.pending, plain_server.attempts
    await postman.drain()

    assert posted
    assert (pending, attempts) == (1, 0)
    assert postman.pending == 0
    assert len(plain_server.messages) == 1


async def test_a_job_returning_none_sends_nothing(plain_server: SMTPTestServer) -> None:
    failures = Failures()
    postman = Postman(plain_mailer(plain_server), on_failure=failures)

    postman.post(returning(None), kind="password-reset")
    await postman.drain()

    assert plain_server.attempts == 0
    assert failures.calls == []


async def test_a_failing_job_is_reported_and_the_next_job_still_goes(
    plain_server: SMTPTestServer,
) -> None:
    failures = Failures()
    postman = Postman(plain_mailer(plain_server), retry_delays=(), on_failure=failures)

    async def broken() -> Message | None:
        raise LookupError("account store unavailable")

    postman.post(broken, kind="password-reset")
    postman.post(returning(message()), kind="verify-email")
    await postman.drain()

    assert [(kind, type(error)) for kind, error in failures.calls] == [
        ("password-reset", LookupError)
    ]
    assert len(plain_server.messages) == 1


async def test_a_transient_failure_is_retried_and_delivered() -> None:
    failures = Failures()
    async with SMTPTestServer(fail_first=1) as server:
        postman = Postman(plain_mailer(server), retry_delays=(0, 0), on_failure=failures)

        postman.post(returning(message()), kind="verify-email")
        await postman.drain()

    assert server.attempts == 2
    assert len(server.messages) == 1
    assert failures.calls == []


async def test_transient_failures_beyond_the_retries_are_reported() -> None:
    failures = Failures()
    async with SMTPTestServer(fail_first=5) as server:
        postman = Postman(plain_mailer(server), retry_delays=(0, 0), on_failure=failures)

        postman.post(returning(message()), kind="verify-email")
        await postman.drain()

    assert server.attempts == 3
    [(kind, error)] = failures.calls
    assert kind == "verify-email"
    assert isinstance(error, MailError)
    assert error.transient


async def test_a_permanent_failure_is_not_retried_and_is_reported() -> None:
    failures = Failures()
    async with SMTPTestServer(fail_first=1, failure="550 5.1.1 No such user") as server:
        postman = Postman(plain_mailer(server), retry_delays=(0, 0), on_failure=failures)

        postman.post(returning(message()), kind="unlock")
        await postman.drain()

    assert server.attempts == 1
    [(kind, error)] = failures.calls
    assert kind == "unlock"
    assert isinstance(error, MailError)
    assert not error.transient
    assert error.reply_code == 550


async def test_post_beyond_max_pending_is_refused_and_reported(
    plain_server: SMTPTestServer,
) -> None:
    failures = Failures()
    release = asyncio.Event()
    postman = Postman(plain_mailer(plain_server), max_pending=1, on_failure=failures)

    async def waiting() -> Message | None:
        await release.wait()
        return None

    first = postman.post(waiting, kind="verify-email")
    second = postman.post(returning(message()), kind="password-reset")
    release.set()
    await postman.drain()

    assert first
    assert not second
    [(kind, error)] = failures.calls
    assert kind == "password-reset"
    assert isinstance(error, MailError)
    assert plain_server.attempts == 0


async def test_aclose_cancels_what_is_left_and_reports_it(plain_server: SMTPTestServer) -> None:
    failures = Failures()
    postman = Postman(plain_mailer(plain_server), on_failure=failures)

    async def stuck() -> Message | None:
        await asyncio.Event().wait()
        return None

    postman.post(stuck, kind="verify-email")
    await postman.aclose(timeout=0.01)

    assert postman.pending == 0
    assert [(kind, type(error)) for kind, error in failures.calls] == [
        ("verify-email", asyncio.CancelledError)
    ]
    assert not postman.post(returning(message()), kind="verify-email")


async def test_logs_never_contain_the_body(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG, logger="bastion.mail")
    async with SMTPTestServer(fail_first=1) as server:
        postman = Postman(plain_mailer(server), retry_delays=(0,))
        postman.post(returning(message()), kind="verify-email")
        reset = message(to="bob@example.org", kind="password-reset")
        postman.post(returning(reset), kind="password-reset")
        await postman.drain()
    outbox = Postman(OutboxMailer(tmp_path, sender=SENDER))
    outbox.post(returning(message()), kind="verify-email")
    await outbox.drain()

    mail_logs = [r for r in caplog.records if r.name == "bastion.mail"]
    assert any(r.levelno == logging.WARNING for r in mail_logs)  # the retry was logged
    assert len(server.messages) == 2
    for record in mail_logs:
        text = record.getMessage()
        assert "verify-email" in text or "password-reset" in text
        assert LINK not in text
        assert "Grüße" not in text
        assert "alice@example.org" not in text
