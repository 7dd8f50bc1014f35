"""The purposes secrets are derived for from the key ring (``KeySet.derive_secret``).

Each string is the HKDF ``info`` of one secret, so every process that shares the key
file must pass the same one: the service that chains the events and ``bastion events
verify`` that checks the chain, every instance behind one load balancer. They are part
of what is stored and sent (chained rows, device cookies, CSRF tokens, links): changing
one invalidates everything made with the secret it names.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACCOUNT_MAIL",
    "CSRF",
    "EVENT_CHAIN",
    "LOGIN_DEFENCE",
    "MFA_RECOVERY_CODES",
    "MFA_SECRETS",
    "MFA_TOKENS",
    "OAUTH_SIGN_IN",
]

EVENT_CHAIN: Final = "bastion event chain"
"""The HMAC key of the tamper-evident event chain (:mod:`bastion.events.chain`)."""

LOGIN_DEFENCE: Final = "bastion login defence"
"""Device cookies, proof-of-work challenges and login-failure keys."""

ACCOUNT_MAIL: Final = "bastion account mail"
"""The keyed hashes of addresses that throttle account emails per recipient."""

CSRF: Final = "bastion csrf"
"""The HMAC key of the session-bound CSRF tokens."""

OAUTH_SIGN_IN: Final = "bastion oauth sign-in"
"""The HMAC key of the cookie that binds a sign-in with a provider to its browser."""

MFA_SECRETS: Final = "bastion mfa secrets"
"""The AES-256-GCM key that seals TOTP secrets in the database."""

MFA_TOKENS: Final = "bastion mfa tokens"
"""The HMAC key of the ``mfa_token`` of a sign-in's second step."""

MFA_RECOVERY_CODES: Final = "bastion mfa recovery codes"
"""The HMAC key of the recovery codes' stored digests."""
