"""Accounts, sessions and request authentication: the core's identity service."""

from bastion.accounts._emails import InvalidEmailError, normalize_email
from bastion.accounts._letters import Letters
from bastion.accounts._lifecycle import AccountLifecycle, SessionView
from bastion.accounts._service import (
    BREACHED_REASON,
    ROLES,
    AccountService,
    Principal,
    TokenPair,
)

__all__ = [
    "BREACHED_REASON",
    "ROLES",
    "AccountLifecycle",
    "AccountService",
    "InvalidEmailError",
    "Letters",
    "Principal",
    "SessionView",
    "TokenPair",
    "normalize_email",
]
