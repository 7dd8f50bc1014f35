from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import argon2
import bcrypt
import pytest

from bastion.errors import PasswordPolicyError, ServiceBusyError
from bastion.passwords import (
    OWASP_MINIMUM,
    PROFILES,
    RFC9106_LOW_MEMORY,
    TEST_ONLY_INSECURE,
    Argon2Profile,
    PasswordHasher,
    PasswordPolicy,
    is_below_owasp_floor,
)
from bastion.passwords.legacy_bcrypt import is_bcrypt_hash, verify_bcrypt

COMMON_REASON = "This password is one of the most commonly used passwords."
GUESSABLE_REASON = "This password is too easy to guess."
# Long, all-lowercase, no digits or symbols: strong because it is long.
WORDS = (
    "tangerine lighthouse quarrel velvet compass orchard mosaic tundra falcon ember "
    "glacier harbor nimble quartz ribbon saffron walnut"
)


MakeHasher = Callable[..., PasswordHasher]


@pytest.fixture
def make_hasher() -> Iterator[MakeHasher]:
    made: list[PasswordHasher] = []

    def make(*args: Any, **kwargs: Any) -> PasswordHasher:
        made.append(PasswordHasher(*args, **kwargs))
        return made[-1]

    yield make
    for hasher in made:
        hasher.close()


@pytest.fixture
def hasher(make_hasher: MakeHasher) -> PasswordHasher:
    return make_hasher(TEST_ONLY_INSECURE)


@pytest.fixture
def policy() -> PasswordPolicy:
    return PasswordPolicy()


def bcrypt_hash(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()


class BlockingHash:
    """Stands in for argon2.low_level.hash_secret and holds the worker until released."""

    def __init__(self, real: Callable[..., bytes]) -> None:
        self.real = real
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, **kwargs: Any) -> bytes:
        self.started.set()
        self.release.wait(timeout=10)
        return self.real(**kwargs)


@pytest.fixture
def blocking_hash(monkeypatch: pytest.MonkeyPatch) -> Iterator[BlockingHash]:
    blocker = BlockingHash(argon2.low_level.hash_secret)
    monkeypatch.setattr(argon2.low_level, "hash_secret", blocker)
    yield blocker
    blocker.release.set()


# --- PasswordHasher ---------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["correct horse battery staple", "пароль-ünïcödé-密码", " padded ", ""],
    ids=["ascii", "unicode", "surrounding-spaces", "empty"],
)
async def test_verify_accepts_the_hashed_password(hasher: PasswordHasher, password: str) -> None:
    stored = await hasher.hash(password)

    assert await hasher.verify(stored, password) is True


