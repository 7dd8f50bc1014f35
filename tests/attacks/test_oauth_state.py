"""Attack: bring a provider's answer to a sign-in that did not ask for it (RFC 9700
§4.7, login CSRF and injected codes): no sign-in cookie, a state from another browser's
sign-in, the same answer twice (on another instance too), a cookie of another provider,
a forged or edited cookie, an answer after ten minutes; and a ``next`` that leaves the
site. PKCE is S256 as RFC 7636 computes it."""

from __future__ import annotations

import base64
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from bastion.clock import FrozenClock
from bastion.errors import OAuthFailedError
from bastion.oidc import SignInBinding, pkce_challenge, safe_next
from bastion.throttle._attempts import MemoryAttemptStore, RedisAttemptStore
from tests.conftest import REDIS_URL

SECRET = secrets.token_bytes(32)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime(2026, 12, 7, 12, 0, tzinfo=UTC))


@pytest.fixture
async def redis_claims(redis_prefix: str) -> AsyncIterator[RedisAttemptStore]:
    client = aioredis.Redis.from_url(REDIS_URL)
    try:
        yield RedisAttemptStore(client, prefix=f"{redis_prefix}{secrets.token_hex(4)}:")
    finally:
        await client.aclose()


def binding(clock: FrozenClock, store: MemoryAttemptStore | RedisAttemptStore) -> SignInBinding:
    return SignInBinding(SECRET, clock=clock, claim=store.claim)


def test_the_pkce_challenge_is_rfc_7636s() -> None:
    # RFC 7636 Appendix B.
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


async def test_the_answer_to_this_browsers_sign_in_passes_once(clock: FrozenClock) -> None:
    signins = binding(clock, MemoryAttemptStore(clock=clock))
    request, cookie = signins.begin("google", "/tasks?status=todo")

    back = await signins.finish(cookie, "google", request.state)

    assert back == request
    assert back.next == "/tasks?status=todo"
    assert len(base64.urlsafe_b64decode(request.state + "=")) == 32  # 256 bits
    with pytest.raises(OAuthFailedError, match="state replayed"):
        await signins.finish(cookie, "google", request.state)


async def test_a_replay_on_another_instance_is_refused(
    clock: FrozenClock, redis_claims: RedisAttemptStore
) -> None:
    first, second = binding(clock, redis_claims), binding(clock, redis_claims)
    request, cookie = first.begin("google")

    await first.finish(cookie, "google", request.state)

    with pytest.raises(OAuthFailedError, match="state replayed"):
        await second.finish(cookie, "google", request.state)


async def test_an_answer_without_this_browsers_cookie_is_refused(clock: FrozenClock) -> None:
    signins = binding(clock, MemoryAttemptStore(clock=clock))
    victims, _ = signins.begin("google")  # the victim's browser has no cookie of it
    _, attackers_cookie = signins.begin("google")  # the attacker's own sign-in

    for cookie in (None, "", attackers_cookie):
        with pytest.raises(OAuthFailedError, match=r"no sign-in cookie|state missing or foreign"):
            await signins.finish(cookie, "google", victims.state)
    _, cookie = signins.begin("google")
    with pytest.raises(OAuthFailedError, match="state missing or foreign"):
        await signins.finish(cookie, "google", None)


async def test_a_cookie_of_another_provider_is_refused(clock: FrozenClock) -> None:
    signins = binding(clock, MemoryAttemptStore(clock=clock))
    request, cookie = signins.begin("github")

    with pytest.raises(OAuthFailedError, match="another provider"):
        await signins.finish(cookie, "google", request.state)


async def test_a_forged_or_edited_cookie_is_refused(clock: FrozenClock) -> None:
    signins = binding(clock, MemoryAttemptStore(clock=clock))
    request, cookie = signins.begin("google")
    body, signature = cookie.split(".")
    fields = json.loads(base64.urlsafe_b64decode(body + "=="))
    edited = base64.urlsafe_b64encode(
        json.dumps(fields | {"next": "https://evil.example/"}).encode()
    ).rstrip(b"=")
    other_key = SignInBinding(b"k" * 32, clock=clock, claim=MemoryAttemptStore().claim)
    _, foreign = other_key.begin("google")

    for bad in (f"{edited.decode()}.{signature}", foreign, cookie + "x", "é" * 20 + ".x"):
        with pytest.raises(OAuthFailedError, match=r"no sign-in cookie|not ours"):
            await signins.finish(bad, "google", request.state)


async def test_an_answer_after_ten_minutes_is_refused(clock: FrozenClock) -> None:
    signins = binding(clock, MemoryAttemptStore(clock=clock))
    request, cookie = signins.begin("google")

    clock.advance(seconds=601)

    with pytest.raises(OAuthFailedError, match="expired"):
        await signins.finish(cookie, "google", request.state)


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example/",
        "\\\\evil.example",
        "javascript:alert(1)",
        "/ok\r\nSet-Cookie: x=1",
        "/\tevil",
        "evil.example",
        "/" + "a" * 600,
    ],
)
def test_next_never_leaves_the_site(target: str) -> None:
    assert safe_next(target) == "/"


def test_next_keeps_a_path_of_the_site() -> None:
    assert safe_next("/tasks/42?tab=shares#top") == "/tasks/42?tab=shares#top"
