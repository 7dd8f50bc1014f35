"""Alerts POSTed as signed JSON to a webhook (a chat channel, an incident tool, a SIEM).

The body is the alert as JSON; ``X-Bastion-Signature: sha256=<hex>`` is the HMAC-SHA256
of the raw body under the shared secret (RFC 2104), so the receiver can tell a genuine
alert from a forged one and compare it in constant time. The body carries the alert's
``id`` and ``created_at``: a receiver drops a replayed or retried delivery by its id.

Delivery never follows a redirect (a 3xx is a failure: the URL is configuration, not
something an answer may change) and gives up after a bounded number of attempts, with
back-off, on network errors and 5xx answers; any other answer is final.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import httpx

from bastion.errors import BastionError
from bastion.stores.alerts import Alert

__all__ = [
    "SIGNATURE_HEADER",
    "AlertWebhook",
    "DeliveryError",
    "alert_to_dict",
    "sign",
]

SIGNATURE_HEADER = "X-Bastion-Signature"

_logger = logging.getLogger("bastion.alerts")


class DeliveryError(BastionError):
    """An alert that did not reach the webhook after every attempt."""

    def __init__(self, message: str, *, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def _rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    """The alert's JSON shape: UTC times with ``Z`` and millisecond precision, as events."""
    return {
        "id": str(alert.id),
        "rule": alert.rule,
        "key": alert.key,
        "count": alert.count,
        "window_seconds": alert.window_seconds,
        "first_event_at": _rfc3339(alert.first_event_at),
        "last_event_at": _rfc3339(alert.last_event_at),
        "severity": alert.severity,
        "created_at": _rfc3339(alert.created_at),
    }


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


class AlertWebhook:
    """POSTs alerts to ``url``, signed with ``secret`` (unsigned without one: development).

    Each attempt has ``timeout`` seconds (connect, write, read); a network error, a
    timeout or a 5xx is retried after each of ``retry_delays`` seconds in turn.
    """

    def __init__(
        self,
        url: str,
        secret: bytes | None,
        *,
        timeout: float = 5.0,
        retry_delays: Sequence[float] = (0.5, 2.0, 8.0),
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if any(delay < 0 for delay in retry_delays):
            raise ValueError("retry delays must not be negative")
        self.url = url
        self._secret = secret
        self._retry_delays = tuple(retry_delays)
        self._client = httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, transport=transport
        )

    def body_and_headers(self, alert: Alert) -> tuple[bytes, dict[str, str]]:
        body = json.dumps(alert_to_dict(alert), separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "bastion-alerts"}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        return body, headers

    async def deliver(self, alert: Alert) -> int:
        """POST ``alert``; return the number of attempts it took.

        Raises:
            DeliveryError: every attempt failed, or the answer was final and not 2xx.
        """
        body, headers = self.body_and_headers(alert)
        delays = iter(self._retry_delays)
        attempt = 1
        while True:
            try:
                response = await self._client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:  # connect, read, write errors and timeouts
                reason = type(exc).__name__
            else:
                if response.is_success:
                    return attempt
                reason = f"HTTP {response.status_code}"
                if response.status_code < 500:
                    raise DeliveryError(f"webhook answered {reason}", attempts=attempt)
            delay = next(delays, None)
            if delay is None:
                raise DeliveryError(
                    f"webhook failed {attempt} time(s), last: {reason}", attempts=attempt
                )
            _logger.warning(
                "alert %s delivery attempt %d failed (%s), retrying in %.1fs",
                alert.id,
                attempt,
                reason,
                delay,
            )
            await asyncio.sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._client.aclose()
