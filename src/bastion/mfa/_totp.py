"""TOTP codes as RFC 6238 defines them (HMAC-SHA-1, 6 digits, 30-second steps), generated
by pyotp; a code is accepted within one step either side of now (clock drift), and the
step it matched is returned so that a code accepted once can be refused after."""

from __future__ import annotations

import hmac
from datetime import datetime

import pyotp
import segno

__all__ = ["DIGITS", "PERIOD", "TOTPCodes"]

DIGITS = 6
PERIOD = 30  # seconds
_DRIFT = 1  # steps accepted either side of now (RFC 6238 §5.2)
_SECRET_CHARACTERS = 32  # base32: 160 bits, the HMAC-SHA-1 key length RFC 4226 §4 asks


class TOTPCodes:
    """New secrets, their enrolment URI and QR code, and the check of a code."""

    def __init__(self, issuer: str) -> None:
        self._issuer = issuer

    @staticmethod
    def new_secret() -> str:
        return pyotp.random_base32(_SECRET_CHARACTERS)

    def uri(self, secret: str, account_name: str) -> str:
        """The ``otpauth://`` URI an authenticator app enrols from."""
        return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).provisioning_uri(
            name=account_name, issuer_name=self._issuer
        )

    @staticmethod
    def qr_svg(uri: str) -> str:
        """The URI as a QR code, an SVG document made here (no third party sees it)."""
        svg: str = segno.make(uri, error="m").svg_inline(scale=4, title="TOTP enrolment")
        return svg

    @staticmethod
    def code_at(secret: str, step: int) -> str:
        return pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD).generate_otp(step)

    @staticmethod
    def step_of(at: datetime) -> int:
        return int(at.timestamp()) // PERIOD

    def matching_step(self, secret: str, code: str, at: datetime) -> int | None:
        """The time step whose code ``code`` is, within one step of ``at``; None when it
        is none of them. Every candidate is compared, in constant time."""
        code = code.strip()
        if len(code) != DIGITS or not code.isascii() or not code.isdigit():
            return None
        now = self.step_of(at)
        found = None
        for step in range(now - _DRIFT, now + _DRIFT + 1):
            if hmac.compare_digest(self.code_at(secret, step), code):
                found = step
        return found
