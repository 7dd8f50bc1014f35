"""The RevocationStore contract, in process and on Redis."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import redis.asyncio as aioredis

from bastion.errors import RevocationCacheColdError, ServiceUnavailableError
from bastion.stores import Denial, RevocationStore, UserState
from bastion.stores.memory import MemoryRevocationStore
from bastion.stores.redis import RedisRevocationStore
from tests.conftest import REDIS_URL
from tests.contract.support import no_denials

MEMBER = UserState(token_version=3, role="member", is_active=True, revoked_before=1_795_000_000)
DISABLED_ADMIN = UserState(token_version=0, role="admin", is_active=False)


def in_a_minute() -> datetime:
    return datetime.now(UTC) + timedelta(minutes=1)


async def test_check_on_an_empty_store_is_a_miss(revocation_store: RevocationStore) -> None:
    result = await revocation_store.check(str(uuid4()), ["jti-1", "sid:1"])

    assert result == (None, False)


@pytest.mark.parametrize("state", [MEMBER, DISABLED_ADMIN], ids=["member", "disabled-admin"])
async def test_check_returns_the_stored_user_state(
    revocation_store: RevocationStore, state: UserState
) -> None:
    user = str(uuid4())
    await revocation_store.put_user_state(user, state)

    result = await revocation_store.check(user, ["jti-1"])

    assert result == (state, False)


async def test_put_user_state_replaces_the_previous_state(
    revocation_store: RevocationStore,
) -> None:
    user = str(uuid4())
    await revocation_store.put_user_state(user, DISABLED_ADMIN)
    await revocation_store.put_user_state(user, MEMBER)

    state, _ = await revocation_store.check(user, ["jti-1"])

    assert state == MEMBER


async def test_user_state_belongs_to_its_user(revocation_store: RevocationStore) -> None:
    await revocation_store.put_user_state(str(uuid4()), MEMBER)

    state, _ = await revocation_store.check(str(uuid4()), ["jti-1"])

    assert state is None


async def test_revoked_token_id_is_revoked(revocation_store: RevocationStore) -> None:
    await revocation_store.revoke("jti-1", in_a_minute())

    _, revoked = await revocation_store.check(str(uuid4()), ["jti-1"])

    assert revoked is True


async def test_other_token_ids_are_not_revoked(revocation_store: RevocationStore) -> None:
    await revocation_store.revoke("jti-1", in_a_minute())

    _, revoked = await revocation_store.check(str(uuid4()), ["other"])

    assert revoked is False


@pytest.mark.parametrize(
    "token_ids",
    [["jti-2", "sid:1"], ["jti-1", "sid:2"], ["jti-2", "sid:2"]],
    ids=["second-revoked", "first-revoked", "both-revoked"],
)
async def test_any_revoked_token_id_revokes(
    revocation_store: RevocationStore, token_ids: list[str]
) -> None:
    await revocation_store.revoke("jti-2", in_a_minute())
    await revocation_store.revoke("sid:2", in_a_minute())

    _, revoked = await revocation_store.check(str(uuid4()), token_ids)

    assert revoked is True


async def test_revocation_does_not_hide_the_user_state(
    revocation_store: RevocationStore,
) -> None:
    user = str(uuid4())
    await revocation_store.put_user_state(user, MEMBER)
    await revocation_store.revoke("jti-1", in_a_minute())

    result = await revocation_store.check(user, ["jti-1"])

    assert result == (MEMBER, True)


async def test_revocation_that_already_expired_revokes_nothing(
    revocation_store: RevocationStore,
) -> None:
    await revocation_store.revoke("jti-1", datetime.now(UTC) - timedelta(seconds=1))

    _, revoked = await revocation_store.check(str(uuid4()), ["jti-1"])

    assert revoked is False


async def test_ping_answers(revocation_store: RevocationStore) -> None:
    answered = await revocation_store.ping()

    assert answered is True


async def test_redis_keys_are_all_under_the_prefix(
    redis_revocation_store: RedisRevocationStore,
    redis_client: aioredis.Redis,
    redis_key_prefix: str,
) -> None:
    user, token_id = f"user-{uuid4()}", f"jti-{uuid4()}"
    await redis_revocation_store.put_user_state(user, MEMBER)
    await redis_revocation_store.revoke(token_id, in_a_minute())

    under_prefix = [key async for key in redis_client.scan_iter(match=f"{redis_key_prefix}*")]
    naming_them = [
        key
        for pattern in (f"*{user}*", f"*{token_id}*")
        async for key in redis_client.scan_iter(match=pattern)
    ]

    assert len(under_prefix) == 2
    assert len(naming_them) == 2
    assert all(key.startswith(redis_key_prefix.encode()) for key in naming_them)


async def test_redis_denial_expires_with_the_token(
    redis_revocation_store: RedisRevocationStore,
    redis_client: aioredis.Redis,
    redis_key_prefix: str,
) -> None:
    await redis_revocation_store.revoke("jti-1", datetime.now(UTC) + timedelta(minutes=1))

    keys = [key async for key in redis_client.scan_iter(match=f"{redis_key_prefix}*")]
    ttl_ms = await redis_client.pttl(keys[0])

    assert len(keys) == 1
    assert 50_000 < ttl_ms <= 60_000


async def test_redis_user_state_is_kept_for_a_bounded_time(
    redis_revocation_store: RedisRevocationStore,
    redis_client: aioredis.Redis,
    redis_key_prefix: str,
) -> None:
    await redis_revocation_store.put_user_state(str(uuid4()), MEMBER)

    keys = [key async for key in redis_client.scan_iter(match=f"{redis_key_prefix}*")]
    ttl_ms = await redis_client.pttl(keys[0])

    assert len(keys) == 1
    assert ttl_ms > 0


async def test_a_redis_user_state_without_revoked_before_is_a_miss(
    redis_revocation_store: RedisRevocationStore,
    redis_client: aioredis.Redis,
    redis_key_prefix: str,
) -> None:
    """A state an older release cached has no revocation time for the tokens without a
    version: the database answers instead of a revocation time of zero."""
    await redis_revocation_store.rebuild(no_denials)
    user = str(uuid4())
    await redis_revocation_store.put_user_state(user, MEMBER)
    [key] = [key async for key in redis_client.scan_iter(match=f"{redis_key_prefix}*{user}")]
    await redis_client.set(key, "3|member|1")

    state, _ = await redis_revocation_store.check(user, [])

    assert state is None


async def test_check_with_no_token_ids_reads_only_the_user_state(
    revocation_store: RevocationStore,
) -> None:
    state = UserState(token_version=3, role="viewer", is_active=True)
    await revocation_store.put_user_state("user-1", state)

    result = await revocation_store.check("user-1", [])

    assert result == (state, False)


async def test_forget_user_state_makes_the_next_check_a_miss(
    revocation_store: RevocationStore,
) -> None:
    user = str(uuid4())
    await revocation_store.put_user_state(user, MEMBER)

    await revocation_store.forget_user_state(user)

    assert await revocation_store.check(user, ["jti-1"]) == (None, False)


async def test_forget_user_state_leaves_other_users_alone(
    revocation_store: RevocationStore,
) -> None:
    user, other = str(uuid4()), str(uuid4())
    await revocation_store.put_user_state(other, MEMBER)

    await revocation_store.forget_user_state(user)

    assert await revocation_store.check(other, []) == (MEMBER, False)


async def test_an_older_state_never_replaces_a_newer_one(
    revocation_store: RevocationStore,
) -> None:
    user = str(uuid4())
    newer = UserState(token_version=5, role="member", is_active=True)
    await revocation_store.put_user_state(user, newer)

    await revocation_store.put_user_state(user, UserState(4, "admin", True))

    assert await revocation_store.check(user, []) == (newer, False)


async def test_a_state_of_the_same_or_a_newer_version_replaces_the_cached_one(
    revocation_store: RevocationStore,
) -> None:
    user = str(uuid4())
    await revocation_store.put_user_state(user, UserState(5, "admin", True))
    await revocation_store.put_user_state(user, UserState(5, "admin", False))
    latest = UserState(6, "viewer", True)

    await revocation_store.put_user_state(user, latest)

    assert await revocation_store.check(user, []) == (latest, False)


async def test_in_process_user_state_expires() -> None:
    store = MemoryRevocationStore(state_ttl_seconds=0.0)
    await store.rebuild(no_denials)
    user = str(uuid4())

    await store.put_user_state(user, MEMBER)

    assert await store.check(user, []) == (None, False)


# -- a cache of the durable record -------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
async def cold_store(
    request: pytest.FixtureRequest, redis_key_prefix: str
) -> AsyncIterator[RevocationStore]:
    """A revocation store not rebuilt yet: a new process, or a new Redis prefix."""
    store: RevocationStore
    if request.param == "memory":
        store = MemoryRevocationStore()
    else:
        store = RedisRevocationStore.from_url(REDIS_URL, prefix=redis_key_prefix)
    yield store
    await store.aclose()


async def test_a_store_not_rebuilt_believes_no_token(cold_store: RevocationStore) -> None:
    with pytest.raises(RevocationCacheColdError):
        await cold_store.check(str(uuid4()), ["jti-1", "sid:1"])


async def test_a_rebuild_makes_the_store_answer(cold_store: RevocationStore) -> None:
    await cold_store.rebuild(no_denials)

    assert await cold_store.check(str(uuid4()), ["jti-1"]) == (None, False)


async def test_a_rebuild_denies_what_the_durable_record_holds(
    cold_store: RevocationStore,
) -> None:
    async def record() -> list[Denial]:
        return [("jti-1", in_a_minute()), ("sid:2", in_a_minute())]

    await cold_store.rebuild(record)

    assert (await cold_store.check("u", ["jti-1", "sid:9"]))[1] is True
    assert (await cold_store.check("u", ["jti-9", "sid:2"]))[1] is True
    assert (await cold_store.check("u", ["jti-9", "sid:9"]))[1] is False


async def test_a_rebuild_keeps_what_was_denied_meanwhile(cold_store: RevocationStore) -> None:
    await cold_store.revoke("jti-1", in_a_minute())

    await cold_store.rebuild(no_denials)

    assert (await cold_store.check("u", ["jti-1"]))[1] is True


async def test_a_rebuild_skips_expired_denials(cold_store: RevocationStore) -> None:
    async def record() -> list[Denial]:
        return [("jti-1", datetime.now(UTC) - timedelta(seconds=1))]

    await cold_store.rebuild(record)

    assert (await cold_store.check("u", ["jti-1"]))[1] is False


async def _delete_prefix(client: aioredis.Redis, prefix: str) -> None:
    """What FLUSHDB does to this store, without emptying the shared Redis."""
    keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
    if keys:
        await client.delete(*keys)


async def test_redis_that_lost_its_data_believes_no_token(
    redis_client: aioredis.Redis, redis_key_prefix: str
) -> None:
    store = RedisRevocationStore.from_url(REDIS_URL, prefix=redis_key_prefix)
    await store.rebuild(no_denials)
    await store.revoke("jti-1", in_a_minute())
    await _delete_prefix(redis_client, redis_key_prefix)

    with pytest.raises(RevocationCacheColdError):
        await store.check("u", ["jti-1"])
    keys = store.check_keys("u", ["jti-1"])
    with pytest.raises(RevocationCacheColdError):
        store.read_check(await redis_client.mget(keys))
    await store.aclose()


async def test_redis_lost_during_a_rebuild_is_rebuilt_again(
    redis_client: aioredis.Redis, redis_key_prefix: str
) -> None:
    store = RedisRevocationStore.from_url(REDIS_URL, prefix=redis_key_prefix)
    reads = 0

    async def record() -> list[Denial]:
        nonlocal reads
        reads += 1
        if reads == 1:  # Redis loses its data after the first read of the record
            await _delete_prefix(redis_client, redis_key_prefix)
        return [("jti-1", in_a_minute())]

    await store.rebuild(record)

    assert reads == 2
    assert (await store.check("u", ["jti-1"]))[1] is True
    await store.aclose()


async def test_redis_that_keeps_losing_its_data_is_unavailable(
    redis_client: aioredis.Redis, redis_key_prefix: str
) -> None:
    store = RedisRevocationStore.from_url(REDIS_URL, prefix=redis_key_prefix)

    async def record() -> list[Denial]:
        await _delete_prefix(redis_client, redis_key_prefix)
        return []

    with pytest.raises(ServiceUnavailableError):
        await store.rebuild(record)
    with pytest.raises(RevocationCacheColdError):
        await store.check("u", ["jti-1"])
    await store.aclose()


async def test_a_denial_redis_does_not_take_is_unavailable(redis_key_prefix: str) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = RedisRevocationStore.from_url(f"redis://127.0.0.1:{port}/0", prefix=redis_key_prefix)

    with pytest.raises(ServiceUnavailableError):
        await store.revoke("jti-1", in_a_minute())
    with pytest.raises(ServiceUnavailableError):
        await store.rebuild(no_denials)
    await store.aclose()
