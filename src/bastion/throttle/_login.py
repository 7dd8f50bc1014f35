"""Brute-force defence for password logins that cannot be turned against the user.

Failures are counted per account (from clients without a device cookie), per account
and client IP, and per device cookie (OWASP "Slow Down Online Guessing Attacks with
Device Cookies"):

- an account and IP pair, or a device, that keeps failing waits: ``delay_base``
  seconds after ``delay_after`` failures, doubling to ``delay_cap`` (Keycloak-like);
- an account that keeps failing asks clients without a device cookie to solve a
  proof-of-work challenge (ALTCHA) after ``challenge_after`` failures, instead of
  locking: the attacker pays per guess, the user is never locked out (ASVS 6.1.1);
- after ``lock_after`` consecutive failures (NIST SP 800-63B §3.2.2: at most 100) the
  account is locked for clients without a device cookie until an admin unlocks it;
- a device cookie, issued at each successful login and bound to the account, lets its
  holder past the account's challenge, delays and lock: failures elsewhere never hold
  back the user's own browser;
- one IP failing on ``stuffing_accounts`` different accounts within
  ``stuffing_window`` seconds is credential stuffing: its logins are refused for
  ``stuffing_block`` seconds.

A success resets the account's counters. Every refusal answers as a wrong password
does, except for ``Retry-After`` (and the challenge, which unknown emails get alike).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, cast

from altcha import v1 as altcha

from bastion.clock import Clock, SystemClock
from bastion.throttle._attempts import AttemptStore, Counter, Stuffing
from bastion.throttle._model import Check, Limiter, Policy, StoreUnavailableError, Verdict

__all__ = ["FailureOutcome", "LoginDefence", "LoginGate", "LoginRules"]

_DEVICE_VERSION = "d1"
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

    def issue_device(self, account: str) -> str:
        nonce = secrets.token_urlsafe(16)
        return f"{_DEVICE_VERSION}.{nonce}.{self._device_mac(account, nonce)}"

    def _device_mac(self, account: str, nonce: str) -> str:
        message = f"device|{account}|{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:40]

    def device_of(self, cookie: str | None, account: str) -> str | None:
        """The device's nonce when ``cookie`` is a device cookie issued for ``account``."""
        if not cookie or len(cookie) > 128:
            return None
        version, _, rest = cookie.partition(".")
        nonce, _, mac = rest.partition(".")
        if version != _DEVICE_VERSION or not nonce or not mac:
            return None
        return nonce if hmac.compare_digest(mac, self._device_mac(account, nonce)) else None

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
        self, account: str, ip: str, *, device_cookie: str | None, solution: str | None
    ) -> LoginGate:
        """Decide whether this attempt may go on to check the password.

        Raises:
            StoreUnavailableError: the shared store did not answer (fail closed).
        """
        device = self.device_of(device_cookie, account)
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
            lock=account_failures == rules.lock_after,
            stuffing_blocked=blocked,
            stuffing_accounts=distinct,
        )

    async def succeeded(self, account: str, ip: str, gate: LoginGate) -> None:
        keys = {f"acct:{account}", f"pair:{account}:{ip}", *self._keys(account, ip, gate.device)}
        await self.store.clear(sorted(keys))
        await self.limiter.reset(f"acct:{account}", self.account_policy)

    async def unlock(self, account: str) -> None:
        """Forget the account's failures (an admin or an unlock link ended the lock)."""
        await self.store.clear([f"acct:{account}"])

    async def aclose(self) -> None:
        await self.store.aclose()
