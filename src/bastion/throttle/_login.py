"""Brute-force defence for password logins that cannot be turned against the user.

Failures are counted per account (from clients without a device cookie), per account
and client IP, and per device cookie (OWASP "Slow Down Online Guessing Attacks with
Device Cookies"):

- an account and IP pair, or a device, that keeps failing waits: ``delay_base``
  seconds after ``delay_after`` failures, doubling to ``delay_cap`` (Keycloak-like);
- an account that keeps failing asks clients without a device cookie to solve a
  proof-of-work challenge (ALTCHA) after ``challenge_after`` failures, instead of
  locking: the attacker pays per guess, the user is never locked out (ASVS 6.1.1);
- after ``lock_after`` consecutive failures (NIST SP 800-63B §5.2.2: at most 100) the
  account is locked for clients without a device cookie until the owner's unlock link,
  a reset or an admin ends it. The lock stops guessing, not the owner: past it, the
  right password from such a client answers as a wrong one (a guess learns nothing)
  and emails the owner a sign-in link (:mod:`bastion.accounts`);
- a device cookie, issued at each successful login and bound to the account, its
  password (a keyed digest of the hash: a change or reset retires every cookie) and its
  issue time (it dies ``device_ttl`` seconds later, whatever the browser keeps), lets
  its holder past the account's challenge, delays and lock: failures elsewhere never
  hold back the user's own browser;
- one IP failing on ``stuffing_accounts`` different accounts within
  ``stuffing_window`` seconds is credential stuffing: its logins are refused for
  ``stuffing_block`` seconds.

A success without a device cookie resets the account's counters; a device cookie's
success resets only that device's (the owner's browser refills no attacker's budget).
Every refusal answers as a wrong password
does, except for ``Retry-After`` (and the challenge, which unknown emails get alike).

A device cookie is parsed strictly: anything but the exact ASCII shape (too long,
non-ASCII, another version) is no cookie at all, never an exception.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from altcha import v1 as altcha

from bastion.clock import Clock, SystemClock
from bastion.throttle._attempts import AttemptStore, Counter, Stuffing
from bastion.throttle._model import Check, Limiter, Policy, StoreUnavailableError, Verdict

__all__ = ["FailureOutcome", "LoginDefence", "LoginGate", "LoginRules"]

_DEVICE_VERSION = "d2"
_DEVICE_MAX_CHARS = 128
# d2.<nonce>.<issued, unix seconds>.<credential generation>.<mac>
_DEVICE_SHAPE = re.compile(
    r"d2\.([A-Za-z0-9_-]{16,32})\.([0-9]{1,12})\.([0-9a-f]{8})\.([0-9a-f]{40})", re.ASCII
)
_DEVICE_SKEW = 300  # seconds an issue time may lie ahead of this instance's clock
_TEXT_FIELDS = ("algorithm", "challenge", "salt", "signature")


def _well_formed(data: dict[str, object]) -> bool:
    number = data.get("number")
    return (
        all(isinstance(data.get(name), str) for name in _TEXT_FIELDS)
        and isinstance(number, int)
        and not isinstance(number, bool)
        and 0 <= number < 10**12
    )


@dataclass(frozen=True)
class LoginRules:
    delay_after: int = 5
    delay_base: int = 30
    delay_cap: int = 900
    challenge_after: int = 10
    challenge_difficulty: int = 100_000
    challenge_ttl: int = 300
    lock_after: int = 100
    failure_reset: int = 43_200
    stuffing_accounts: int = 10
    stuffing_window: int = 600
    stuffing_block: int = 900
    device_ttl: int = 180 * 86_400

    def delay(self, failures: int) -> int:
        """Seconds to wait after ``failures`` consecutive failures."""
        if failures < self.delay_after:
            return 0
        return min(self.delay_base << min(failures - self.delay_after, 40), self.delay_cap)


@dataclass(frozen=True)
class LoginGate:
    """Whether a login attempt may check its password.

    ``refusal`` is "" (go on), ``"rate"`` (the per-account limit: ``verdict``),
    ``"stuffing"`` (the IP is blocked), ``"delayed"`` or ``"challenge"``.
    """

    refusal: Literal["", "rate", "stuffing", "delayed", "challenge"]
    trusted: bool = False
    device: str | None = None
    retry_after: int = 0
    verdict: Verdict | None = None
    challenge: dict[str, object] | None = None


@dataclass(frozen=True)
class FailureOutcome:
    account_failures: int
    retry_after: int
    lock: bool
    stuffing_blocked: bool
    stuffing_accounts: int


class LoginDefence:
    def __init__(
        self,
        store: AttemptStore,
        limiter: Limiter,
        secret: bytes,
        *,
        rules: LoginRules | None = None,
        account_policy: Policy | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``secret`` keys the device cookies, challenges and the hashed account keys."""
        self.store = store
        self.limiter = limiter
        self.rules = rules or LoginRules()
        self.account_policy = account_policy or Policy("login", 5, 60)
        self._secret = secret
        self._clock = clock or SystemClock()

    # -- keys --------------------------------------------------------------------------

    def account_key(self, email_key: str) -> str:
        """A keyed hash of the normalised email: no address in Redis, same for unknown ones."""
        digest = hmac.new(self._secret, b"acct|" + email_key.encode(), hashlib.sha256)
        return digest.hexdigest()[:32]

    def credential_generation(self, password_hash: str | None) -> str:
        """A short keyed digest of the account's password hash: it changes with every
        password change or reset (and hash upgrade), and says nothing about the hash."""
        message = b"gen|" + (password_hash or "").encode("utf-8", "surrogatepass")
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:8]

    def issue_device(self, account: str, generation: str) -> str:
        """A device cookie for ``account`` at its credential ``generation``, issued now."""
        nonce = secrets.token_urlsafe(16)
        issued = str(int(self._clock.now().timestamp()))
        mac = self._device_mac(account, nonce, issued, generation)
        return f"{_DEVICE_VERSION}.{nonce}.{issued}.{generation}.{mac}"

    def _device_mac(self, account: str, nonce: str, issued: str, generation: str) -> str:
        message = f"device|{account}|{nonce}|{issued}|{generation}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:40]

    def device_of(self, cookie: str | None, account: str, generation: str) -> str | None:
        """The device's nonce when ``cookie`` is a live device cookie of ``account``.

        None (the cookie counts as absent) when it is malformed in any way, forged or
        altered, issued for another account or an earlier password (``generation``), or
        older than ``device_ttl`` (OWASP Session Management: expiry is enforced by the
        server, not left to the browser). Never raises.
        """
        if not cookie or len(cookie) > _DEVICE_MAX_CHARS:
            return None
        shape = _DEVICE_SHAPE.fullmatch(cookie)
        if shape is None:
            return None
        nonce, issued, stamped, mac = shape.groups()
        expected = self._device_mac(account, nonce, issued, stamped)
        # Bytes of checked ASCII: compare_digest raises on non-ASCII text.
        if not hmac.compare_digest(mac.encode("ascii"), expected.encode("ascii")):
            return None
        if not hmac.compare_digest(stamped.encode("ascii"), generation.encode("ascii")):
            return None  # issued before the password changed
        age = self._clock.now().timestamp() - int(issued)
        if age < -_DEVICE_SKEW or age >= self.rules.device_ttl:
            return None
        return nonce

    # -- the challenge -----------------------------------------------------------------

    def new_challenge(self, account: str) -> dict[str, object]:
        """An ALTCHA challenge bound to this account, valid ``challenge_ttl`` seconds."""
        expires: datetime = self._clock.now() + timedelta(seconds=self.rules.challenge_ttl)
        challenge = altcha.create_challenge(
            altcha.ChallengeOptions(
                hmac_key=self._secret,
                max_number=self.rules.challenge_difficulty,
                expires=expires,
                params={"acct": account},
            )
        )
        return {
            "algorithm": challenge.algorithm,
            "challenge": challenge.challenge,
            "maxnumber": challenge.max_number,
            "salt": challenge.salt,
            "signature": challenge.signature,
        }

    async def _solved(self, payload: str | None, account: str) -> bool:
        if not payload or len(payload) > 4096:
            return False
        try:
            data = json.loads(base64.b64decode(payload, validate=True))
        except (ValueError, TypeError):
            return False
        if not isinstance(data, dict) or not _well_formed(data):
            return False
        solution = cast(altcha.PayloadType, data)
        try:
            ok, _ = altcha.verify_solution(solution, self._secret, check_expires=True)
            params = altcha.extract_params(solution)
        except Exception:  # a hostile payload must not become a 500
            return False
        if not ok or params.get("acct") != [account] or "expires" not in params:
            return False
        # One solution, one attempt: a solved challenge cannot be replayed.
        return await self.store.claim(f"pow:{data['challenge']}", self.rules.challenge_ttl)

    # -- the flow ----------------------------------------------------------------------

    def _keys(self, account: str, ip: str, device: str | None) -> list[str]:
        if device:
            return [f"dev:{device}"]
        return [f"acct:{account}", f"pair:{account}:{ip}"]

    async def before(
        self,
        account: str,
        ip: str,
        *,
        device_cookie: str | None,
        solution: str | None,
        generation: str,
    ) -> LoginGate:
        """Decide whether this attempt may go on to check the password.

        ``generation`` is the account's :meth:`credential_generation` ("" for an
        unknown email): a device cookie of an earlier password counts as absent.

        Raises:
            StoreUnavailableError: the shared store did not answer (fail closed).
        """
        device = self.device_of(device_cookie, account, generation)
        trusted = device is not None
        partition = f"dev:{device}" if device else f"acct:{account}"
        # No repeat-offender block here: anyone can fill an account's partition, and a
        # block would lock its owner out. Past the quota, a client without the device
        # cookie must solve the challenge instead (the attacker pays, the user gets in).
        verdict = await self.limiter.acquire([Check(self.account_policy, partition)], offender=None)
        if verdict.degraded:
            raise StoreUnavailableError("login limits are not shared while the store is down")
        if not verdict.allowed and trusted:
            return LoginGate("rate", trusted, device, verdict.retry_after, verdict)
        keys = self._keys(account, ip, device)
        now, counters, block_ms = await self.store.read(keys, ip)
        if block_ms > 0 and not trusted:
            return LoginGate("stuffing", trusted, device, math.ceil(block_ms / 1000))
        wait = self._wait(counters[-1], now)
        if wait > 0:
            return LoginGate("delayed", trusted, device, wait)
        over_quota = not verdict.allowed
        challenged = not trusted and (
            over_quota or counters[0].failures >= self.rules.challenge_after
        )
        if challenged and not await self._solved(solution, account):
            challenge = self.new_challenge(account)
            return LoginGate("challenge", trusted, device, challenge=challenge)
        return LoginGate("", trusted, device)

    def _wait(self, counter: Counter, now: float) -> int:
        delay = self.rules.delay(counter.failures)
        if not delay:
            return 0
        left = counter.last_ms + delay * 1000 - now
        return math.ceil(left / 1000) if left > 0 else 0

    async def failed(self, account: str, ip: str, gate: LoginGate) -> FailureOutcome:
        """Count a failed password check (or a refused attempt of a locked account)."""
        keys = self._keys(account, ip, gate.device)
        rules = self.rules
        stuffing = Stuffing(
            ip, account, rules.stuffing_accounts, rules.stuffing_window, rules.stuffing_block
        )
        counts, distinct, blocked = await self.store.fail(keys, rules.failure_reset, stuffing)
        account_failures = 0 if gate.trusted else counts[0]
        return FailureOutcome(
            account_failures=account_failures,
            retry_after=rules.delay(counts[-1]),
            # At or past the threshold: a count that passed it without a lock (failures
            # counted before the account existed, a lock write that failed) still locks.
            lock=account_failures >= rules.lock_after,
            stuffing_blocked=blocked,
            stuffing_accounts=distinct,
        )

    async def succeeded(self, account: str, ip: str, gate: LoginGate) -> None:
        """Forget the failures this success answers for. A device cookie's success clears
        only that device's count: the owner's own browser signing in must not hand an
        attacker elsewhere a fresh budget of guesses before the lock."""
        if gate.trusted:
            await self.store.clear(self._keys(account, ip, gate.device))
            return
        await self.store.clear([f"acct:{account}", f"pair:{account}:{ip}"])
        await self.limiter.reset(f"acct:{account}", self.account_policy)

    async def unlock(self, account: str) -> None:
        """Forget the account's failures (an admin or an unlock link ended the lock)."""
        await self.store.clear([f"acct:{account}"])

    async def aclose(self) -> None:
        await self.store.aclose()
