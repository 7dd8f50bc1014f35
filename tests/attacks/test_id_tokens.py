"""Attack: sign in with an ID token that is not this sign-in's (OpenID Connect Core
§3.1.3.7), against a real OpenID provider: another request's nonce, a token minted for
another client or by another issuer, an access token passed off as an ID token, an
unsigned or self-signed one, and one past its lifetime. This sign-in's own passes."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion.clock import FrozenClock
from bastion.errors import InvalidTokenError
from bastion.oidc import IDClaims, RemoteKeySet, validate_id_token
from tests.oidc.harness import (
    ALICE,
    BOB,
    CLIENT_ID,
    POST_CLIENT_ID,
    Provider,
    default_config,
    running_provider,
    user_tokens,
)

LEEWAY = timedelta(seconds=30)
NONCE = "the-nonce-this-browser-sent"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


@pytest.fixture
async def keys(provider: Provider, clock: FrozenClock) -> AsyncIterator[RemoteKeySet]:
    async with httpx.AsyncClient() as client:
        yield RemoteKeySet(client, provider.jwks_uri, clock=clock, timeout=5.0)


async def validate(
    token: str, provider: Provider, keys: RemoteKeySet, clock: FrozenClock, **changes: Any
) -> IDClaims:
    arguments: dict[str, Any] = {
        "keys": keys,
        "issuer": provider.issuer,
        "client_id": CLIENT_ID,
        "nonce": NONCE,
        "algorithms": ["RS256"],
        "clock": clock,
        "leeway": LEEWAY,
    }
    return await validate_id_token(token, **(arguments | changes))


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


async def test_this_sign_ins_id_token_passes(
    provider: Provider, keys: RemoteKeySet, clock: FrozenClock
) -> None:
    alice = user_tokens(provider, "alice", nonce=NONCE)["id_token"]
    bob = user_tokens(provider, "bob", nonce=NONCE)["id_token"]

    first = await validate(alice, provider, keys, clock)
    second = await validate(bob, provider, keys, clock)

    assert (first.sub, first.email, first.email_verified) == ("alice", ALICE["email"], True)
    assert (second.sub, second.email_verified) == ("bob", False)  # as the provider says
    assert first.issuer == provider.issuer


async def test_another_requests_nonce_is_refused(
    provider: Provider, keys: RemoteKeySet, clock: FrozenClock
) -> None:
    token = user_tokens(provider, "alice", nonce="a-nonce-of-another-browser")["id_token"]

    with pytest.raises(InvalidTokenError, match="wrong nonce"):
        await validate(token, provider, keys, clock)


async def test_an_id_token_for_another_client_is_refused(
    provider: Provider, keys: RemoteKeySet, clock: FrozenClock
) -> None:
    token = user_tokens(provider, "alice", nonce=NONCE, client_id=POST_CLIENT_ID)["id_token"]

    with pytest.raises(InvalidTokenError, match="wrong audience"):
        await validate(token, provider, keys, clock)


async def test_an_id_token_of_another_issuer_is_refused(
    provider: Provider, clock: FrozenClock
) -> None:
    with running_provider() as other:
        token = user_tokens(other, "alice", nonce=NONCE)["id_token"]
        async with httpx.AsyncClient() as client:
            # Even checked with the other issuer's own keys: the issuer is not ours.
            theirs = RemoteKeySet(client, other.jwks_uri, clock=clock, timeout=5.0)
            with pytest.raises(InvalidTokenError, match="wrong issuer"):
                await validate(token, provider, theirs, clock)


async def test_an_access_token_is_not_an_id_token(
    provider: Provider, keys: RemoteKeySet, clock: FrozenClock
) -> None:
    access = user_tokens(provider, "alice", nonce=NONCE)["access_token"]

    with pytest.raises(InvalidTokenError, match="wrong token type"):
        await validate(access, provider, keys, clock)


async def test_unsigned_and_self_signed_id_tokens_are_refused(
    provider: Provider, keys: RemoteKeySet, clock: FrozenClock
) -> None:
    real = user_tokens(provider, "alice", nonce=NONCE)["id_token"]
    header = jwt.get_unverified_header(real)
    claims = jwt.decode(real, options={"verify_signature": False}) | {"sub": "bob"}
    unsigned = f"{b64(header | {'alg': 'none'})}.{b64(claims)}."
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    self_signed = jwt.encode(claims, attacker, algorithm="RS256", headers=header)

    with pytest.raises(InvalidTokenError, match="algorithm not allowed"):
        await validate(unsigned, provider, keys, clock)
    with pytest.raises(InvalidTokenError, match="bad signature"):
        await validate(self_signed, provider, keys, clock)


async def test_several_audiences_need_this_client_as_authorized_party(
    provider: Provider, keys: RemoteKeySet, clock: FrozenClock
) -> None:
    # Tokens the provider would not mint: signed with a key the test publishes itself,
    # through a second provider's JWKS.
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(attacker))
    now = int(clock.now().timestamp())
    base = {"iss": provider.issuer, "sub": "alice", "iat": now, "exp": now + 300, "nonce": NONCE}
    config = default_config() | {"jwks": {"keys": [private | {"kid": "own", "alg": "RS256"}]}}
    no_azp = base | {"aud": [CLIENT_ID, "another-client"]}
    foreign_azp = no_azp | {"azp": "another-client"}
    good = no_azp | {"azp": CLIENT_ID}
    headers = {"kid": "own"}
    with running_provider(config) as publisher:
        async with httpx.AsyncClient() as client:
            own = RemoteKeySet(client, publisher.jwks_uri, clock=clock, timeout=5.0)
            for claims, refusal in (
                (no_azp, "missing claim azp"),
                (foreign_azp, "wrong authorized party"),
            ):
                token = jwt.encode(claims, attacker, algorithm="RS256", headers=headers)
                with pytest.raises(InvalidTokenError, match=refusal):
                    await validate(token, provider, own, clock)
            token = jwt.encode(good, attacker, algorithm="RS256", headers=headers)
            assert (await validate(token, provider, own, clock)).sub == "alice"


async def test_an_expired_or_old_id_token_is_refused(
    provider: Provider, keys: RemoteKeySet, clock: FrozenClock
) -> None:
    token = user_tokens(provider, "bob", nonce=NONCE)["id_token"]
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (await validate(token, provider, keys, clock)).sub == BOB["sub"]

    clock.set(datetime.fromtimestamp(claims["iat"], UTC) + timedelta(minutes=11))
    with pytest.raises(InvalidTokenError, match="issued too long ago"):
        await validate(token, provider, keys, clock)
    clock.set(datetime.fromtimestamp(claims["exp"], UTC) + LEEWAY + timedelta(seconds=1))
    with pytest.raises(InvalidTokenError, match="expired"):
        await validate(token, provider, keys, clock)
