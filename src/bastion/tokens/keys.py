"""The signing key ring for access tokens, and the private key file that holds it.

A :class:`KeySet` is ordered: the newest non-retired key signs. A retired key verifies only
tokens issued no later than its retirement, and only until every token it signed has expired
(:meth:`SigningKey.expired`); a revoked key is removed at once. Tokens carry the ``kid`` of
their key; a verifier takes the key, and with it the algorithm, from that ``kid`` alone
(RFC 8725 §3.1). :class:`~bastion.tokens.ring.KeyRing` applies these rules with the clock in
a running instance, and follows the key file.
Algorithms are an allowlist (ASVS 9.1.2): ``EdDSA`` (Ed25519, the default), ``ES256`` (P-256),
``HS256`` with a secret of at least 32 bytes (RFC 7518 §3.2); no ``RS256`` (ASVS Appendix C).
The key file is written atomically with mode 0600 and refused when its mode grants the group or
others anything; every failure with it is a ``ConfigurationError`` naming ``BASTION_DATA_DIR``.
"""

from __future__ import annotations

import binascii
import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeAlias, get_args

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
    load_pem_private_key,
)
from jwt.utils import base64url_decode, base64url_encode

from bastion.clock import Clock, SystemClock
from bastion.errors import ConfigurationError

__all__ = [
    "KeySet",
    "SigningAlgorithm",
    "SigningKey",
    "ensure_key_file",
    "load_key_file",
    "save_key_file",
]

SigningAlgorithm: TypeAlias = Literal["EdDSA", "ES256", "HS256"]
PrivateKey: TypeAlias = Ed25519PrivateKey | ec.EllipticCurvePrivateKey | bytes
VerificationKey: TypeAlias = Ed25519PublicKey | ec.EllipticCurvePublicKey | bytes

# RFC 7518 §3.2: an HS256 key must be at least as long as the hash output (256 bits).
MIN_HMAC_SECRET_BYTES = 32

_ALGORITHMS: tuple[str, ...] = get_args(SigningAlgorithm)
_KEY_TYPES: dict[str, type] = {
    "EdDSA": Ed25519PrivateKey,
    "ES256": ec.EllipticCurvePrivateKey,
    "HS256": bytes,
}
_FILE_VERSION = 1
_DATA_DIR = "BASTION_DATA_DIR"


def _b64(data: bytes) -> str:
    return base64url_encode(data).decode("ascii")


