"""The password policy: length, a common-password list, and a strength estimate.

Follows NIST SP 800-63B §3.1.1.2 and ASVS 6.2: a minimum length, a generous maximum,
a check against commonly used passwords and context words, and no composition rules
(ASVS 6.2.5: no "one digit, one symbol", which pushes users towards predictable
patterns).
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterable, Sequence
from typing import Any, cast

from zxcvbn import zxcvbn
from zxcvbn.frequency_lists import FREQUENCY_LISTS

from bastion.errors import PasswordPolicyError

__all__ = ["PasswordPolicy"]

_ABSOLUTE_MIN_LENGTH = 12
# ASVS 6.2.9, NIST SP 800-63B §3.1.1.2: allow at least 64 characters; a character is
# up to 4 bytes in UTF-8.
_ABSOLUTE_MIN_MAX_BYTES = 64 * 4
# zxcvbn refuses longer input (ValueError) because its matching is superlinear.
_ZXCVBN_MAX_LENGTH = 72

_COMMON_REASON = "This password is one of the most commonly used passwords."
_GUESSABLE_REASON = "This password is too easy to guess."
_INVALID_TEXT_REASON = "Password contains characters that are not valid text."

# zxcvbn keeps the user inputs of a call in a module-level dictionary, so two threads
# scoring at once could see each other's inputs. The lock makes check() thread-safe.
_zxcvbn_lock = threading.Lock()


def _casefolded(passwords: Iterable[str]) -> frozenset[str]:
    return frozenset(password.casefold() for password in passwords)


@functools.cache
def _default_common_passwords() -> frozenset[str]:
    """zxcvbn's bundled list, built once on first use.

    ``zxcvbn.frequency_lists.FREQUENCY_LISTS["passwords"]``: the 30,000 most frequent
    passwords of leaked password corpora, most frequent first; ASVS 6.2.4 asks for at
    least the top 3,000.
    """
    return _casefolded(cast("list[str]", FREQUENCY_LISTS["passwords"]))


class PasswordPolicy:
    """Decide whether a new password is acceptable.

    ``min_length`` counts Unicode code points, not bytes (NIST SP 800-63B §3.1.1.2).
    It defaults to 15 (ASVS 6.2.1 strongly recommends 15; NIST asks 15 for a
    password used as the only factor) and can never be set below 12 (ASVS 4.0.3
    V2.1.1). ``max_bytes`` bounds the UTF-8 encoded size, keeping request bodies and
    hashing input small while allowing long passphrases; it cannot be set below 256
    bytes, 64 characters of up to 4 bytes (ASVS 6.2.9).

    ``common_passwords`` replaces the default list: zxcvbn's 30,000 most common
    passwords (``zxcvbn.frequency_lists.FREQUENCY_LISTS["passwords"]``, ASVS 6.2.4,
    NIST SP 800-63B §3.1.1.2 "commonly-used passwords"). Matching is an exact match
    of the whole password after case folding.

    ``min_score`` is the lowest accepted zxcvbn score, 0 to 4. zxcvbn also weighs
    the ``user_inputs`` given to :meth:`check`, the context words of ASVS 6.2.11.

    Raises :class:`ValueError` for a configuration weaker than those floors.
    """

    def __init__(
        self,
        *,
        min_length: int = 15,
        max_bytes: int = 1024,
        min_score: int = 3,
        common_passwords: frozenset[str] | None = None,
    ) -> None:
        if min_length < _ABSOLUTE_MIN_LENGTH:
            raise ValueError(f"min_length must be at least {_ABSOLUTE_MIN_LENGTH}")
        if max_bytes < max(_ABSOLUTE_MIN_MAX_BYTES, min_length):
            raise ValueError(f"max_bytes must be at least {_ABSOLUTE_MIN_MAX_BYTES}")
        if not 0 <= min_score <= 4:
            raise ValueError("min_score must be between 0 and 4")
        self.min_length = min_length
        self.max_bytes = max_bytes
        self.min_score = min_score
        self._common = (
            _default_common_passwords()
            if common_passwords is None
            else _casefolded(common_passwords)
        )

    def check(self, password: str, *, user_inputs: Sequence[str] = ()) -> None:
        """Return if ``password`` is acceptable, else raise :class:`PasswordPolicyError`.

        The error's ``reasons`` are sentences to show the user. ``user_inputs`` are
        words the password should not lean on (the email address, its local part,
        the display name); the strength estimate treats them as known to an attacker.

        Length is checked first and, when it fails, alone. Only the first 72 code
        points are scored by zxcvbn, which refuses longer input; the characters after
        them can only add to the real strength, so a longer passphrase is judged no
        stronger than its beginning.

        This is CPU-bound (up to about 0.1 s for a 72-character password) and
        thread-safe: on an event loop, run it with :func:`asyncio.to_thread`.
        """
        try:
            encoded = password.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates, e.g. from a JSON "\ud800" escape
            raise PasswordPolicyError([_INVALID_TEXT_REASON]) from None
        reasons: list[str] = []
        if len(password) < self.min_length:
            reasons.append(f"Password must be at least {self.min_length} characters.")
        if len(encoded) > self.max_bytes:
            reasons.append(f"Password must be at most {self.max_bytes} bytes.")
        if reasons:
            raise PasswordPolicyError(reasons)

        if password.casefold() in self._common:
            raise PasswordPolicyError([_COMMON_REASON])

        result = self._score(password[:_ZXCVBN_MAX_LENGTH], user_inputs)
        if int(result["score"]) < self.min_score:
            raise PasswordPolicyError([self._guessable_reason(result)])

    @staticmethod
    def _score(password: str, user_inputs: Sequence[str]) -> dict[str, Any]:
        inputs = [value for value in user_inputs if value]
        with _zxcvbn_lock:
            return cast("dict[str, Any]", zxcvbn(password, user_inputs=inputs))

    @staticmethod
    def _guessable_reason(result: dict[str, Any]) -> str:
        """zxcvbn's warning and suggestions after a generic sentence, when it has any."""
        feedback = cast("dict[str, Any]", result.get("feedback") or {})
        warning = str(feedback.get("warning") or "")
        suggestions = [str(s) for s in feedback.get("suggestions") or () if s]
        return " ".join(part for part in (_GUESSABLE_REASON, warning, *suggestions) if part)
