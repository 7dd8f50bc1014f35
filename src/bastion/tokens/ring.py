"""The key ring of a running instance: a :class:`KeySet` that follows the clock and its key file.

Two rules decide which keys still verify, from the retirement times and the injected clock
alone (no restart, no rewrite of the file):

* a retired key verifies only for ``retention`` after its retirement (the access-token lifetime
  plus the verifier's leeway: by then every token it signed has expired); then it leaves
  verification and the JWKS (:meth:`SigningKey.expired`);
* a retired key verifies only tokens issued no later than its retirement
  (:meth:`SigningKey.signed_in_service`, checked by :class:`~bastion.tokens.AccessTokens`).

With a ``path``, the ring re-reads the key file so that ``bastion keys rotate`` and
``bastion keys revoke`` reach running instances without a restart:

* at most every ``check_every`` (1 s by default, on the injected clock) one ``stat`` of the
  file; it is read again only when its inode, size or modification time changed. Requests in
  between cost a clock reading, never a system call;
* when a token names a ``kid`` the ring does not know, the file is read again at once, at
  most every ``unknown_kid_every`` (5 s): forged ``kid`` values cannot make it read more.

A file that cannot be read keeps the keys the ring has (logged once per failure, and read
again at the next check). A key removed from the file (revoked) is gone at the next read,
even though the ring held it before. Keys whose material is unchanged keep their object
across reads, so tokens remembered as verified stay so; any other change makes
:class:`~bastion.tokens.AccessTokens` verify them again.
"""

from __future__ import annotations

import logging
import os
from datetime import datetime, timedelta
from pathlib import Path

from bastion.clock import Clock, SystemClock
from bastion.errors import ConfigurationError
from bastion.tokens.keys import KeySet, SigningKey, load_key_file

__all__ = ["KeyRing"]

_logger = logging.getLogger("bastion.keys")

_FileState = tuple[int, int, int, int, int]  # device, inode, size, mtime and ctime (ns)


class KeyRing:
    """The keys one instance signs and verifies with.

    Raises ``ValueError`` when ``retention`` is negative or an interval is not positive.
    """

    def __init__(
        self,
        keys: KeySet,
        *,
        retention: timedelta,
        clock: Clock | None = None,
        path: Path | None = None,
        check_every: timedelta = timedelta(seconds=1),
        unknown_kid_every: timedelta = timedelta(seconds=5),
    ) -> None:
        if retention < timedelta(0):
            raise ValueError("retention must not be negative")
        if check_every <= timedelta(0) or unknown_kid_every <= timedelta(0):
            raise ValueError("check intervals must be positive")
        self._keys = keys
        self._origin = keys  # the derived secrets are those of the ring at start
        self._retention = retention
        self._clock: Clock = clock or SystemClock()
        self._path = path
        self._check_every = check_every
        self._unknown_kid_every = unknown_kid_every
        now = self._clock.now()
        self._checked_at = now
        self._forced_at: datetime | None = None
        # Unknown at first: the first check reads the file (a change between the caller's
        # read and now is not missed), and keeps the keys if they are the same.
        self._state: _FileState | None = None
        self._failure: str | None = None

    @property
    def keys(self) -> KeySet:
        """The key set as last read (retired keys past their retention included)."""
        self._follow(self._clock.now())
        return self._keys

    @property
    def retention(self) -> timedelta:
        return self._retention

    @property
    def signing_key(self) -> SigningKey:
        self._follow(self._clock.now())
        return self._keys.signing_key

    def get(self, kid: str) -> SigningKey | None:
        """The key ``kid`` if it still verifies: present (not revoked) and not retired for
        longer than the retention. An unknown ``kid`` makes the ring read its file again,
        rate-limited; never a file named by the ``kid``."""
        now = self._clock.now()
        self._follow(now)
        key = self._keys.get(kid)
        if key is None and self._path is not None and self._may_force(now):
            self._forced_at = now
            self._read(now, force=True)
            key = self._keys.get(kid)
        if key is None or key.expired(now, self._retention):
            return None
        return key

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """``{"keys": [...]}``: the public JWKs of the asymmetric keys that still verify."""
        now = self._clock.now()
        self._follow(now)
        return {
            "keys": [
                key.public_jwk()
                for key in self._keys.keys
                if key.alg != "HS256" and not key.expired(now, self._retention)
            ]
        }

    def derive_secret(self, purpose: str) -> bytes:
        """:meth:`KeySet.derive_secret` of the ring read at start: what was derived from it
        (cookies, challenges, the event chain) stays valid whatever the file says later."""
        return self._origin.derive_secret(purpose)

    def reload(self) -> bool:
        """Read the key file now, whatever its state; whether the keys changed (always
        False for a ring without a file)."""
        return self._path is not None and self._read(self._clock.now(), force=True)

    def _may_force(self, now: datetime) -> bool:
        last = self._forced_at
        return last is None or now >= last + self._unknown_kid_every or now < last

    def _follow(self, now: datetime) -> None:
        if self._path is None:
            return
        # A clock set back (now < last check) must not stop the checks until it catches up.
        if self._checked_at <= now < self._checked_at + self._check_every:
            return
        self._read(now, force=False)

    def _read(self, now: datetime, *, force: bool) -> bool:
        assert self._path is not None
        self._checked_at = now
        state = _file_state(self._path)
        if not force and state is not None and state == self._state:
            return False
        try:
            loaded = load_key_file(self._path)
        except ConfigurationError as exc:
            if str(exc) != self._failure:
                _logger.error("keeping the signing keys in memory: %s", exc)
            self._failure = str(exc)
            return False
        if self._failure is not None:
            _logger.warning("signing keys read again from %s", self._path)
            self._failure = None
        self._state = state
        return self._adopt(loaded)

    def _adopt(self, loaded: KeySet) -> bool:
        """Take ``loaded``, keeping the objects of keys that did not change."""
        if loaded.to_json() == self._keys.to_json():
            return False
        self._keys = loaded.keeping(self._keys)
        _logger.info(
            "signing keys changed: %s signs; %d key(s) in the ring",
            self._keys.signing_key.kid,
            len(self._keys),
        )
        return True


def _file_state(path: Path) -> _FileState | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
