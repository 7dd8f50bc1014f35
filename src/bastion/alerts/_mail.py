"""Alerts by email: one plain-text message to each configured address.

Sent through the account mail's :class:`~bastion.mail.Postman`: in the background,
retried on transient failures, and a failure is an ``email_failed`` event like any
other mail's. The rules' cooldown already limits how many alerts there are, so there
is no budget of its own here. The alert key (an address, a user id) is written into
the body only, with any control character replaced, never into a header.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bastion.mail import Message, Postman
from bastion.stores.alerts import Alert

__all__ = ["AlertMail"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def _printable(text: str) -> str:
    return _CONTROL.sub("?", text)


class AlertMail:
    """Posts each alert to ``recipients``; ``alerts_url`` is where admins read them."""

    def __init__(
        self,
        postman: Postman,
        recipients: Sequence[str],
        *,
        alerts_url: str,
        product: str = "Bastion",
    ) -> None:
        if not recipients:
            raise ValueError("AlertMail needs at least one recipient")
        self._postman = postman
        self._recipients = tuple(recipients)
        self._alerts_url = alerts_url
        self._product = product

    def send(self, alert: Alert) -> None:
        """Post one message a recipient and return at once."""
        for to in self._recipients:
            message = self.message(alert, to)

            async def job(message: Message = message) -> Message:
                return message

            self._postman.post(job, kind="alert")

    def message(self, alert: Alert, to: str) -> Message:
        when = f"{alert.first_event_at:%Y-%m-%d %H:%M:%S} to {alert.last_event_at:%H:%M:%S} UTC"
        return Message(
            to=to,
            subject=f"[{self._product}] {alert.severity} alert: {alert.rule}",
            text=(
                f"{self._product} raised a security alert.\n\n"
                f"Rule:      {alert.rule}\n"
                f"Severity:  {alert.severity}\n"
                f"For:       {_printable(alert.key)}\n"
                f"Events:    {alert.count} within {alert.window_seconds} s ({when})\n"
                f"Alert id:  {alert.id}\n\n"
                f"The alert and the events behind it: {self._alerts_url}\n"
                "(GET /admin/security/alerts and /admin/security/events, as an admin).\n"
                "The rule stays quiet for its cooldown: one attack, one message.\n"
            ),
            kind="alert",
        )