async def test_verify_rejects_a_wrong_password(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery staple")

    assert await hasher.verify(stored, "correct horse battery stapler") is False


@pytest.mark.parametrize(
    ("stored_password", "given_password"),
    [
        ("Passw0rd!", "passw0rd!"),
        ("Passw0rd!", "Passw0rd! "),
        ("Passw0rd! ", "Passw0rd!"),
        ("Passw0rd!", " Passw0rd!"),
        ("caf\u00e9 au lait", "cafe\u0301 au lait"),
        ("x" * 100, "x" * 72),
    ],
    ids=[
        "case",
        "trailing-space-added",
        "trailing-space-removed",
        "leading-space",
        "unicode-normalisation",
        "truncation",
    ],
)
async def test_verify_compares_the_password_exactly(
    hasher: PasswordHasher, stored_password: str, given_password: str
) -> None:
    stored = await hasher.hash(stored_password)

    assert await hasher.verify(stored, given_password) is False


async def test_hash_is_argon2id_with_the_profile_parameters(hasher: PasswordHasher) -> None:
    stored = await hasher.hash("correct horse battery staple")

    assert stored.startswith("$argon2id$v=19$m=8,t=1,p=1$")


async def test_hash_uses_a_fresh_salt_each_time(hasher: PasswordHasher) -> None:
    first = await hasher.hash("correct horse battery staple")
    second = await hasher.hash("correct horse battery staple")

    assert first != second


async def test_verify_of_an_unknown_account_runs_argon2_and_returns_false(
    hasher: PasswordHasher, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_verify = argon2.low_level.verify_secret
    verified: list[bytes] = []

    def spy(hash: bytes, secret: bytes, type: argon2.Type) -> bool:
        verified.append(hash)
        return real_verify(hash, secret, type)

    monkeypatch.setattr(argon2.low_level, "verify_secret", spy)

    result = await hasher.verify(None, "correct horse battery staple")

    assert result is False
    assert len(verified) == 1
    assert verified[0].startswith(b"$argon2id$v=19$m=8,t=1,p=1$")


def argon2i_hash(password: str) -> str:
    return argon2.PasswordHasher(
        time_cost=1, memory_cost=8, parallelism=1, type=argon2.Type.I
    ).hash(password)


@pytest.mark.parametrize(
    "make_stored",
    [
        lambda: "",
        lambda: "not a hash",
        lambda: "$argon2id$garbage",
        lambda: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$",
        lambda: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHRzYWx0$é",
        lambda: "$2b$04$short",
        lambda: "$1$saltsalt$md5cryptdigest",
        lambda: "pbkdf2_sha256$600000$salt$digest",
        lambda: argon2i_hash("pw"),
    ],
    ids=[
        "empty",
        "plain-text",
        "argon2id-garbage",
        "argon2id-without-tag",
        "non-ascii",
        "bcrypt-truncated",
        "md5-crypt",
        "django-pbkdf2",
        "argon2i-variant",
    ],
)
async def test_verify_returns_false_for_a_malformed_or_foreign_hash(
    hasher: PasswordHasher, make_stored: Callable[[], str]
) -> None:
    assert await hasher.verify(make_stored(), "pw") is False


async def test_needs_rehash_is_false_for_a_hash_of_the_current_profile(
    hasher: PasswordHasher,
) -> None:
    stored = await hasher.hash("correct horse battery staple")

    assert hasher.needs_rehash(stored) is False


async def test_needs_rehash_is_true_when_the_profile_changed(
    hasher: PasswordHasher, make_hasher: MakeHasher
) -> None:
    stored = await hasher.hash("correct horse battery staple")
    upgraded = make_hasher(OWASP_MINIMUM)

    assert upgraded.needs_rehash(stored) is True


@pytest.mark.parametrize(
    "stored", ["", "not a hash", "$argon2id$garbage"], ids=["empty", "plain-text", "garbage"]
)
def test_needs_rehash_is_true_for_an_unparsable_hash(hasher: PasswordHasher, stored: str) -> None:
    assert hasher.needs_rehash(stored) is True


@pytest.mark.parametrize("prefix", ["$2a$", "$2b$", "$2y$"], ids=["2a", "2b", "2y"])
async def test_verify_accepts_a_legacy_bcrypt_hash(hasher: PasswordHasher, prefix: str) -> None:
    stored = prefix + bcrypt_hash("correct horse battery staple")[4:]

    assert await hasher.verify(stored, "correct horse battery staple") is True


async def test_verify_rejects_a_wrong_password_for_a_bcrypt_hash(hasher: PasswordHasher) -> None:
    stored = bcrypt_hash("correct horse battery staple")

    assert await hasher.verify(stored, "Correct horse battery staple") is False


def test_needs_rehash_is_true_for_a_bcrypt_hash(hasher: PasswordHasher) -> None:
    assert hasher.needs_rehash(bcrypt_hash("correct horse battery staple")) is True


@pytest.mark.parametrize(
    ("stored_password", "given_password"),
    [("a" * 72, "a" * 72 + "b"), ("€" * 24, "€" * 25)],
    ids=["ascii-73-bytes", "multibyte-75-bytes"],
)
async def test_bcrypt_refuses_a_password_longer_than_72_bytes(
    hasher: PasswordHasher, stored_password: str, given_password: str
) -> None:
    stored = bcrypt_hash(stored_password)

    assert await hasher.verify(stored, given_password) is False


@pytest.mark.parametrize(
    ("stored", "expected"),
    [("$2b$12$abc", True), ("$2x$12$abc", False), ("$argon2id$v=19$", False)],
    ids=["bcrypt", "2x-variant", "argon2id"],
)
def test_is_bcrypt_hash_recognises_the_bcrypt_prefixes(stored: str, expected: bool) -> None:
    assert is_bcrypt_hash(stored) is expected


@pytest.mark.parametrize(
    "stored",
    ["$2b$04$" + "a" * 53, "$2b$04$" + "é" * 53, "$argon2id$v=19$m=8,t=1,p=1$"],
    ids=["malformed", "non-ascii", "not-bcrypt"],
)
def test_verify_bcrypt_returns_false_for_a_hash_it_cannot_use(stored: str) -> None:
    assert verify_bcrypt(stored, "pw") is False


async def test_a_caller_waiting_too_long_for_a_slot_gets_service_busy(
    make_hasher: MakeHasher, blocking_hash: BlockingHash
) -> None:
    busy = make_hasher(TEST_ONLY_INSECURE, max_concurrency=1, queue_timeout=0.01)
    holder = asyncio.create_task(busy.hash("first"))
    await asyncio.to_thread(blocking_hash.started.wait, 10)

    with pytest.raises(ServiceBusyError):
        await busy.hash("second")

    blocking_hash.release.set()
    await holder


async def test_a_cancelled_caller_keeps_its_slot_until_its_hash_finishes(
    make_hasher: MakeHasher, blocking_hash: BlockingHash
) -> None:
    busy = make_hasher(TEST_ONLY_INSECURE, max_concurrency=1, queue_timeout=0.01)
    holder = asyncio.create_task(busy.hash("first"))
    await asyncio.to_thread(blocking_hash.started.wait, 10)
    holder.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder

    with pytest.raises(ServiceBusyError):
        await busy.hash("second")

    blocking_hash.release.set()
    busy.queue_timeout = 5.0
    third = await busy.hash("third")

    assert third.startswith("$argon2id$")


async def test_hasher_is_usable_from_several_event_loops(make_hasher: MakeHasher) -> None:
    shared = make_hasher(TEST_ONLY_INSECURE, max_concurrency=1)

    async def two_at_once() -> list[str]:
        return list(await asyncio.gather(shared.hash("one"), shared.hash("two")))

    here = await two_at_once()
    elsewhere = await asyncio.to_thread(asyncio.run, two_at_once())

    assert len(here + elsewhere) == 4


async def test_a_closed_hasher_refuses_work(hasher: PasswordHasher) -> None:
    hasher.close()

    with pytest.raises(RuntimeError, match="shutdown"):
        await hasher.hash("correct horse battery staple")


def test_max_concurrency_defaults_to_the_cpu_count(hasher: PasswordHasher) -> None:
    assert hasher.max_concurrency == (os.cpu_count() or 1)


def test_the_default_profile_is_rfc9106_low_memory(make_hasher: MakeHasher) -> None:
    assert make_hasher().profile is RFC9106_LOW_MEMORY


@pytest.mark.parametrize(
    "kwargs",
    [{"max_concurrency": 0}, {"queue_timeout": -1.0}],
    ids=["no-workers", "negative-timeout"],
)
def test_hasher_refuses_an_invalid_pool_setting(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must"):
        PasswordHasher(TEST_ONLY_INSECURE, **kwargs)


@pytest.mark.real_argon2
async def test_default_profile_hashes_with_rfc9106_low_memory_parameters(
    make_hasher: MakeHasher,
) -> None:
    default = make_hasher()

    stored = await default.hash("correct horse battery staple")

    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert await default.verify(stored, "correct horse battery staple") is True


# --- Profiles ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "expected"),
    [
        (RFC9106_LOW_MEMORY, False),
        (OWASP_MINIMUM, False),
        (TEST_ONLY_INSECURE, True),
        (Argon2Profile("t1-owasp", time_cost=1, memory_cost=47104, parallelism=1), False),
        (Argon2Profile("t1-short", time_cost=1, memory_cost=47103, parallelism=1), True),
        (Argon2Profile("t2-short", time_cost=2, memory_cost=19455, parallelism=1), True),
        (Argon2Profile("t3-owasp", time_cost=3, memory_cost=12288, parallelism=1), False),
        (Argon2Profile("t5-short", time_cost=5, memory_cost=12287, parallelism=1), True),
    ],
    ids=[
        "rfc9106-low-memory",
        "owasp-minimum",
        "test-only-insecure",
        "t1-at-floor",
        "t1-below",
        "t2-below",
        "t3-at-floor",
        "t5-below",
    ],
)
def test_is_below_owasp_floor(profile: Argon2Profile, expected: bool) -> None:
    assert is_below_owasp_floor(profile) is expected


def test_profiles_are_listed_by_name() -> None:
    assert PROFILES == {
        "rfc9106-low-memory": RFC9106_LOW_MEMORY,
        "owasp-minimum": OWASP_MINIMUM,
        "test-only-insecure": TEST_ONLY_INSECURE,
    }


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": ""},
        {"time_cost": 0},
        {"parallelism": 0},
        {"memory_cost": 15, "parallelism": 2},
        {"salt_len": 8},
        {"hash_len": 8},
    ],
    ids=["no-name", "no-time", "no-parallelism", "memory-below-8p", "short-salt", "short-tag"],
)
def test_profile_refuses_parameters_argon2_cannot_use_safely(kwargs: dict[str, Any]) -> None:
    params: dict[str, Any] = {
        "name": "bad",
        "time_cost": 1,
        "memory_cost": 64,
        "parallelism": 1,
    } | kwargs

    with pytest.raises(ValueError, match="must"):
        Argon2Profile(**params)


