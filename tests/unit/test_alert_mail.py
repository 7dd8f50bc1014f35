"""Alert emails: what each says, to whom, and that an alert key cannot reach a header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from bastion.alerts import Alert, AlertMail
from bastion.mail import Message, Postman
from bastion.runtime import open_security
from tests.conftest import make_settings

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


class Kept:
    """A mailer that keeps what it is handed (the Postman's real retries around it)."""

    def __init__(self) -> None:
        self.sent: list[Message] = []

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    async def aclose(self) -> None:
        return None


def alert(key: str = "198.51.100.66") -> Alert:
    return Alert(
        id=uuid4(),
        rule="auth_failures_from_ip",
        key=key,
        count=10,
        window_seconds=300,
        first_event_at=T0,
        last_event_at=T0 + timedelta(seconds=42),
        severity="high",
        created_at=T0 + timedelta(seconds=42),
    )


async def test_one_message_to_each_recipient() -> None:
    mailer = Kept()
    postman = Postman(mailer)
    mail = AlertMail(postman, ["a@example.com", "b@example.com"], alerts_url="https://x/alerts")
    raised = alert()

    mail.send(raised)
    await postman.drain()

    assert [m.to for m in mailer.sent] == ["a@example.com", "b@example.com"]
    message = mailer.sent[0]
    assert message.kind == "alert"
    assert message.subject == "[Bastion] high alert: auth_failures_from_ip"
    assert "Events:    10 within 300 s (2026-11-22 10:00:00 to 10:00:42 UTC)" in message.text
    assert f"Alert id:  {raised.id}" in message.text
    assert "https://x/alerts" in message.text


def test_a_hostile_key_stays_one_line_of_the_body() -> None:
    mail = AlertMail(Postman(Kept()), ["a@example.com"], alerts_url="https://x/alerts")

    message = mail.message(alert("1.2.3.4\r\nBcc: victim@example.com\u2028x"), "a@example.com")

    assert "Bcc" not in message.subject
    line = next(line for line in message.text.splitlines() if line.startswith("For:"))
    assert line == "For:       1.2.3.4??Bcc: victim@example.com?x"


def test_no_recipient_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one recipient"):
        AlertMail(Postman(Kept()), [], alerts_url="https://x/alerts")


async def test_an_alert_raised_as_the_service_stops_is_still_mailed(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database_url="memory://", alert_email_to="soc@example.com")
    security = open_security(settings)

    # token_reuse alerts at the first event; the service stops at once.
    security.events.emit_soon("token_reuse_detected", user_id="u-1")
    await security.aclose()

    mailed = [p.name for p in settings.outbox_path.glob("*-alert-*.eml")]
    assert len(mailed) == 1