@dataclass(frozen=True)
class SigningKey:
    """One key of a :class:`KeySet`.

    Raises ``ValueError`` on construction when ``alg`` is not in the allowlist, when the key
    type does not match ``alg`` (an Ed25519 key is never used for HS256: that is how algorithm
    confusion is ruled out at the source, RFC 8725 §2.1), when an ES256 key is not on P-256,
    when an HS256 secret is shorter than 32 bytes, or when a timestamp is naive.
    """

    kid: str
    alg: SigningAlgorithm
    private_key: PrivateKey = field(repr=False)  # never in a repr, a log line or a traceback
    created_at: datetime
    retired_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.kid, str) or not self.kid:
            raise ValueError("kid must be a non-empty string")
        if self.alg not in _ALGORITHMS:
            raise ValueError(f"unsupported signing algorithm {self.alg!r}")
        if not isinstance(self.private_key, _KEY_TYPES[self.alg]):
            raise ValueError(f"key {self.kid}: key type does not match algorithm {self.alg}")
        key = self.private_key
        if isinstance(key, ec.EllipticCurvePrivateKey) and not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"key {self.kid}: ES256 needs a P-256 key")
        if isinstance(key, bytes) and len(key) < MIN_HMAC_SECRET_BYTES:
            raise ValueError(f"key {self.kid}: HS256 secret shorter than 32 bytes")
        for moment in (self.created_at, self.retired_at):
            if moment is not None and moment.utcoffset() is None:
                raise ValueError(f"key {self.kid}: timestamps must be timezone-aware")

    @property
    def retired(self) -> bool:
        return self.retired_at is not None

    def expired(self, now: datetime, retention: timedelta) -> bool:
        """Whether this key is retired and ``retention`` has passed since.

        ``retention`` is the access-token lifetime plus the verifier's leeway: by then every
        token the key signed before its retirement has expired, so the key verifies nothing
        any more and leaves the ring and the JWKS.
        """
        return self.retired_at is not None and now >= self.retired_at + retention

    def signed_in_service(self, issued_at: float) -> bool:
        """Whether a token issued at ``issued_at`` (its ``iat``, POSIX seconds) may carry this
        key's signature: any time for the signing key, no later than the retirement for a
        retired one. A token "issued" with a retired key after its retirement was not made
        by the service: someone holds the old private key. (NIST SP 800-57 Part 1 §5.3: past
        its originator-usage period a key only verifies what it protected before.)
        """
        return self.retired_at is None or issued_at <= self.retired_at.timestamp()

    @cached_property
    def verification_key(self) -> VerificationKey:
        """The key that checks this key's signatures: the public key, or for HS256 the secret.

        Computed once per key and cached, so verification never re-derives or re-parses it.
        """
        if isinstance(self.private_key, bytes):
            return self.private_key
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, str]:
        """The public JWK (RFC 7517) with ``kid``, ``alg`` and ``use: "sig"``.

        Raises ``ValueError`` for HS256: a shared secret has no public half, and publishing it
        would let anyone mint tokens.
        """
        key = self.verification_key
        params: dict[str, str]
        if isinstance(key, Ed25519PublicKey):
            raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
            params = {"kty": "OKP", "crv": "Ed25519", "x": _b64(raw)}
        elif isinstance(key, ec.EllipticCurvePublicKey):
            numbers = key.public_numbers()
            x, y = (_b64(n.to_bytes(32, "big")) for n in (numbers.x, numbers.y))
            params = {"kty": "EC", "crv": "P-256", "x": x, "y": y}
        else:
            raise ValueError(f"key {self.kid}: HS256 secrets have no public JWK")
        return {**params, "kid": self.kid, "alg": self.alg, "use": "sig"}


def _new_key(alg: SigningAlgorithm, now: datetime) -> SigningKey:
    private: PrivateKey
    if alg == "EdDSA":
        private = Ed25519PrivateKey.generate()
    elif alg == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif alg == "HS256":
        private = secrets.token_bytes(MIN_HMAC_SECRET_BYTES)
    else:
        raise ValueError(f"unsupported signing algorithm {alg!r}")
    return SigningKey(_b64(secrets.token_bytes(16)), alg, private, now)


