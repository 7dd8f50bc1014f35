"""One-time link tokens: email verification, password reset, account unlock, and the
sign-in link of a locked account.

A token is ``<selector>.<verifier>``: a 96-bit public selector that finds the stored row,
and a 256-bit secret verifier of which only the SHA-256 digest is stored (ASVS 7.2.3,
11.5.1: ≥ 128 bits from a CSPRNG; a leaked table holds no usable link). The verifier is
compared with :func:`hmac.compare_digest`, so the comparison takes the same time however
much of it matches, and the database index only ever sees the selector.

A token is bound to the account state it was issued for (STYLE principle 10, after
Django's ``PasswordResetTokenGenerator``): ``state`` is a digest of the fields its purpose
depends on, and spending it checks that digest again in the change's transaction. A reset
link dies when the password or email changes or the account's tokens are revoked, a
verification link once the email is verified, an unlock link once the account is
unlocked, a sign-in link when the password changes or the tokens are revoked; issuing
a link of a purpose deletes the account's older unused ones. Tokens are spent in the
same transaction as the change they authorize (:class:`bastion.stores.TokenUse`): used
once, or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Final, Literal

from bastion.clock import Clock, SystemClock
from bastion.errors import InvalidLinkError
from bastion.stores.base import Account, OneTimeToken, OneTimeTokenStore, TokenUse

__all__ = ["PURPOSES", "OneTimeTokens", "Purpose"]

Purpose = Literal["verify-email", "password-reset", "unlock", "sign-in"]
PURPOSES: Final[tuple[Purpose, ...]] = ("verify-email", "password-reset", "unlock", "sign-in")

_SELECTOR_BYTES = 12  # 16 URL-safe characters; only has to be unique, not secret
_VERIFIER_BYTES = 32  # 256 bits of secret
_MAX_TOKEN_CHARS = 128


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def account_state(purpose: str, account: Account) -> str:
    """The digest of what a token of ``purpose`` is bound to in ``account``."""
    if purpose == "verify-email":
        fields = [account.email_key, str(account.email_verified)]
    elif purpose == "password-reset":
        # The token version too: every revocation (logout-all, an admin's revoke or
        # disable) kills outstanding reset links, which must not outlive an incident.
        fields = [
            account.email_key,
            account.password_hash or "",
            str(account.is_active),
            str(account.token_version),
        ]
    elif purpose == "sign-in":
        # Issued after the right password: it dies with that password, and with any
        # revocation (logout-all, an admin's revoke or disable) that happens meanwhile.
        fields = [
            account.email_key,
            account.password_hash or "",
            str(account.is_active),
            str(account.token_version),
        ]
    elif purpose == "unlock":
        locked = account.locked_at.isoformat() if account.locked_at else ""
        fields = [account.email_key, locked, str(account.token_version)]
    else:
        raise ValueError(f"unknown purpose {purpose!r}")
    return _digest("\x1f".join([purpose, str(account.id), *fields]))


class OneTimeTokens:
    """Issue and check one-time link tokens; spending is part of an account change.

    ``lifetimes`` maps each purpose to how long its link lives (defaults: verification
    24 h, reset 30 min, unlock 1 h, sign-in 15 min).
    """

    DEFAULT_LIFETIMES: Final[dict[str, timedelta]] = {
        "verify-email": timedelta(hours=24),
        "password-reset": timedelta(minutes=30),
        "unlock": timedelta(hours=1),
        "sign-in": timedelta(minutes=15),
    }

    def __init__(
        self,
        store: OneTimeTokenStore,
        *,
        lifetimes: dict[str, timedelta] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._store = store
        self._lifetimes = {**self.DEFAULT_LIFETIMES, **(lifetimes or {})}
        self._clock = clock or SystemClock()

    def lifetime(self, purpose: Purpose) -> timedelta:
        return self._lifetimes[purpose]

    async def issue(self, account: Account, purpose: Purpose) -> str:
        """A new token for ``account``; the account's older unused ones of ``purpose`` die."""
        selector = secrets.token_urlsafe(_SELECTOR_BYTES)
        verifier = secrets.token_urlsafe(_VERIFIER_BYTES)
        now = self._clock.now()
        await self._store.issue(
            OneTimeToken(
                selector=selector,
                digest=_digest(verifier),
                purpose=purpose,
                user_id=account.id,
                state=account_state(purpose, account),
                created_at=now,
                expires_at=now + self._lifetimes[purpose],
            )
        )
        return f"{selector}.{verifier}"

    async def check(self, token: str, purpose: Purpose) -> tuple[OneTimeToken, TokenUse]:
        """The stored token and the :class:`TokenUse` that spends it in a change.

        Raises:
            InvalidLinkError: malformed, unknown, wrong purpose, used or expired (the
                state binding and single use are checked again when it is spent).
        """
        selector, dot, verifier = token.partition(".")
        if not dot or not selector or not verifier or len(token) > _MAX_TOKEN_CHARS:
            raise InvalidLinkError("malformed one-time token")
        found = await self._store.get(selector)
        # Constant-time comparison of the digests (a dummy one for an unknown selector).
        stored = found.digest if found is not None else _digest("")
        if not hmac.compare_digest(stored, _digest(verifier)) or found is None:
            raise InvalidLinkError("unknown one-time token")
        if found.purpose != purpose:
            raise InvalidLinkError(f"one-time token for {found.purpose}, not {purpose}")
        if found.used_at is not None:
            raise InvalidLinkError("one-time token already used")
        if found.expires_at <= self._clock.now():
            raise InvalidLinkError("one-time token expired")
        use = TokenUse(selector, purpose, lambda account: account_state(purpose, account))
        return found, use
