"""What the account parts hand each other and their callers: token pairs, the request's
principal, the proof a session opens on, and the news their hooks are told."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from bastion.authz import ROLE_ORDER, Subject
from bastion.events import RequestContext
from bastion.stores import Account
from bastion.tokens import AccessClaims

__all__ = [
    "BREACHED_REASON",
    "ROLES",
    "AccountLocked",
    "LockedSignIn",
    "Principal",
    "Proof",
    "TokenPair",
]

ROLES = ROLE_ORDER
BREACHED_REASON = (
    "This password has appeared in a data breach, so attackers try it first; choose another."
)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int
    refresh_token: str
    refresh_expires_in: int
    token_type: str = "bearer"  # noqa: S105  (a token type, not a secret)
    device_token: str | None = None  # the login defence's device cookie, for a login
    session_id: str = ""  # the session both tokens belong to (binds the cookie mode's CSRF)


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request: role from the stored state, not the token."""

    user_id: uuid.UUID
    role: str
    session_id: str
    claims: AccessClaims

    @property
    def subject(self) -> Subject:
        return Subject(self.user_id, self.role, True, self.claims.role)


@dataclass(frozen=True)
class Proof:
    """How the caller proved to be the account's owner, for :meth:`Sessions.open`.

    ``amr`` are the methods, as RFC 8176 names them (``"pwd"`` a password, ``"otp"`` a
    one-time code, ``"mfa"`` more than one; an OpenID Connect provider sends its own);
    they go into the ``auth_success`` event. ``passes_lock`` is for the proofs a lock
    after failed logins lets through, because the lock stops guessing and not the owner:
    the password from a device the account knows, the emailed sign-in link. ``details``
    says in the event how the session was opened.
    """

    amr: tuple[str, ...]
    passes_lock: bool = False
    details: str = ""
    # The proof includes the account's second factor: an account with MFA on opens a
    # session only on such a proof (else Sessions.open asks for the second step).
    second_factor: bool = False


@dataclass(frozen=True)
class EmailVerified:
    """The address of the account ``user_id`` has just been verified (once per account)."""

    user_id: uuid.UUID
    email: str


@dataclass(frozen=True)
class AccountLocked:
    """Failed logins have just locked ``account`` (once per lock)."""

    account: Account
    context: RequestContext


@dataclass(frozen=True)
class LockedSignIn:
    """The right password reached the locked ``account`` from a device it does not know:
    the answer is that of a wrong password, and the owner may be sent a sign-in link."""

    account: Account
    context: RequestContext