class KeySet:
    """An ordered key ring: the newest non-retired key signs, every key present verifies.

    Raises ``ValueError`` when the keys are empty, share a ``kid``, or are all retired.
    """

    def __init__(self, keys: Iterable[SigningKey], *, secret: bytes | None = None) -> None:
        """``secret``: the ring's own 32-byte secret for :meth:`derive_secret`, kept in
        the key file and across rotations (a ring read from an older file has none: it is
        derived from the oldest key now, before a prune or revocation can remove that key)."""
        self._replace(list(keys))
        self._secret = secret if secret is not None else self._legacy_secret()

    def _replace(self, keys: list[SigningKey]) -> None:
        by_kid = {key.kid: key for key in keys}
        if len(by_kid) != len(keys):
            raise ValueError("duplicate kid in key set")
        active = [key for key in keys if not key.retired]
        if not active:
            raise ValueError("key set has no key that is not retired")
        self._keys = tuple(keys)
        self._by_kid = by_kid
        self._signing = active[-1]

    @classmethod
    def generate(cls, alg: SigningAlgorithm = "EdDSA", *, clock: Clock | None = None) -> KeySet:
        """A new key set holding one fresh key; the ``kid`` is 16 random bytes, base64url."""
        return cls([_new_key(alg, (clock or SystemClock()).now())], secret=secrets.token_bytes(32))

    @classmethod
    def from_secret(cls, secret: bytes, *, kid: str = "hs256") -> KeySet:
        """A key set holding one HS256 key made from a configured shared secret.

        Raises ``ConfigurationError("BASTION_JWT_SECRET", ...)`` when the secret is shorter than
        32 bytes (RFC 7518 §3.2; OWASP JWT Cheat Sheet: HMAC secrets at least the hash size).
        """
        if len(secret) < MIN_HMAC_SECRET_BYTES:
            reason = f"HS256 secret is {len(secret)} bytes; at least 32 random bytes required"
            raise ConfigurationError("BASTION_JWT_SECRET", reason)
        return cls([SigningKey(kid, "HS256", bytes(secret), SystemClock().now())])

    @property
    def signing_key(self) -> SigningKey:
        return self._signing

    @property
    def keys(self) -> tuple[SigningKey, ...]:
        return self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def derive_secret(self, purpose: str) -> bytes:
        """A 32-byte secret for ``purpose`` (HKDF-SHA256, RFC 5869) from the ring's own
        secret: every instance sharing the key file derives the same one, and rotations
        keep it. For HMACs that are not tokens (device cookies, challenges, login-failure
        keys); never a signing key itself."""
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(
            self._secret
        )

    def _legacy_secret(self) -> bytes:
        """A ring from a file without its own secret: one from its oldest key (frozen into
        the file at the next rotation, so the value does not change then)."""
        key = self._keys[0].private_key
        if isinstance(key, bytes):
            material = key
        elif isinstance(key, Ed25519PrivateKey):
            material = key.private_bytes_raw()
        else:
            material = key.private_numbers().private_value.to_bytes(32, "big")
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ring").derive(material)

    def get(self, kid: str) -> SigningKey | None:
        """The key with this ``kid``, or None: a dictionary lookup, never a file or URL."""
        return self._by_kid.get(kid)

    def rotate(self, *, clock: Clock, alg: SigningAlgorithm | None = None) -> SigningKey:
        """Add a new signing key and retire the previous one, which still verifies."""
        now = clock.now()
        previous = self._signing
        new = _new_key(alg or previous.alg, now)
        kept = [replace(key, retired_at=now) if key is previous else key for key in self._keys]
        self._replace([*kept, new])
        return new

    def prune(self, *, clock: Clock, keep_for: timedelta) -> list[str]:
        """Remove the keys :meth:`SigningKey.expired` after ``keep_for``; return their kids.

        Pass the access-token TTL plus leeway, so a retired key keeps verifying until every
        token it signed has expired.
        """
        now = clock.now()
        removed = [key.kid for key in self._keys if key.expired(now, keep_for)]
        if removed:
            self._replace([key for key in self._keys if key.kid not in removed])
        return removed

    def revoke(self, kid: str) -> SigningKey:
        """Remove the key ``kid`` at once, whatever tokens it signed; return it.

        For a key that leaked: every token it signed, and every token forged with it, is
        refused from then on. Raises ``KeyError`` when there is no such key, and
        ``ValueError`` for the signing key: :meth:`rotate` first, so that a key signs.
        """
        key = self._by_kid[kid]
        if key is self._signing:
            raise ValueError(f"key {kid} is the signing key: rotate first, then revoke it")
        self._replace([item for item in self._keys if item is not key])
        return key

    def keeping(self, previous: KeySet) -> KeySet:
        """This key set, with ``previous``'s key object wherever a key is unchanged (same
        kid, algorithm, material and times): what was verified with it stays verified."""
        kept = []
        for key in self._keys:
            old = previous.get(key.kid)
            kept.append(old if old is not None and _dump(old) == _dump(key) else key)
        return KeySet(kept, secret=self._secret)

    def public_jwks(self) -> dict[str, list[dict[str, str]]]:
        """``{"keys": [...]}``: the public JWKs of the asymmetric keys, never private members.

        Every key present, however long retired: a running service publishes
        :meth:`KeyRing.public_jwks <bastion.tokens.ring.KeyRing.public_jwks>`."""
        return {"keys": [key.public_jwk() for key in self._keys if key.alg != "HS256"]}

    def to_json(self) -> str:
        """Private serialization for the key file: PKCS#8 PEM, base64url secrets, ISO times."""
        document: dict[str, Any] = {
            "version": _FILE_VERSION,
            "keys": [_dump(k) for k in self._keys],
        }
        document["secret"] = _b64(self._secret)
        return json.dumps(document)

    @classmethod
    def from_json(cls, text: str) -> KeySet:
        """Read what :meth:`to_json` wrote. Raises ``ValueError`` when it is malformed."""
        try:
            document = json.loads(text)
            if document.get("version") != _FILE_VERSION:
                raise ValueError("unsupported key file version")
            secret = document.get("secret")
            return cls(
                (_load(item) for item in document["keys"]),
                secret=base64url_decode(secret) if isinstance(secret, str) else None,
            )
        except (KeyError, TypeError, AttributeError, UnsupportedAlgorithm) as exc:
            raise ValueError(f"malformed key set ({type(exc).__name__})") from None


