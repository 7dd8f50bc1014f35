"""Multi-factor authentication primitives: TOTP codes (RFC 6238), recovery codes, the
sealed storage of TOTP secrets, and the ``mfa_token`` of a sign-in's second step.

The flows (enrolment, the second step of a sign-in, step-up) are
:class:`bastion.accounts.SecondFactor`'s; this package holds what they are made of.
See ``docs/mfa.md``.
"""

from bastion.mfa._challenge import MFAChallengeClaims, MFATokens
from bastion.mfa._recovery import RECOVERY_CODES, RecoveryCodes
from bastion.mfa._sealed import SecretBox
from bastion.mfa._totp import DIGITS, PERIOD, TOTPCodes

__all__ = [
    "DIGITS",
    "PERIOD",
    "RECOVERY_CODES",
    "MFAChallengeClaims",
    "MFATokens",
    "RecoveryCodes",
    "SecretBox",
    "TOTPCodes",
]
