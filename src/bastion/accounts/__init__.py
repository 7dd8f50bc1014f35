"""Accounts, sessions and request authentication: the core's identity service."""

from bastion.accounts._emails import InvalidEmailError, normalize_email
from bastion.accounts._service import ROLES, AccountService, Principal, TokenPair

__all__ = [
    "ROLES",
    "AccountService",
    "InvalidEmailError",
    "Principal",
    "TokenPair",
    "normalize_email",
]
