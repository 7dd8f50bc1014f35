"""Attack: what an issuer's tokens and documents may hold that a verifier must refuse
cleanly (never a traceback): numbers that are not finite, a not-before that is a float or
a string, strings that are not Unicode text, a typed access token with parameters, keys
not for verifying, compressed documents that inflate past the cap; and what concurrent
requests must not do to a slow issuer (refuse valid tokens while discovering, wait on
every refresh of the keys)."""

from __future__ import annotations

import asyncio
import gzip
import json
import warnings
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.warnings import InsecureKeyLengthWarning

from bastion.clock import FrozenClock
from bastion.errors import InvalidTokenError, OAuthFailedError
from bastion.oidc import (
    ExternalIssuer,
    ExternalTokens,
    OAuthProvider,
    OAuthSignIn,
    ProviderUnavailableError,
    RemoteKeySet,
    SignInBinding,
    safe_next,
    validate_id_token,
)
from bastion.oidc._http import fetch_json
from bastion.throttle._attempts import MemoryAttemptStore
from tests.oidc.json_server import Answer, JSONServer

AUDIENCE = "https://api.test/"
LEEWAY = timedelta(seconds=30)
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PUBLIC_JWK = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(KEY.public_key())) | {
    "kid": "k1",
    "alg": "RS256",
    "use": "sig",
}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC).replace(microsecond=0))


@pytest.fixture
async def issuer() -> AsyncIterator[JSONServer]:
    """An issuer of the test's own: its discovery document and JWKS."""
    async with JSONServer() as server:
        server.answers["/.well-known/openid-configuration"] = Answer(
            {"issuer": server.url, "jwks_uri": f"{server.url}/jwks"}
        )
        server.answers["/jwks"] = Answer({"keys": [PUBLIC_JWK]})
        yield server


def verifier(server: JSONServer, clock: FrozenClock) -> ExternalTokens:
    config = ExternalIssuer(issuer=server.url, audience=AUDIENCE, algorithms=["RS256"])
    return ExternalTokens([config], clock=clock, leeway=LEEWAY, allow_http=True)


def signed(claims: dict[str, Any], **header: Any) -> str:
    # json.dumps writes Infinity and NaN, as a careless issuer's encoder would.
    return jwt.encode(claims, KEY, algorithm="RS256", headers={"kid": "k1", **header})


def access(server: JSONServer, clock: FrozenClock, **changes: Any) -> str:
    now = int(clock.now().timestamp())
    claims = {"iss": server.url, "aud": AUDIENCE, "sub": "s", "iat": now, "exp": now + 300}
    return signed(claims | changes, typ="at+jwt")


@pytest.mark.parametrize(
    "changes",
    [
        {"exp": float("inf")},
        {"exp": float("nan")},
        {"iat": float("-inf")},
        {"exp": 1e400},
        {"nbf": float("nan")},
    ],
)
async def test_numbers_that_are_not_finite_are_refused(
    issuer: JSONServer, clock: FrozenClock, changes: dict[str, Any]
) -> None:
    tokens = verifier(issuer, clock)
    try:
        with pytest.raises(InvalidTokenError):
            await tokens.verify(access(issuer, clock, **changes))
    finally:
        await tokens.aclose()


async def test_a_not_before_is_checked_whatever_its_number_and_refused_otherwise(
    issuer: JSONServer, clock: FrozenClock
) -> None:
    later = clock.now().timestamp() + 86_400
    tokens = verifier(issuer, clock)
    try:
        for nbf in (later + 0.5, str(int(later)), True):
            with pytest.raises(InvalidTokenError):
                await tokens.verify(access(issuer, clock, nbf=nbf))
        assert (await tokens.verify(access(issuer, clock, nbf=later - 86_400.5))).sub == "s"
    finally:
        await tokens.aclose()


async def test_strings_that_are_not_unicode_text_are_refused(clock: FrozenClock) -> None:
    now = int(clock.now().timestamp())
    async with JSONServer() as server:
        server.answers["/jwks"] = Answer({"keys": [PUBLIC_JWK]})
        async with httpx.AsyncClient() as client:
            keys = RemoteKeySet(client, f"{server.url}/jwks", clock=clock, timeout=5.0)
            claims = {"iss": server.url, "aud": "app", "sub": "s", "iat": now, "exp": now + 60}
            with pytest.raises(InvalidTokenError, match="wrong nonce"):
                await validate_id_token(
                    signed(claims | {"nonce": "\ud800"}),
                    keys=keys,
                    issuer=server.url,
                    client_id="app",
                    nonce="n",
                    algorithms=["RS256"],
                    clock=clock,
                    leeway=LEEWAY,
                )
    binding = SignInBinding(b"s" * 32, clock=clock, claim=MemoryAttemptStore().claim)
    _, cookie = binding.begin("corp")
    with pytest.raises(OAuthFailedError, match="state missing or foreign"):
        await binding.finish(cookie, "corp", "\ud800")
    assert safe_next("/\ud800") == "/"