# --- PasswordPolicy ---------------------------------------------------------------


@pytest.mark.parametrize(
    "password",
    ["Tr0ub4dor&3xyzw", "żółć-gęślą-jaźń", "lantern orbit fig marmalade", WORDS[:64], WORDS[:128]],
    ids=["15-chars", "15-code-points", "lowercase-passphrase", "64-chars", "128-chars"],
)
def test_policy_accepts_a_long_enough_unguessable_password(
    policy: PasswordPolicy, password: str
) -> None:
    policy.check(password)


@pytest.mark.parametrize(
    "password", ["Tr0ub4dor&3xyz", "ü" * 14], ids=["14-chars", "14-code-points-28-bytes"]
)
def test_policy_refuses_a_password_shorter_than_15_code_points(
    policy: PasswordPolicy, password: str
) -> None:
    with pytest.raises(PasswordPolicyError) as error:
        policy.check(password)

    assert error.value.reasons == ["Password must be at least 15 characters."]


@pytest.mark.parametrize("password", ["a" * 1025, "€" * 342], ids=["ascii", "multibyte"])
def test_policy_refuses_a_password_longer_than_1024_bytes(
    policy: PasswordPolicy, password: str
) -> None:
    with pytest.raises(PasswordPolicyError) as error:
        policy.check(password)

    assert error.value.reasons == ["Password must be at most 1024 bytes."]


