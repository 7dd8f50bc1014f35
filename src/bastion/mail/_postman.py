"""Background delivery: a request posts a job and answers without waiting for SMTP."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from bastion._background import BackgroundTasks
from bastion.mail._message import Mailer, MailError, Message, recipient_tag

__all__ = ["Postman"]

Job = Callable[[], Awaitable[Message | None]]
FailureHook = Callable[[str, BaseException], None]

_logger = logging.getLogger("bastion.mail")


def _describe(exc: BaseException, limit: int = 200) -> str:
    """``Type: short text`` for logs; a body never reaches an exception text here."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Postman:
    """Sends mail in the background, off the request's critical path.

    :meth:`post` schedules a job as an asyncio task and returns at once, so the time a
    request takes does not depend on whether a message was sent (an unknown address
    and a known one answer alike) nor on how slow the mail server is. The job does its
    own lookups and returns the :class:`Message` to send, or ``None`` when there is
    nothing to send. A :class:`MailError` with ``transient`` set is retried after each
    of ``retry_delays`` seconds in turn; anything else is final.

    Failures never propagate: a job's exception, a final send failure, a job dropped
    because ``max_pending`` jobs are already under way, and a job cancelled at
    shutdown are logged on ``bastion.mail`` (kind, recipient tag, exception type and
    short text; never the body) and passed to ``on_failure(kind, error)``.
    """

    def __init__(
        self,
        mailer: Mailer,
        *,
        max_pending: int = 1000,
        retry_delays: Sequence[float] = (0.5, 2.0),
        on_failure: FailureHook | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        if any(delay < 0 for delay in retry_delays):
            raise ValueError("retry delays must not be negative")
        self._mailer = mailer
        self._retry_delays = tuple(retry_delays)
        self._on_failure = on_failure
        self._tasks = BackgroundTasks(max_pending, label="unsent mail job(s)", logger=_logger)

    @property
    def pending(self) -> int:
        """How many posted jobs have not finished yet (retries included)."""
        return self._tasks.pending

    def post(self, job: Job, *, kind: str) -> bool:
        """Schedule ``job`` and return ``True``, without waiting for it.

        Returns ``False`` and drops the job (reporting a :class:`MailError` with
        ``stage="queue"`` to ``on_failure``) when ``max_pending`` jobs are already
        pending or the postman is closed.

        Raises:
            RuntimeError: called outside a running event loop.
        """
        asyncio.get_running_loop()  # the RuntimeError outside a loop, before anything else
        if self._tasks.full:
            reason = "the postman is closed" if self._tasks.closed else "too many pending mails"
            error = MailError(
                f"mail dropped: {reason} ({self._tasks.pending} pending)",
                transient=True,
                stage="queue",
            )
            _logger.warning("mail dropped kind=%s: %s", kind, reason)
            self._report(kind, error)
            return False
        self._tasks.start(self._deliver(job, kind), name=f"bastion.mail:{kind}")
        return True

    async def drain(self) -> None:
        """Wait until every posted job, retries included, has finished."""
        await self._tasks.drain()

    async def aclose(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (a shutdown budget)
        """Refuse new jobs, drain for up to ``timeout`` seconds, cancel the rest, close.

        Cancelled jobs are reported to ``on_failure`` with a ``CancelledError``. The
        mailer is closed last, whatever happened to the jobs.
        """
        try:
            await self._tasks.close(timeout)
        finally:
            await self._mailer.aclose()

    async def _deliver(self, job: Job, kind: str) -> None:
        try:
            try:
                message = await job()
            except Exception as exc:
                _logger.error("mail job failed kind=%s: %s", kind, _describe(exc))
                self._report(kind, exc)
                return
            if message is not None:
                await self._send(message, kind)
        except asyncio.CancelledError as exc:
            _logger.warning("mail job cancelled kind=%s", kind)
            self._report(kind, exc)
            raise

    async def _send(self, message: Message, kind: str) -> None:
        tag = recipient_tag(message.to)
        delays = iter(self._retry_delays)
        attempt = 1
        while True:
            try:
                await self._mailer.send(message)
            except MailError as exc:
                delay = next(delays, None) if exc.transient else None
                if delay is None:
                    _logger.error(
                        "mail not sent kind=%s to=%s after %d attempt(s): %s",
                        kind,
                        tag,
                        attempt,
                        _describe(exc),
                    )
                    self._report(kind, exc)
                    return
                _logger.warning(
                    "mail send failed kind=%s to=%s attempt=%d, retrying in %.1fs: %s",
                    kind,
                    tag,
                    attempt,
                    delay,
                    _describe(exc),
                )
                await asyncio.sleep(delay)
                attempt += 1
            except Exception as exc:  # a mailer bug: report it, do not retry
                _logger.error("mail not sent kind=%s to=%s: %s", kind, tag, _describe(exc))
                self._report(kind, exc)
                return
            else:
                return

    def _report(self, kind: str, exc: BaseException) -> None:
        if self._on_failure is None:
            return
        try:
            self._on_failure(kind, exc)
        except Exception as hook_exc:
            _logger.error("mail on_failure hook failed kind=%s: %s", kind, _describe(hook_exc))