async def test_an_access_token_type_with_parameters_is_not_an_id_token(clock: FrozenClock) -> None:
    now = int(clock.now().timestamp())
    async with JSONServer() as server:
        server.answers["/jwks"] = Answer({"keys": [PUBLIC_JWK]})
        async with httpx.AsyncClient() as client:
            keys = RemoteKeySet(client, f"{server.url}/jwks", clock=clock, timeout=5.0)
            claims = {"iss": server.url, "aud": "app", "sub": "s", "iat": now, "exp": now + 60}
            with pytest.raises(InvalidTokenError, match="wrong token type"):
                await validate_id_token(
                    signed(claims | {"nonce": "n"}, typ="application/at+jwt; x=y"),
                    keys=keys,
                    issuer=server.url,
                    client_id="app",
                    nonce="n",
                    algorithms=["RS256"],
                    clock=clock,
                    leeway=LEEWAY,
                )


async def test_a_key_not_for_verifying_is_not_used(issuer: JSONServer, clock: FrozenClock) -> None:
    issuer.answers["/jwks"] = Answer({"keys": [PUBLIC_JWK | {"key_ops": ["encrypt"]}]})
    tokens = verifier(issuer, clock)
    try:
        with pytest.raises(InvalidTokenError, match="unknown kid"):
            await tokens.verify(access(issuer, clock))
    finally:
        await tokens.aclose()


async def test_a_compressed_answer_is_refused_before_it_inflates() -> None:
    bomb = gzip.compress(b'{"keys": [' + b" " * (64 * 1024 * 1024) + b"]}")
    async with JSONServer() as server, httpx.AsyncClient() as client:
        server.answers["/jwks"] = Answer(None, raw=bomb, headers={"content-encoding": "gzip"})
        with pytest.raises(ProviderUnavailableError, match="compressed"):
            await fetch_json(client, "GET", f"{server.url}/jwks", time_limit=5.0)


async def test_valid_tokens_are_not_refused_while_the_issuer_is_discovered(
    issuer: JSONServer, clock: FrozenClock
) -> None:
    issuer.answers["/.well-known/openid-configuration"].delay = 0.3
    tokens = verifier(issuer, clock)  # start() not called: the first tokens discover
    try:
        token = access(issuer, clock)
        results = await asyncio.gather(*(tokens.verify(token) for _ in range(20)))
        assert {claims.sub for claims in results} == {"s"}
        assert issuer.requests.count("/.well-known/openid-configuration") == 1
    finally:
        await tokens.aclose()


async def test_browsers_are_not_refused_while_the_provider_is_discovered(
    issuer: JSONServer, clock: FrozenClock
) -> None:
    discovery = issuer.answers["/.well-known/openid-configuration"]
    discovery.body |= {"authorization_endpoint": f"{issuer.url}/authorize"}
    discovery.delay = 0.3
    config = OAuthProvider(
        preset="oidc", issuer=issuer.url, client_id="app", client_secret="s" * 32
    )
    binding = SignInBinding(b"s" * 32, clock=clock, claim=MemoryAttemptStore().claim)
    oauth = OAuthSignIn(
        {"corp": config},
        redirect_base="http://testserver",
        binding=binding,
        clock=clock,
        leeway=LEEWAY,
        allow_http=True,
    )
    try:  # start() not called: the first browsers discover
        urls = await asyncio.gather(*(oauth.authorize("corp", None) for _ in range(20)))
        assert all(url.startswith(f"{issuer.url}/authorize?") for url, _ in urls)
        assert issuer.requests.count("/.well-known/openid-configuration") == 1
    finally:
        await oauth.aclose()


async def test_a_slow_refresh_of_the_keys_holds_up_one_request_at_most(
    issuer: JSONServer, clock: FrozenClock
) -> None:
    tokens = verifier(issuer, clock)
    try:
        token = access(issuer, clock)
        await tokens.verify(token)
        issuer.answers["/jwks"].delay = 1.0
        clock.advance(hours=1, seconds=1)  # the keys are old: refreshed
        fresh = [access(issuer, clock, jti=str(n)) for n in range(10)]

        started = asyncio.get_running_loop().time()
        waited: list[float] = []

        async def timed(one: str) -> None:
            await tokens.verify(one)
            waited.append(asyncio.get_running_loop().time() - started)

        await asyncio.gather(*(timed(one) for one in fresh))
        assert sorted(waited)[-2] < 0.5  # only the request that refreshes waits
    finally:
        await tokens.aclose()