def test_policy_refuses_a_password_that_is_not_valid_text(policy: PasswordPolicy) -> None:
    with pytest.raises(PasswordPolicyError) as error:
        policy.check("\ud800" * 20)

    assert error.value.reasons == ["Password contains characters that are not valid text."]


@pytest.mark.parametrize(
    ("policy", "password"),
    [
        (PasswordPolicy(), "passwordstandard"),
        (PasswordPolicy(), "qazwsxedcrfvtgb"),
        (PasswordPolicy(), "1QAZ2WSX3EDC4RFV"),
        (PasswordPolicy(min_length=12), "leavemealone"),
        (PasswordPolicy(min_length=12), "JustinBieber"),
        (
            PasswordPolicy(common_passwords=frozenset({"Our-Shared-Passphrase"})),
            "our-shared-passphrase",
        ),
    ],
    ids=["16-chars", "15-chars", "case-folded", "12-chars", "12-chars-mixed-case", "custom-list"],
)
def test_policy_refuses_a_common_password(policy: PasswordPolicy, password: str) -> None:
    with pytest.raises(PasswordPolicyError) as error:
        policy.check(password)

    assert error.value.reasons == [COMMON_REASON]


def test_policy_refuses_a_password_built_on_the_email_local_part(policy: PasswordPolicy) -> None:
    with pytest.raises(PasswordPolicyError):
        policy.check(
            "alicewonderland1",
            user_inputs=["alicewonderland@example.com", "alicewonderland", "Alice"],
        )


def test_policy_accepts_the_same_password_without_that_context(policy: PasswordPolicy) -> None:
    policy.check("alicewonderland1")


def test_policy_reasons_carry_zxcvbn_feedback_for_a_weak_password(policy: PasswordPolicy) -> None:
    with pytest.raises(PasswordPolicyError) as error:
        policy.check("aaaaaaaaaaaaaaaaaa")

    (reason,) = error.value.reasons
    assert reason.startswith(GUESSABLE_REASON)
    assert 'Repeats like "aaa" are easy to guess.' in reason


def test_policy_gives_a_generic_reason_when_zxcvbn_has_no_feedback() -> None:
    strict = PasswordPolicy(min_score=4)

    with pytest.raises(PasswordPolicyError) as error:
        strict.check("alicewonderland1")

    assert error.value.reasons == [GUESSABLE_REASON]


@pytest.mark.parametrize(
    "kwargs",
    [{"min_length": 11}, {"max_bytes": 255}, {"min_score": 5}, {"min_score": -1}],
    ids=["min-length-11", "max-bytes-255", "score-above-4", "score-below-0"],
)
def test_policy_refuses_a_configuration_below_its_floors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        PasswordPolicy(**kwargs)
