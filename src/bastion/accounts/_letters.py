"""The account emails: plain text, one function each, and the links they carry.

Links carry the token in the URL fragment (``#token=...``): a browser never sends the
fragment to a server, so the token stays out of access logs, proxies and ``Referer``
headers (OWASP Forgot Password Cheat Sheet: "ensure the token is not leaked"). The page
at the link's path reads it and posts it (``POST /auth/email/verify`` and the like).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bastion.mail import Message

__all__ = ["Letters"]


def _span(lifetime: timedelta) -> str:
    minutes = int(lifetime.total_seconds() // 60)
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} hour{'s' if hours != 1 else ''}"
    return f"{minutes} minutes"


@dataclass(frozen=True)
class Letters:
    """Builds each account email; ``base_url`` is where the link pages are served."""

    base_url: str
    product: str = "Bastion"

    def link(self, path: str, token: str) -> str:
        return f"{self.base_url.rstrip('/')}{path}#token={token}"

    def verify_email(self, to: str, token: str, lifetime: timedelta) -> Message:
        return Message(
            to=to,
            subject=f"Confirm your email address for {self.product}",
            text=(
                f"Hello,\n\nconfirm that this address belongs to your {self.product} account "
                f"by opening this link within {_span(lifetime)}:\n\n"
                f"{self.link('/auth/email/verify', token)}\n\n"
                "If you did not create an account, ignore this message: nothing will happen.\n"
            ),
            kind="verify-email",
        )

    def password_reset(self, to: str, token: str, lifetime: timedelta) -> Message:
        return Message(
            to=to,
            subject=f"Reset your {self.product} password",
            text=(
                f"Hello,\n\nsomeone asked to reset the password of your {self.product} "
                f"account. To choose a new one, open this link within {_span(lifetime)}; "
                "it works once, and every session of the account ends:\n\n"
                f"{self.link('/auth/password/reset', token)}\n\n"
                "If you did not ask, ignore this message: your password stays as it is.\n"
            ),
            kind="password-reset",
        )

    def unlock(self, to: str, token: str, lifetime: timedelta) -> Message:
        return Message(
            to=to,
            subject=f"Your {self.product} account was locked",
            text=(
                f"Hello,\n\nyour {self.product} account was locked after many failed login "
                f"attempts. If they were yours, open this link within {_span(lifetime)} "
                "to unlock it:\n\n"
                f"{self.link('/auth/unlock', token)}\n\n"
                "While it is locked, your devices that signed in before still get in, and "
                "signing in with your password on another device emails you a sign-in link.\n\n"
                "If they were not yours, someone may be guessing your password: consider "
                'resetting it with "Forgot password".\n'
            ),
            kind="unlock",
        )

    def sign_in(self, to: str, token: str, lifetime: timedelta) -> Message:
        return Message(
            to=to,
            subject=f"Finish signing in to {self.product}",
            text=(
                f"Hello,\n\nsomeone just entered the right password of your {self.product} "
                "account on a device it does not know yet. The account is locked against "
                "password guessing after many failed attempts, so that sign-in needs this "
                f"link too. If it was you, open it on that device within {_span(lifetime)}; "
                "it works once:\n\n"
                f"{self.link('/auth/login/confirm', token)}\n\n"
                "If it was not you, someone knows your password: reset it at once with "
                '"Forgot password". Without this link they cannot sign in.\n'
            ),
            kind="sign-in",
        )

    def already_registered(self, to: str) -> Message:
        return Message(
            to=to,
            subject=f"Someone tried to register with your address at {self.product}",
            text=(
                f"Hello,\n\nsomeone tried to create a {self.product} account with this "
                "address, which already has one. No second account was made.\n\n"
                'If it was you, log in with your password, or choose "Forgot password" '
                "to set a new one. If it was not, ignore this message.\n"
            ),
            kind="already-registered",
        )

    def mfa_changed(self, to: str, change: str) -> Message:
        what = {
            "enabled": ("A second factor was turned on", "was turned on"),
            "disabled": ("The second factor was turned off", "was turned off"),
            "reset": ("The second factor was reset", "was reset by an operator"),
            "recovery-code-used": (
                "A recovery code was used",
                "was replaced by one of its recovery codes to sign in",
            ),
            "recovery-codes-replaced": (
                "New recovery codes were made",
                "got ten new recovery codes; the old ones no longer work",
            ),
        }[change]
        return Message(
            to=to,
            subject=f"{what[0]} on your {self.product} account",
            text=(
                f"Hello,\n\nthe second factor (authenticator app) of your {self.product} "
                f"account {what[1]}.\n\nIf this was not you, reset your password with "
                '"Forgot password" at once and tell your administrator.\n'
            ),
            kind=f"mfa-{change}",
        )

    def password_changed(self, to: str, *, by_reset: bool) -> Message:
        how = "with a reset link" if by_reset else "from a signed-in session"
        return Message(
            to=to,
            subject=f"Your {self.product} password was changed",
            text=(
                f"Hello,\n\nthe password of your {self.product} account was just changed "
                f"{how}, and its other sessions were ended.\n\n"
                'If this was not you, reset your password with "Forgot password" at once '
                "and tell your administrator.\n"
            ),
            kind="password-changed",
        )
