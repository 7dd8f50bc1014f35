"""Attack: get a token past the guard's check of external issuers' access tokens
(resource-server mode, RFC 9068 and RFC 8725) against a real OpenID provider: an
algorithm swapped (``none``, HS256 with the issuer's public key), a key the issuer never
published, an issuer not configured, a token for another audience or of another type
(an ID token), an expired one, and a flood of made-up ``kid``s that must not become a
flood of key fetches. A valid token passes, its role mapped."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion.clock import FrozenClock
from bastion.errors import InvalidTokenError
from bastion.oidc import ExternalIssuer, ExternalTokens
from tests.oidc.harness import (
    API_ES256_RESOURCE,
    API_RESOURCE,
    CLIENT_ID,
    Provider,
    client_token,
    default_config,
    published_keys,
    running_provider,
    user_tokens,
)
from tests.tcp_proxy import TCPProxy

LEEWAY = timedelta(seconds=30)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


def issuer_of(provider: Provider, **overrides: Any) -> ExternalIssuer:
    values: dict[str, Any] = {
        "issuer": provider.issuer,
        "audience": API_RESOURCE,
        "algorithms": ["RS256"],
        "role_claim": "role",
        "role_map": {"admin": "admin"},
    }
    return ExternalIssuer(**(values | overrides))


@pytest.fixture
async def tokens(provider: Provider, clock: FrozenClock) -> AsyncIterator[ExternalTokens]:
    verifier = ExternalTokens([issuer_of(provider)], clock=clock, leeway=LEEWAY, allow_http=True)
    await verifier.start()
    yield verifier
    await verifier.aclose()


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_a_users_token_passes_with_its_role_mapped(
    provider: Provider, tokens: ExternalTokens
) -> None:
    admin = user_tokens(provider, "alice")["access_token"]
    plain = user_tokens(provider, "bob")["access_token"]

    claims = await tokens.verify(admin)
    other = await tokens.verify(plain)

    assert (claims.issuer, claims.sub, claims.role) == (provider.issuer, "alice", "admin")
    assert claims.jti
    assert (other.sub, other.role) == ("bob", None)  # no role claim: no local role


async def test_alg_none_is_refused(provider: Provider, tokens: ExternalTokens) -> None:
    header, claims = parts(client_token(provider))
    unsigned = f"{b64(header | {'alg': 'none'})}.{b64(claims)}."

    with pytest.raises(InvalidTokenError, match="algorithm not allowed"):
        await tokens.verify(unsigned)


async def test_hs256_signed_with_the_issuers_public_key_is_refused(
    provider: Provider, tokens: ExternalTokens
) -> None:
    header, claims = parts(client_token(provider))
    jwks = published_keys(provider)
    public = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{b64(header | {'alg': 'HS256'})}.{b64(claims)}".encode()
    mac = hmac.new(pem, signing_input, hashlib.sha256).digest()
    forged = f"{signing_input.decode()}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"

    with pytest.raises(InvalidTokenError, match="algorithm not allowed"):
        await tokens.verify(forged)


async def test_an_algorithm_the_issuer_is_not_pinned_to_is_refused(
    provider: Provider, clock: FrozenClock
) -> None:
    es256 = client_token(provider, API_ES256_RESOURCE)
    pinned = ExternalTokens(
        [issuer_of(provider, audience=API_ES256_RESOURCE)],
        clock=clock,
        leeway=LEEWAY,
        allow_http=True,
    )
    allowed = ExternalTokens(
        [issuer_of(provider, audience=API_ES256_RESOURCE, algorithms=["RS256", "ES256"])],
        clock=clock,
        leeway=LEEWAY,
        allow_http=True,
    )
    try:
        with pytest.raises(InvalidTokenError, match="algorithm not allowed"):
            await pinned.verify(es256)
        assert (await allowed.verify(es256)).sub == CLIENT_ID
    finally:
        await pinned.aclose()
        await allowed.aclose()


async def test_a_key_the_issuer_never_published_is_refused(
    provider: Provider, tokens: ExternalTokens
) -> None:
    header, claims = parts(client_token(provider))
    key = attacker_key()
    own_kid = jwt.encode(claims, key, algorithm="RS256", headers=header | {"kid": "attacker"})
    their_kid = jwt.encode(claims, key, algorithm="RS256", headers=header)

    with pytest.raises(InvalidTokenError, match="unknown kid"):
        await tokens.verify(own_kid)
    with pytest.raises(InvalidTokenError, match="bad signature"):
        await tokens.verify(their_kid)


async def test_an_issuer_not_configured_is_refused(
    provider: Provider, tokens: ExternalTokens
) -> None:
    with running_provider() as other:
        foreign = client_token(other)  # a real token, of a real issuer, valid for the API
    header, claims = parts(client_token(provider))
    claims_forged = claims | {"iss": "https://login.example.com/"}
    self_made = jwt.encode(claims_forged, attacker_key(), algorithm="RS256", headers=header)

    for token in (foreign, self_made):
        with pytest.raises(InvalidTokenError, match="unknown issuer"):
            await tokens.verify(token)


async def test_a_token_for_another_audience_is_refused(
    provider: Provider, clock: FrozenClock
) -> None:
    # The same issuer and key type, but minted for another API.
    verifier = ExternalTokens(
        [issuer_of(provider, algorithms=["RS256", "ES256"])],
        clock=clock,
        leeway=LEEWAY,
        allow_http=True,
    )
    try:
        with pytest.raises(InvalidTokenError, match="wrong audience"):
            await verifier.verify(client_token(provider, API_ES256_RESOURCE))
    finally:
        await verifier.aclose()


async def test_an_id_token_is_not_an_access_token(
    provider: Provider, clock: FrozenClock, tokens: ExternalTokens
) -> None:
    id_token = user_tokens(provider, "alice")["id_token"]
    # Even an API that takes the client id as its audience refuses it for its type.
    lenient = ExternalTokens(
        [issuer_of(provider, audience=[API_RESOURCE, CLIENT_ID])],
        clock=clock,
        leeway=LEEWAY,
        allow_http=True,
    )
    try:
        with pytest.raises(InvalidTokenError, match="wrong token type"):
            await lenient.verify(id_token)
    finally:
        await lenient.aclose()


async def test_an_expired_token_is_refused_after_the_leeway(
    provider: Provider, tokens: ExternalTokens, clock: FrozenClock
) -> None:
    token = client_token(provider)
    _, claims = parts(token)
    assert (await tokens.verify(token)).sub == CLIENT_ID

    clock.set(datetime.fromtimestamp(claims["exp"], UTC) + LEEWAY - timedelta(seconds=1))
    assert (await tokens.verify(token)).sub == CLIENT_ID  # within the leeway
    clock.advance(seconds=2)

    with pytest.raises(InvalidTokenError, match="expired"):
        await tokens.verify(token)  # the cached verification is checked again too


async def test_a_flood_of_made_up_kids_is_not_a_flood_of_key_fetches(
    provider: Provider, tokens: ExternalTokens, clock: FrozenClock
) -> None:
    header, claims = parts(client_token(provider))
    key = attacker_key()
    fetches = tokens.key_fetches(provider.issuer)  # the discovery's first fetch is lazy

    for _ in range(200):
        forged = jwt.encode(
            claims, key, algorithm="RS256", headers=header | {"kid": secrets.token_hex(8)}
        )
        with pytest.raises(InvalidTokenError, match="unknown kid"):
            await tokens.verify(forged)

    assert tokens.key_fetches(provider.issuer) - fetches <= 1
    clock.advance(seconds=61)
    with pytest.raises(InvalidTokenError, match="unknown kid"):
        await tokens.verify(
            jwt.encode(claims, key, algorithm="RS256", headers=header | {"kid": "later"})
        )
    assert tokens.key_fetches(provider.issuer) - fetches <= 2
    assert (await tokens.verify(client_token(provider))).sub == CLIENT_ID  # still served


async def test_an_issuer_down_at_start_is_refused_until_it_answers(clock: FrozenClock) -> None:
    proxy = TCPProxy("127.0.0.1", 1)
    await proxy.start()
    await proxy.cut()
    issuer = f"http://127.0.0.1:{proxy.port}"
    with running_provider(issuer=issuer) as provider:
        proxy.point_at("127.0.0.1", provider.port)
        verifier = ExternalTokens(
            [issuer_of(provider)], clock=clock, leeway=LEEWAY, allow_http=True
        )
        try:
            await verifier.start()  # does not raise: the service starts
            token = client_token(provider)
            with pytest.raises(InvalidTokenError, match="issuer unavailable"):
                await verifier.verify(token)

            await proxy.restore()
            with pytest.raises(InvalidTokenError, match="issuer unavailable"):
                await verifier.verify(token)  # not asked again within the minute
            clock.advance(seconds=61)
            assert (await verifier.verify(token)).issuer == issuer
        finally:
            await verifier.aclose()
            await proxy.cut()


async def test_discovery_is_refreshed_daily_and_what_is_held_serves_while_it_fails(
    clock: FrozenClock,
) -> None:
    proxy = TCPProxy("127.0.0.1", 1)
    await proxy.start()
    config = default_config() | {"ttl": {"AccessToken": 3 * 86400}}  # valid a day later
    with running_provider(config, issuer=f"http://127.0.0.1:{proxy.port}") as provider:
        proxy.point_at("127.0.0.1", provider.port)
        verifier = ExternalTokens(
            [issuer_of(provider)], clock=clock, leeway=LEEWAY, allow_http=True
        )
        try:
            await verifier.start()
            # Tokens not verified before (a verified token is served from the cache).
            first, *later, last = [user_tokens(provider, "alice")["access_token"] for _ in range(5)]
            await verifier.verify(first)
            clock.advance(seconds=3600)
            await verifier.verify(later.pop())
            assert verifier.discoveries(provider.issuer) == 1  # not before a day

            await proxy.cut()
            clock.advance(seconds=86400)
            for token in later:
                # The issuer does not answer: its metadata and keys held still serve,
                # and it is asked once a minute at most.
                assert (await verifier.verify(token)).sub == "alice"
            assert verifier.discoveries(provider.issuer) == 2

            await proxy.restore()
            clock.advance(seconds=61)
            assert (await verifier.verify(last)).sub == "alice"
            assert verifier.discoveries(provider.issuer) == 3
        finally:
            await verifier.aclose()
            await proxy.cut()
