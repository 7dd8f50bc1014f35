"""Accounts, sessions and request authentication: the core's identity service.

Four parts, each with one job, put together by :class:`AccountService`:
:class:`Authenticator` (who calls, once per request), :class:`Sessions` (open after any
proof of identity, rotate, revoke), :class:`PasswordLogin` (everything that checks or
sets a password) and :class:`AccountAdmin` (account records and their changes). Their
hooks have one shape, ``async def hook(event) -> None``, registered with
``.on_<what>(hook)``; the events are the dataclasses exported here.
"""

from bastion.accounts._admin import AccountAdmin
from bastion.accounts._authenticator import Authenticator
from bastion.accounts._emails import InvalidEmailError, normalize_email
from bastion.accounts._external import ExternalSignIns, LastSignInMethodError
from bastion.accounts._hooks import Hook
from bastion.accounts._letters import Letters
from bastion.accounts._lifecycle import AccountLifecycle, SessionView
from bastion.accounts._mfa import Enrolment, MFAChanged, SecondFactor
from bastion.accounts._password import PasswordLogin
from bastion.accounts._principals import ExternalPrincipals
from bastion.accounts._service import AccountService
from bastion.accounts._sessions import Sessions
from bastion.accounts._types import (
    BREACHED_REASON,
    ROLES,
    AccountLocked,
    EmailVerified,
    LockedSignIn,
    Principal,
    Proof,
    TokenPair,
)

__all__ = [
    "BREACHED_REASON",
    "ROLES",
    "AccountAdmin",
    "AccountLifecycle",
    "AccountLocked",
    "AccountService",
    "Authenticator",
    "EmailVerified",
    "Enrolment",
    "ExternalPrincipals",
    "ExternalSignIns",
    "Hook",
    "InvalidEmailError",
    "LastSignInMethodError",
    "Letters",
    "LockedSignIn",
    "MFAChanged",
    "PasswordLogin",
    "Principal",
    "Proof",
    "SecondFactor",
    "SessionView",
    "Sessions",
    "TokenPair",
    "normalize_email",
]