async def test_a_provider_that_does_not_answer_delays_no_start(
    issuer: JSONServer, clock: FrozenClock
) -> None:
    discovery = issuer.answers["/.well-known/openid-configuration"]
    discovery.body |= {"authorization_endpoint": f"{issuer.url}/authorize"}
    async with JSONServer() as silent:
        silent.answers["/.well-known/openid-configuration"] = Answer({}, delay=30.0)
        configs = {
            "corp": OAuthProvider(
                preset="oidc", issuer=issuer.url, client_id="app", client_secret="s" * 32
            ),
            "down": OAuthProvider(
                preset="oidc", issuer=silent.url, client_id="app", client_secret="s" * 32
            ),
        }
        binding = SignInBinding(b"s" * 32, clock=clock, claim=MemoryAttemptStore().claim)
        oauth = OAuthSignIn(
            configs,
            redirect_base="http://testserver",
            binding=binding,
            clock=clock,
            leeway=LEEWAY,
            allow_http=True,
        )
        try:
            started = asyncio.get_running_loop().time()
            await oauth.start(within=1.0)
            elapsed = asyncio.get_running_loop().time() - started

            assert elapsed < 3.0
            url, _ = await oauth.authorize("corp", None)  # discovered at start
            assert url.startswith(f"{issuer.url}/authorize?")
            assert issuer.requests.count("/.well-known/openid-configuration") == 1
            with pytest.raises(OAuthFailedError, match="metadata cannot be read"):
                await oauth.authorize("down", None)  # asked again a minute later
        finally:
            await oauth.aclose()


async def test_an_rsa_key_under_2048_bits_is_refused(
    issuer: JSONServer, clock: FrozenClock
) -> None:
    """RFC 7518 §3.3: a 1024-bit key an issuer publishes verifies nothing (PyJWT alone
    would only warn)."""
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(weak.public_key()))
    issuer.answers["/jwks"] = Answer(
        {"keys": [PUBLIC_JWK, jwk | {"kid": "weak", "alg": "RS256", "use": "sig"}]}
    )
    now = int(clock.now().timestamp())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "s", "iat": now, "exp": now + 300}
    with warnings.catch_warnings():  # the attacker's side: signing with it only warns
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        token = jwt.encode(
            claims, weak, algorithm="RS256", headers={"kid": "weak", "typ": "at+jwt"}
        )
    tokens = verifier(issuer, clock)
    try:
        with pytest.raises(InvalidTokenError, match="key too short"):
            await tokens.verify(token)
        assert (await tokens.verify(access(issuer, clock))).sub == "s"  # the strong key serves
    finally:
        await tokens.aclose()


@pytest.mark.parametrize(
    ("vouched", "amr", "second_factor"),
    [([], ["mfa"], False), (["mfa"], ["pwd", "mfa"], True), (["mfa"], ["pwd"], False)],
)
async def test_a_provider_stands_for_a_second_factor_only_when_configured_and_said(
    issuer: JSONServer,
    clock: FrozenClock,
    vouched: list[str],
    amr: list[str],
    second_factor: bool,
) -> None:
    """A provider whose ``amr`` names a method of ``second_factor_amr`` vouches for the
    second factor (the real provider of the suite sends no ``amr``: a stand-in does)."""
    discovery = issuer.answers["/.well-known/openid-configuration"]
    discovery.body |= {
        "authorization_endpoint": f"{issuer.url}/authorize",
        "token_endpoint": f"{issuer.url}/token",
    }
    config = OAuthProvider(
        preset="oidc",
        issuer=issuer.url,
        client_id="app",
        client_secret="s" * 32,
        second_factor_amr=vouched,
    )
    binding = SignInBinding(b"s" * 32, clock=clock, claim=MemoryAttemptStore().claim)
    oauth = OAuthSignIn(
        {"corp": config},
        redirect_base="http://testserver",
        binding=binding,
        clock=clock,
        leeway=LEEWAY,
        allow_http=True,
    )
    try:
        url, cookie = await oauth.authorize("corp", None)
        params = dict(httpx.URL(url).params)
        now = int(clock.now().timestamp())
        id_token = signed(
            {
                "iss": issuer.url,
                "aud": "app",
                "sub": "s",
                "iat": now,
                "exp": now + 300,
                "nonce": params["nonce"],
                "amr": amr,
            }
        )
        issuer.answers["/token"] = Answer(
            {"access_token": "at", "token_type": "Bearer", "id_token": id_token}
        )
        identity, _ = await oauth.callback("corp", {"code": "c", "state": params["state"]}, cookie)
    finally:
        await oauth.aclose()

    assert identity.provider_amr == tuple(amr)
    assert identity.second_factor is second_factor
