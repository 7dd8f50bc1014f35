"""Security alerts: rules over sliding windows of security events.

An :class:`AlertEngine` observes the event log (:meth:`bastion.events.EventLog.observe`),
counts the events of each :class:`AlertRule` per key within its window, and raises one
:class:`~bastion.stores.alerts.Alert` per attack (a cooldown deduplicates): stored, logged
as an ``alert_raised`` event, emailed to the configured addresses, and POSTed, signed,
to a webhook when one is configured.
See docs/errors-and-events.md, "Alerts".
"""

from __future__ import annotations

from bastion.alerts._engine import AlertEngine
from bastion.alerts._mail import AlertMail
from bastion.alerts._rules import DEFAULT_RULES, RULE_FIELDS, AlertRule, configure_rules
from bastion.alerts._webhook import (
    SIGNATURE_HEADER,
    AlertWebhook,
    DeliveryError,
    alert_to_dict,
    sign,
)
from bastion.stores.alerts import Alert, AlertStore, MemoryAlertStore

__all__ = [
    "DEFAULT_RULES",
    "RULE_FIELDS",
    "SIGNATURE_HEADER",
    "Alert",
    "AlertEngine",
    "AlertMail",
    "AlertRule",
    "AlertStore",
    "AlertWebhook",
    "DeliveryError",
    "MemoryAlertStore",
    "alert_to_dict",
    "configure_rules",
    "sign",
]