def _dump(key: SigningKey) -> dict[str, Any]:
    private, retired = key.private_key, key.retired_at
    if isinstance(private, bytes):
        material = _b64(private)
    else:
        pem = private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())
        material = pem.decode("ascii")
    return {
        "kid": key.kid,
        "alg": key.alg,
        "key": material,
        "created_at": key.created_at.isoformat(),
        "retired_at": None if retired is None else retired.isoformat(),
    }


def _load(item: dict[str, Any]) -> SigningKey:
    alg, material, retired = item["alg"], item["key"], item["retired_at"]
    private: Any = (
        base64url_decode(material)
        if alg == "HS256"
        else load_pem_private_key(material.encode("ascii"), password=None)
    )
    created = datetime.fromisoformat(item["created_at"])
    retired_at = None if retired is None else datetime.fromisoformat(retired)
    return SigningKey(item["kid"], alg, private, created, retired_at)


def load_key_file(path: Path) -> KeySet:
    """Load the key file.

    Raises ``ConfigurationError("BASTION_DATA_DIR", ...)`` naming the path when the file is
    missing, unreadable, not a regular file, corrupt, or when its mode grants the group or
    others any permission (private keys stay private to the service account).
    """
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ConfigurationError(_DATA_DIR, f"key file {path} is not a regular file")
            mode = stat.S_IMODE(info.st_mode)
            if os.name == "posix" and mode & 0o077:
                reason = f"key file {path} has mode {mode:#o}; group/other need none: chmod 600"
                raise ConfigurationError(_DATA_DIR, reason)
            data = handle.read()
    except FileNotFoundError:
        raise ConfigurationError(_DATA_DIR, f"key file {path} does not exist") from None
    except OSError as exc:
        raise ConfigurationError(_DATA_DIR, f"cannot read key file {path}: {exc}") from None
    try:
        return KeySet.from_json(data.decode("utf-8"))
    except (ValueError, binascii.Error) as exc:
        raise ConfigurationError(_DATA_DIR, f"key file {path} is corrupt: {exc}") from None


def _write_private(path: Path, text: str, *, exclusive: bool) -> bool:
    """Write ``text`` to ``path`` atomically, mode 0600; False if exclusive and it exists."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fsync(handle.fileno())
            if exclusive:
                try:
                    os.link(temporary, path)  # fails if another process wrote it first
                except FileExistsError:
                    return False
            else:
                os.replace(temporary, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        with contextlib.suppress(OSError):
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)  # make the rename itself durable
            finally:
                os.close(directory)
    except OSError as exc:
        raise ConfigurationError(_DATA_DIR, f"cannot write key file {path}: {exc}") from None
    return True


def save_key_file(path: Path, keys: KeySet) -> None:
    """Atomically replace the key file: a 0600 temporary file in the same directory, fsync,
    ``os.replace``. The parent directory is created with mode 0700 when missing.

    Raises ``ConfigurationError("BASTION_DATA_DIR", ...)`` when it cannot be written.
    """
    _write_private(path, keys.to_json(), exclusive=False)


def ensure_key_file(
    path: Path, alg: SigningAlgorithm = "EdDSA", *, clock: Clock | None = None
) -> tuple[KeySet, bool]:
    """Load the key file, or generate and save a new key set when it is missing.

    The flag says whether keys were generated. When several processes start at once, exactly
    one creates the file and the others load it. Raises as :func:`load_key_file`.
    """
    if os.path.lexists(path):
        return load_key_file(path), False
    keys = KeySet.generate(alg, clock=clock)
    if _write_private(path, keys.to_json(), exclusive=True):
        return keys, True
    return load_key_file(path), False
