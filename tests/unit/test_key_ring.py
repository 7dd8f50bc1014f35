"""The key ring of a running instance: retired keys expire by the clock, revoked keys go at
once, and the ring follows its key file cheaply (one stat a second, a read on change)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import bastion.tokens.ring as ring_module
from bastion.clock import FrozenClock
from bastion.errors import InvalidTokenError
from bastion.tokens import AccessTokens, KeyRing, KeySet, load_key_file, save_key_file

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=15)
LEEWAY = timedelta(seconds=30)
RETENTION = TTL + LEEWAY


def _tokens(keys: KeySet | KeyRing, clock: FrozenClock) -> AccessTokens:
    return AccessTokens(
        keys, issuer="https://bastion.test", audience="bastion-api", ttl=TTL, clock=clock
    )


def _issue(tokens: AccessTokens) -> str:
    token, _ = tokens.issue(subject="user-1", role="user", session_id="s-1", token_version=0)
    return token


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
def path(tmp_path: Path, clock: FrozenClock) -> Path:
    file = tmp_path / "keys.json"
    save_key_file(file, KeySet.generate(clock=clock))
    return file


def _ring(path: Path, clock: FrozenClock) -> KeyRing:
    return KeyRing(load_key_file(path), retention=RETENTION, clock=clock, path=path)


def _rotate_file(path: Path, clock: FrozenClock) -> tuple[str, str]:
    keys = load_key_file(path)
    old = keys.signing_key.kid
    new = keys.rotate(clock=clock).kid
    save_key_file(path, keys)
    return old, new


def test_a_retired_key_verifies_until_its_retention_has_passed(clock: FrozenClock) -> None:
    keys = KeySet.generate(clock=clock)
    old = keys.signing_key.kid
    keys.rotate(clock=clock)
    ring = KeyRing(keys, retention=RETENTION, clock=clock)
    clock.advance(RETENTION.total_seconds() - 1)
    assert ring.get(old) is not None

    clock.advance(1)

    assert ring.get(old) is None
    assert old not in {jwk["kid"] for jwk in ring.public_jwks()["keys"]}
    assert old in {key.kid for key in ring.keys.keys}  # computed, not removed


def test_the_signing_key_never_expires(clock: FrozenClock) -> None:
    keys = KeySet.generate(clock=clock)
    ring = KeyRing(keys, retention=RETENTION, clock=clock)
    clock.advance(days=3650)

    assert ring.get(keys.signing_key.kid) is keys.signing_key


def test_a_token_of_a_retired_key_dated_after_its_retirement_is_refused(
    clock: FrozenClock,
) -> None:
    keys = KeySet.generate(clock=clock)
    stale = _tokens(keys, clock)
    old_key = keys.signing_key
    keys.rotate(clock=clock)
    clock.advance(1)
    # Signed with the old key after its retirement (as by someone who holds it).
    forged = _tokens(KeySet([old_key]), clock)

    with pytest.raises(InvalidTokenError, match="issued after its key was retired"):
        stale.verify(_issue(forged))


def test_a_token_issued_in_the_second_of_the_retirement_still_verifies(
    clock: FrozenClock,
) -> None:
    clock.set(NOW + timedelta(milliseconds=700))
    keys = KeySet.generate(clock=clock)
    tokens = _tokens(keys, clock)
    token = _issue(tokens)  # iat is NOW, in whole seconds
    keys.rotate(clock=clock)

    assert tokens.verify(token).sub == "user-1"


def test_a_revoked_key_takes_its_cached_tokens_with_it(clock: FrozenClock) -> None:
    keys = KeySet.generate(clock=clock)
    tokens = _tokens(keys, clock)
    token = _issue(tokens)
    old = keys.signing_key.kid
    tokens.verify(token)  # now remembered
    keys.rotate(clock=clock)

    keys.revoke(old)

    with pytest.raises(InvalidTokenError, match="unknown kid"):
        tokens.verify(token)


def test_an_expired_retired_key_takes_its_cached_tokens_with_it(clock: FrozenClock) -> None:
    keys = KeySet.generate(clock=clock)
    tokens = AccessTokens(
        keys, issuer="i", audience="a", ttl=timedelta(days=1), leeway=timedelta(0), clock=clock
    )
    token = _issue(tokens)
    ring = KeyRing(keys, retention=RETENTION, clock=clock)  # shorter than the token's life
    short = AccessTokens(ring, issuer="i", audience="a", clock=clock)
    short.verify(token)
    keys.rotate(clock=clock)
    clock.advance(RETENTION.total_seconds())

    with pytest.raises(InvalidTokenError, match="unknown kid"):
        short.verify(token)


def test_revoke_refuses_the_signing_key_and_an_unknown_kid(clock: FrozenClock) -> None:
    keys = KeySet.generate(clock=clock)

    with pytest.raises(ValueError, match="signing key"):
        keys.revoke(keys.signing_key.kid)
    with pytest.raises(KeyError):
        keys.revoke("no-such-key")


def test_the_ring_reads_a_rotation_from_its_file_after_a_second(
    path: Path, clock: FrozenClock
) -> None:
    ring = _ring(path, clock)
    old, new = _rotate_file(path, clock)
    clock.advance(0.5)
    assert ring.signing_key.kid == old

    clock.advance(0.5)

    assert ring.signing_key.kid == new
    assert ring.get(old) is not None


def test_the_ring_drops_a_revoked_key_it_held(path: Path, clock: FrozenClock) -> None:
    ring = _ring(path, clock)
    old, _ = _rotate_file(path, clock)
    clock.advance(1)
    assert ring.get(old) is not None
    keys = load_key_file(path)
    keys.revoke(old)
    save_key_file(path, keys)

    clock.advance(1)

    assert ring.get(old) is None
    assert old not in {jwk["kid"] for jwk in ring.public_jwks()["keys"]}


def test_requests_within_a_second_make_no_system_call(
    path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = _ring(path, clock)
    kid = ring.signing_key.kid
    clock.advance(1)
    ring.get(kid)  # the first check
    stats: list[Path] = []
    real = ring_module._file_state
    monkeypatch.setattr(ring_module, "_file_state", lambda p: stats.append(p) or real(p))

    for _ in range(100):
        clock.advance(0.005)
        ring.get(kid)
    clock.advance(0.5)
    ring.get(kid)

    assert len(stats) == 1


def test_an_unchanged_file_is_not_read_again(
    path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = _ring(path, clock)
    kid = ring.signing_key.kid
    clock.advance(1)
    ring.get(kid)
    reads: list[Path] = []
    monkeypatch.setattr(ring_module, "load_key_file", lambda p: reads.append(p) or load_key_file(p))

    for _ in range(10):
        clock.advance(1)
        ring.get(kid)

    assert reads == []


def test_an_unknown_kid_reads_the_file_at_once_at_most_every_5_seconds(
    path: Path, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ring = _ring(path, clock)
    reads: list[Path] = []
    monkeypatch.setattr(ring_module, "load_key_file", lambda p: reads.append(p) or load_key_file(p))
    _, new = _rotate_file(path, clock)

    found = ring.get(new)  # the clock has not moved: only the unknown kid makes it read
    for _ in range(50):
        ring.get("forged-kid")
    clock.advance(4.9)
    ring.get("forged-kid")
    clock.advance(0.1)
    ring.get("forged-kid")

    assert found is not None
    assert len(reads) == 2  # the unknown kid, then another five seconds later


def test_a_file_that_cannot_be_read_leaves_the_keys_in_memory(
    path: Path, clock: FrozenClock
) -> None:
    ring = _ring(path, clock)
    kid = ring.signing_key.kid
    path.write_text("{not json")

    clock.advance(1)

    assert ring.get(kid) is not None
    assert ring.signing_key.kid == kid


def test_unchanged_keys_keep_their_object_across_reads(path: Path, clock: FrozenClock) -> None:
    ring = _ring(path, clock)
    tokens = _tokens(ring, clock)
    key = ring.signing_key
    _rotate_file(path, clock)
    keys = load_key_file(path)
    new = keys.signing_key
    clock.advance(1)
    assert ring.get(new.kid) is not None
    kept = ring.get(new.kid)
    save_key_file(path, keys)  # the same keys, a new file
    clock.advance(1)

    assert ring.get(new.kid) is kept
    assert ring.get(key.kid) is not key  # retired since: a new object, re-verified
    assert tokens.verify(_issue(tokens)).sub == "user-1"


def test_the_derived_secrets_are_those_read_at_start(path: Path, clock: FrozenClock) -> None:
    ring = _ring(path, clock)
    before = ring.derive_secret("bastion csrf")
    save_key_file(path, KeySet.generate(clock=clock))  # another ring altogether
    clock.advance(1)

    assert ring.derive_secret("bastion csrf") == before


def test_a_legacy_ring_keeps_its_secret_when_its_oldest_key_is_revoked(
    clock: FrozenClock,
) -> None:
    legacy = KeySet(KeySet.generate(clock=clock).keys)  # a file without its own secret
    before = legacy.derive_secret("x")
    oldest = legacy.signing_key.kid
    legacy.rotate(clock=clock)

    legacy.revoke(oldest)

    assert KeySet.from_json(legacy.to_json()).derive_secret("x") == before
