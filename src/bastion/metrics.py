"""Prometheus metrics of the security core, in a registry of their own.

:class:`Metrics` owns a :class:`prometheus_client.CollectorRegistry`: never the global
default one, so that every app (several per test process) counts only its own traffic.
It is fed by plain hooks, not by the framework: :meth:`Metrics.count_request` from the
web layer, :meth:`Metrics.watch_events` observes the event pipeline,
:meth:`Metrics.watch_hasher` the Argon2 pool; queue depths are read when scraped.

Every label value comes from a closed set (decisions, status classes, event types,
severities, configured policy names, login outcomes): never a user id, an address or
a path, which would leak who did what and grow the series without bound (OWASP Logging
Cheat Sheet, "Data to exclude"; Prometheus "Use labels" on cardinality).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bastion.alerts import DEFAULT_RULES
from bastion.events import EventLog
from bastion.passwords import PasswordHasher
from bastion.stores import SEVERITIES, SecurityEvent

__all__ = [
    "DECISIONS",
    "LOGIN_OUTCOMES",
    "LOGIN_PATHS",
    "STATUS_CLASSES",
    "Metrics",
    "login_outcome",
]

DECISIONS = ("allow", "deny", "none")  # "none": no route decided (404, 405, 429...)
STATUS_CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")
LOGIN_OUTCOMES = (
    "success",
    "failure",  # unknown account or wrong password: one outcome, as at the edge
    "locked",
    "disabled",
    "unverified",
    "delayed",
    "challenge",
    "blocked",  # the IP's credential-stuffing block
)
LOGIN_PATHS = frozenset({"/auth/login", "/auth/token"})
BLOCKED = "blocked"  # a repeat offender's block refuses without naming a policy
OTHER = "other"

# The ``details`` of the login's auth_failure events (bastion.accounts) by outcome.
_ALERT_RULES = tuple(rule.name for rule in DEFAULT_RULES)
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SEVERITIES = frozenset(SEVERITIES)
# Password hashing waits: most are none; the pool refuses after its queue timeout (5 s).
_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def login_outcome(event: SecurityEvent) -> str | None:
    """The login outcome an event records, or None for an event of no login."""
    if event.endpoint not in LOGIN_PATHS:
        return None
    if event.event_type not in ("auth_success", "auth_failure"):
        return None
    # The login's events carry a typed ``outcome``; an auth_failure without one (a bad
    # token on the login path, say) is a plain failure.
    outcome = event.extra.get("outcome")
    if outcome in LOGIN_OUTCOMES:
        return str(outcome)
    return "success" if event.event_type == "auth_success" else "failure"


class _Readings(Collector):
    """Gauges and counters read from their sources at scrape time."""

    def __init__(self) -> None:
        self.hasher: PasswordHasher | None = None
        self.events: EventLog | None = None

    def collect(self) -> Iterator[Metric]:
        hasher, events = self.hasher, self.events
        yield GaugeMetricFamily(
            "bastion_password_hash_queue_depth",
            "Password hashes waiting for a slot in the Argon2 worker pool.",
            value=hasher.queue_depth if hasher else 0,
        )
        yield GaugeMetricFamily(
            "bastion_event_queue_depth",
            "Security events queued to be written after the response.",
            value=events.pending if events else 0,
        )
        yield CounterMetricFamily(
            "bastion_events_dropped",
            "Security events not written because the event queue was full.",
            value=events.dropped if events else 0,
        )
        yield CounterMetricFamily(
            "bastion_event_write_failures",
            "Security events a sink failed to write (after retries, for queued events).",
            value=events.failed if events else 0,
        )


class Metrics:
    """The service's metrics and their registry; ``policies`` names the rate-limit
    policies (any other name is counted as ``other``)."""

    def __init__(self, *, policies: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        requests = Counter(
            "bastion_requests",
            "HTTP requests by the guard's decision and the response's status class.",
            ("decision", "status"),
            registry=registry,
        )
        # Every child made once: a request increments a cached child, no label dict.
        self._requests = {
            (decision, index): requests.labels(decision, status)
            for decision in DECISIONS
            for index, status in enumerate(STATUS_CLASSES, start=1)
        }
        self._security_events = Counter(
            "bastion_security_events",
            "Security events by type and severity.",
            ("event_type", "severity"),
            registry=registry,
        )
        self._events_by: dict[tuple[str, str], Any] = {}
        rate_limits = Counter(
            "bastion_rate_limit_refusals",
            "Requests refused by a rate limit, by violated policy ('blocked': a repeat "
            "offender's block).",
            ("policy",),
            registry=registry,
        )
        names = {*policies, BLOCKED, OTHER}
        self._refusals = {name: rate_limits.labels(name) for name in sorted(names)}
        logins = Counter(
            "bastion_logins", "Login attempts by outcome.", ("outcome",), registry=registry
        )
        self._logins = {outcome: logins.labels(outcome) for outcome in LOGIN_OUTCOMES}
        alerts = Counter(
            "bastion_alerts",
            "Security alerts raised, by rule (the engine's alert_raised events).",
            ("rule",),
            registry=registry,
        )
        self._alerts = {name: alerts.labels(name) for name in (*_ALERT_RULES, OTHER)}
        self._hash_wait = Histogram(
            "bastion_password_hash_wait_seconds",
            "Time a password hash waited for a slot in the Argon2 worker pool.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        )
        self._readings = _Readings()
        registry.register(self._readings)

    # -- feeds -------------------------------------------------------------------------

    def count_request(self, decision: str, status: int) -> None:
        """One answered request: ``decision`` is one of :data:`DECISIONS`."""
        index = min(max(status // 100, 1), 5)
        child = self._requests.get((decision, index)) or self._requests["none", index]
        child.inc()

    def count_blocked(self) -> None:
        """A request refused by a repeat-offender block (which logs no event each)."""
        self._refusals[BLOCKED].inc()

    def watch_events(self, events: EventLog) -> None:
        """Count the events of ``events`` and read its write queue when scraped."""
        events.observe(self._on_event)
        self._readings.events = events

    def watch_hasher(self, hasher: PasswordHasher) -> None:
        """Time the waits of ``hasher``'s pool and read its queue when scraped."""
        hasher.on_wait = self._hash_wait.observe
        self._readings.hasher = hasher

    def _on_event(self, event: SecurityEvent) -> None:
        key = (event.event_type, event.severity)
        child = self._events_by.get(key)
        if child is None:
            event_type = event.event_type if _EVENT_TYPE.fullmatch(event.event_type) else OTHER
            severity = event.severity if event.severity in _SEVERITIES else OTHER
            child = self._events_by[key] = self._security_events.labels(event_type, severity)
        child.inc()
        if event.event_type == "rate_limit_exceeded":
            for policy in event.extra.get("violated_policies") or ():
                self._refusals.get(policy, self._refusals[OTHER]).inc()
        if event.event_type == "alert_raised":
            rule = event.extra.get("rule")
            self._alerts.get(rule if isinstance(rule, str) else OTHER, self._alerts[OTHER]).inc()
        outcome = login_outcome(event)
        if outcome is not None:
            self._logins[outcome].inc()

    # -- exposition --------------------------------------------------------------------

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)
