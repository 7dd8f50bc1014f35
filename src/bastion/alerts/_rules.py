"""Alert rules: which events count, per what key, how many within how long.

A rule turns a burst of security events into one alert (OWASP Logging Cheat Sheet,
"Monitoring of events"; ASVS 16.3, security events are monitored and acted on): a
threshold of events of one type for one key (an IP address, a user) within a sliding
window. The defaults cover the attacks the log already sees; ``BASTION_ALERT_RULES``
changes their numbers or turns one off.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bastion.stores.base import SEVERITIES, SecurityEvent, Severity

__all__ = [
    "DEFAULT_RULES",
    "RULE_FIELDS",
    "AlertRule",
    "configure_rules",
]

KeyOf = Callable[[SecurityEvent], str | None]

# What BASTION_ALERT_RULES may change per rule (the event types and keys are code).
RULE_FIELDS = ("threshold", "window_seconds", "cooldown_seconds", "severity", "enabled")


@dataclass(frozen=True)
class AlertRule:
    """Raise an alert when ``threshold`` events of ``event_type`` (those ``predicate``
    accepts, if any) share one ``key`` within ``window_seconds``; the same key raises
    no other alert of this rule for ``cooldown_seconds`` (one attack, one alert).

    ``key`` returns None for an event it cannot place (no IP address, no user): such an
    event counts for nobody.
    """

    name: str
    event_type: str
    key: KeyOf
    threshold: int = 1
    window_seconds: int = 60
    severity: Severity = "high"
    cooldown_seconds: int = 900
    predicate: Callable[[SecurityEvent], bool] | None = None
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.threshold < 1:
            raise ValueError(f"alert rule {self.name!r}: threshold must be at least 1")
        if self.window_seconds < 1:
            raise ValueError(f"alert rule {self.name!r}: window_seconds must be at least 1")
        if self.cooldown_seconds < 0:
            raise ValueError(f"alert rule {self.name!r}: cooldown_seconds must not be negative")
        if self.severity not in SEVERITIES:
            raise ValueError(f"alert rule {self.name!r}: severity must be one of {SEVERITIES}")

    def counts(self, event: SecurityEvent) -> bool:
        """Whether ``event`` is one this rule counts."""
        if event.event_type != self.event_type:
            return False
        return self.predicate is None or self.predicate(event)


def by_ip(event: SecurityEvent) -> str | None:
    return event.ip_address


def by_user(event: SecurityEvent) -> str | None:
    return event.user_id


def by_target_user(event: SecurityEvent) -> str | None:
    """The account whose role changed (``user_id`` of a role change is the admin who
    changed it)."""
    target = event.extra.get("target_user_id")
    return str(target) if target is not None else None


def _grants_admin(event: SecurityEvent) -> bool:
    return event.extra.get("new_role") == "admin" and event.extra.get("old_role") != "admin"


def _is_stuffing(event: SecurityEvent) -> bool:
    # The login defence's detection (bastion.accounts, ``_login_failed``): one IP failing
    # on many accounts; the IP's logins are blocked from then on.
    return event.details.startswith("credential stuffing:")


DEFAULT_RULES: tuple[AlertRule, ...] = (
    # Password guessing or spraying from one address (OWASP Authentication Cheat Sheet).
    AlertRule(
        "auth_failures_from_ip",
        "auth_failure",
        by_ip,
        threshold=10,
        window_seconds=300,
        severity="high",
        cooldown_seconds=900,
    ),
    # A rotated refresh token presented again: a stolen token (RFC 9700 §4.14.2).
    AlertRule(
        "token_reuse",
        "token_reuse_detected",
        by_user,
        threshold=1,
        window_seconds=60,
        severity="critical",
        cooldown_seconds=900,
    ),
    # A user probing what they may not do (OWASP API1:2023, API5:2023).
    AlertRule(
        "permission_denials_for_user",
        "permission_denied",
        by_user,
        threshold=5,
        window_seconds=60,
        severity="high",
        cooldown_seconds=900,
    ),
    # Every grant of the admin role is worth a look (ASVS 16.3.2, privilege changes).
    AlertRule(
        "admin_role_granted",
        "role_changed",
        by_target_user,
        threshold=1,
        window_seconds=60,
        severity="high",
        cooldown_seconds=60,
        predicate=_grants_admin,
    ),
    # The login defence saw credential stuffing from one IP (OWASP Credential Stuffing
    # Prevention Cheat Sheet).
    AlertRule(
        "credential_stuffing",
        "suspicious_activity",
        by_ip,
        threshold=1,
        window_seconds=60,
        severity="critical",
        cooldown_seconds=900,
        predicate=_is_stuffing,
    ),
)


def configure_rules(
    overrides: Mapping[str, Mapping[str, Any]],
    rules: tuple[AlertRule, ...] = DEFAULT_RULES,
) -> tuple[AlertRule, ...]:
    """``rules`` with ``overrides`` (rule name -> fields of :data:`RULE_FIELDS`) applied,
    the disabled ones left out.

    Raises:
        ValueError: an unknown rule or field, or a value of the wrong type or range,
            naming it.
    """
    known = {rule.name: rule for rule in rules}
    for name, fields in overrides.items():
        if name not in known:
            raise ValueError(f"unknown alert rule {name!r}; one of {sorted(known)}")
        unknown = sorted(set(fields) - set(RULE_FIELDS))
        if unknown:
            raise ValueError(f"alert rule {name!r}: unknown fields {unknown}; {RULE_FIELDS}")
        for field, value in fields.items():
            wanted: type = bool if field == "enabled" else str if field == "severity" else int
            if type(value) is not wanted:
                raise ValueError(f"alert rule {name!r}: {field} must be a {wanted.__name__}")
        known[name] = dataclasses.replace(known[name], **dict(fields))
    return tuple(rule for rule in known.values() if rule.enabled)
