"""The signing key ring: generation, rotation, pruning, JWKS, serialization and the key file."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.utils import base64url_decode

from bastion.clock import FrozenClock
from bastion.errors import ConfigurationError, InvalidTokenError
from bastion.tokens import (
    AccessTokens,
    KeySet,
    SigningKey,
    ensure_key_file,
    load_key_file,
    save_key_file,
)
from bastion.tokens.keys import SigningAlgorithm

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)
LEEWAY = timedelta(seconds=30)


def _tokens(keys: KeySet, clock: FrozenClock) -> AccessTokens:
    return AccessTokens(
        keys, issuer="https://bastion.test", audience="bastion-api", ttl=TTL, clock=clock
    )


def _issue(tokens: AccessTokens) -> str:
    token, _ = tokens.issue(subject="user-1", role="user", session_id="s-1", token_version=0)
    return token


def _all_keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _all_keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _all_keys(item)


def test_generate_creates_one_active_eddsa_key() -> None:
    keys = KeySet.generate(clock=FrozenClock(NOW))

    assert len(keys) == 1
    assert keys.signing_key.alg == "EdDSA"
    assert keys.signing_key.created_at == NOW
    assert keys.signing_key.retired_at is None


def test_generated_kid_is_16_random_bytes_base64url() -> None:
    first, second = KeySet.generate().signing_key.kid, KeySet.generate().signing_key.kid

    assert len(base64url_decode(first)) == 16
    assert first != second


def test_rotate_retires_previous_key_and_signs_with_new_one() -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate(clock=clock)
    old = keys.signing_key
    clock.advance(60)

    new = keys.rotate(clock=clock)

    assert keys.signing_key is new
    assert new.kid != old.kid
    retired = keys.get(old.kid)
    assert retired is not None
    assert retired.retired_at == NOW + timedelta(seconds=60)


def test_rotated_out_key_still_verifies_its_tokens() -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate(clock=clock)
    tokens = _tokens(keys, clock)
    token = _issue(tokens)
    clock.advance(60)
    keys.rotate(clock=clock)

    claims = tokens.verify(token)

    assert claims.sub == "user-1"


def test_pruned_key_no_longer_verifies_its_tokens() -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate(clock=clock)
    tokens = _tokens(keys, clock)
    token = _issue(tokens)
    old_kid = keys.signing_key.kid
    clock.advance(60)
    keys.rotate(clock=clock)
    clock.advance(1)

    removed = keys.prune(clock=clock, keep_for=timedelta(0))

    assert removed == [old_kid]
    with pytest.raises(InvalidTokenError, match=r"^unknown kid$"):
        tokens.verify(token)


def test_prune_keeps_keys_retired_within_keep_for() -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate(clock=clock)
    tokens = _tokens(keys, clock)
    token = _issue(tokens)
    keys.rotate(clock=clock)
    clock.advance((TTL + LEEWAY).total_seconds() - 31)

    removed = keys.prune(clock=clock, keep_for=TTL + LEEWAY)

    assert removed == []
    assert tokens.verify(token).sub == "user-1"


def test_prune_never_removes_the_signing_key() -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate(clock=clock)
    clock.advance(days=365)

    removed = keys.prune(clock=clock, keep_for=timedelta(0))

    assert removed == []
    assert len(keys) == 1


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"], ids=["ed25519", "p256"])
def test_jwks_has_only_public_members(alg: SigningAlgorithm) -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate(alg, clock=clock)
    keys.rotate(clock=clock)

    jwks = keys.public_jwks()

    assert len(jwks["keys"]) == 2
    assert "d" not in set(_all_keys(jwks))
    assert all(jwk["use"] == "sig" and jwk["alg"] == alg for jwk in jwks["keys"])


@pytest.mark.parametrize("alg", ["EdDSA", "ES256"], ids=["ed25519", "p256"])
def test_public_jwk_verifies_tokens_signed_by_the_key(alg: SigningAlgorithm) -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate(alg, clock=clock)
    token = _issue(_tokens(keys, clock))
    jwk = jwt.PyJWK(keys.signing_key.public_jwk())

    claims = jwt.decode(
        token, jwk, algorithms=[alg], options={"verify_exp": False}, audience="bastion-api"
    )

    assert claims["sub"] == "user-1"


def test_jwks_omits_hs256_keys() -> None:
    keys = KeySet.from_secret(b"s" * 32)

    assert keys.public_jwks() == {"keys": []}


def test_public_jwk_of_hs256_key_raises() -> None:
    key = KeySet.from_secret(b"s" * 32).signing_key

    with pytest.raises(ValueError, match="no public JWK"):
        key.public_jwk()


@pytest.mark.parametrize("alg", ["EdDSA", "ES256", "HS256"], ids=["ed25519", "p256", "hs256"])
def test_json_roundtrip_signs_and_verifies(alg: SigningAlgorithm) -> None:
    clock = FrozenClock(NOW)
    keys = KeySet.generate(alg, clock=clock)
    keys.rotate(clock=clock)
    old_token = _issue(_tokens(keys, clock))

    restored = KeySet.from_json(keys.to_json())
    tokens = _tokens(restored, clock)

    assert [k.kid for k in restored.keys] == [k.kid for k in keys.keys]
    assert [k.retired_at for k in restored.keys] == [k.retired_at for k in keys.keys]
    assert tokens.verify(old_token).sub == "user-1"
    assert tokens.verify(_issue(tokens)).sub == "user-1"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        '{"version": 2, "keys": []}',
        '{"version": 1, "keys": []}',
        '{"version": 1}',
        '{"version": 1, "keys": [{"kid": "k", "alg": "HS256", "key": "c2hvcnQ",'
        ' "created_at": "2025-01-01T00:00:00+00:00", "retired_at": null}]}',
    ],
    ids=["empty", "list", "version", "no-keys", "missing-keys", "short-secret"],
)
def test_from_json_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case fails for its own reason
        KeySet.from_json(text)


def test_repr_never_shows_private_material() -> None:
    secret = b"0123456789abcdef0123456789abcdef"
    key = KeySet.from_secret(secret).signing_key

    assert secret.decode() not in repr(key)


def test_signing_key_refuses_a_key_of_another_algorithm() -> None:
    with pytest.raises(ValueError, match="does not match"):
        SigningKey("k", "HS256", Ed25519PrivateKey.generate(), NOW)


def test_signing_key_refuses_es256_key_off_p256() -> None:
    with pytest.raises(ValueError, match="P-256"):
        SigningKey("k", "ES256", ec.generate_private_key(ec.SECP384R1()), NOW)


def test_save_key_file_creates_mode_0600_in_a_0700_directory(tmp_path: Path) -> None:
    path = tmp_path / "data" / "keys.json"

    save_key_file(path, KeySet.generate())

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0


def test_save_key_file_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"

    save_key_file(path, KeySet.generate())
    save_key_file(path, KeySet.generate())

    assert sorted(p.name for p in tmp_path.iterdir()) == ["keys.json"]


def test_save_then_load_returns_the_same_kids(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    clock = FrozenClock(NOW)
    keys = KeySet.generate(clock=clock)
    keys.rotate(clock=clock)

    save_key_file(path, keys)

    assert [k.kid for k in load_key_file(path).keys] == [k.kid for k in keys.keys]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660], ids=oct)
def test_load_key_file_refuses_a_mode_open_to_group_or_others(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.json"
    save_key_file(path, KeySet.generate())
    os.chmod(path, mode)

    with pytest.raises(ConfigurationError) as exc_info:
        load_key_file(path)

    assert exc_info.value.setting == "BASTION_DATA_DIR"
    assert str(path) in exc_info.value.reason


def test_load_key_file_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist") as exc_info:
        load_key_file(tmp_path / "absent.json")

    assert exc_info.value.setting == "BASTION_DATA_DIR"


def test_load_key_file_refuses_a_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"version": 1, "keys": [{"kid": "k"}]}))
    path.chmod(0o600)

    with pytest.raises(ConfigurationError, match="corrupt"):
        load_key_file(path)


def test_ensure_key_file_generates_once_then_loads_the_same_kids(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"

    first, generated = ensure_key_file(path)
    second, generated_again = ensure_key_file(path)

    assert generated is True
    assert generated_again is False
    assert [k.kid for k in second.keys] == [k.kid for k in first.keys]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_from_secret_refuses_a_31_byte_secret() -> None:
    with pytest.raises(ConfigurationError) as exc_info:
        KeySet.from_secret(b"x" * 31)

    assert exc_info.value.setting == "BASTION_JWT_SECRET"


def test_from_secret_signs_and_verifies_hs256() -> None:
    clock = FrozenClock(NOW)
    tokens = _tokens(KeySet.from_secret(os.urandom(32)), clock)

    header = jwt.get_unverified_header(_issue(tokens))

    assert header["alg"] == "HS256"
    assert header["kid"] == "hs256"
    assert tokens.verify(_issue(tokens)).sub == "user-1"


def test_es256_keys_work_end_to_end(tmp_path: Path) -> None:
    clock = FrozenClock(NOW)
    keys, _ = ensure_key_file(tmp_path / "keys.json", "ES256", clock=clock)
    token = _issue(_tokens(keys, clock))
    keys.rotate(clock=clock)
    save_key_file(tmp_path / "keys.json", keys)

    tokens = _tokens(load_key_file(tmp_path / "keys.json"), clock)

    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    assert tokens.verify(token).sub == "user-1"
    assert tokens.verify(_issue(tokens)).role == "user"


def test_the_derived_secret_survives_rotation_pruning_and_the_file() -> None:
    clock = FrozenClock()
    ring = KeySet.generate(clock=clock)
    before = ring.derive_secret("bastion login defence")
    ring.rotate(clock=clock)
    clock.advance(days=30)
    ring.rotate(clock=clock)
    ring.prune(clock=clock, keep_for=timedelta(days=1))
    reread = KeySet.from_json(ring.to_json())

    assert reread.derive_secret("bastion login defence") == before
    assert reread.derive_secret("another purpose") != before
    assert len(before) == 32


def test_a_ring_from_an_older_file_keeps_its_secret_once_written() -> None:
    clock = FrozenClock()
    old = KeySet(KeySet.generate(clock=clock).keys)  # as read from a file without a secret
    before = old.derive_secret("x")
    old.rotate(clock=clock)
    reread = KeySet.from_json(old.to_json())
    clock.advance(days=30)
    reread.rotate(clock=clock)
    reread.prune(clock=clock, keep_for=timedelta(days=1))

    assert KeySet.from_json(reread.to_json()).derive_secret("x") == before
