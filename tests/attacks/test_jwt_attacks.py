"""Forged, tampered and misused access tokens: each attack must end in InvalidTokenError.

RFC 8725 §2-3 (alg none, algorithm confusion, explicit typing), RFC 9068 §4 (typ, iss, aud,
exp), ASVS 9.1.1-9.1.3 and 9.2.1-9.2.3 (signature, allowlisted algorithms, key sources,
validity window, audience). Hand-crafted tokens are built here, not with PyJWT, so that PyJWT's
own guards on encoding cannot hide a missing check on decoding.
"""

from __future__ import annotations

import builtins
import io
import os
import socket
import urllib.request
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bastion.clock import FrozenClock
from bastion.errors import InvalidTokenError
from bastion.tokens import AccessClaims, AccessTokens, KeySet, SigningKey
from tests.jws import b64, b64json, compact, hmac_signer

NOW = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)
ISSUER = "https://bastion.test"
AUDIENCE = "bastion-api"


@dataclass
class Env:
    keys: KeySet
    clock: FrozenClock
    tokens: AccessTokens
    token: str
    claims: AccessClaims

    @property
    def key(self) -> SigningKey:
        return self.keys.signing_key

    @property
    def private(self) -> Ed25519PrivateKey:
        assert isinstance(self.key.private_key, Ed25519PrivateKey)
        return self.key.private_key

    def header(self, **changes: Any) -> dict[str, Any]:
        header = {"alg": "EdDSA", "kid": self.key.kid, "typ": "at+jwt", **changes}
        return {name: value for name, value in header.items() if value is not None}

    def payload(self, **changes: Any) -> dict[str, Any]:
        return {**asdict(self.claims), **changes}

    def sign(self, header: dict[str, Any], payload: dict[str, Any]) -> str:
        """A token signed with the real key: only the chosen header or claim is wrong."""
        return compact(header, payload, self.private.sign)


@pytest.fixture
def env() -> Env:
    clock = FrozenClock(NOW)
    keys = KeySet.generate("EdDSA", clock=clock)
    tokens = AccessTokens(keys, issuer=ISSUER, audience=AUDIENCE, clock=clock)
    token, claims = tokens.issue(subject="user-1", role="user", session_id="s-1", token_version=3)
    return Env(keys, clock, tokens, token, claims)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to fetch a key from jku/x5u/jwk (ASVS 9.1.3, API7:2023) fails the test."""

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        pytest.fail("token verification attempted a network request")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)


def _reject(tokens: AccessTokens, token: str, reason: str) -> None:
    with pytest.raises(InvalidTokenError) as exc_info:
        tokens.verify(token)

    assert exc_info.value.reason == reason


def test_valid_token_verifies(env: Env) -> None:
    claims = env.tokens.verify(env.token)

    assert claims == env.claims


def test_token_header_has_typ_at_jwt_and_kid(env: Env) -> None:
    header = jwt.get_unverified_header(env.token)

    assert header == {"alg": "EdDSA", "kid": env.key.kid, "typ": "at+jwt"}


def test_claims_carry_client_id_and_unique_jti(env: Env) -> None:
    _, other = env.tokens.issue(subject="user-1", role="user", session_id="s-1", token_version=3)

    assert env.claims.client_id == "bastion"
    assert len(env.claims.jti) >= 22  # 16 random bytes, base64url
    assert env.claims.jti != other.jti
    assert env.claims.exp - env.claims.iat == 15 * 60


@pytest.mark.parametrize("alg", ["none", "None", "NONE"], ids=["none", "None", "NONE"])
def test_alg_none_is_rejected(env: Env, alg: str) -> None:
    token = compact(env.header(alg=alg), env.payload(role="admin"))

    _reject(env.tokens, token, "unsigned token")


def test_unsigned_token_with_the_right_kid_is_rejected(env: Env) -> None:
    token = compact(env.header(), env.payload(role="admin"))

    _reject(env.tokens, token, "bad signature")


@pytest.mark.parametrize("form", ["pem", "raw"], ids=["pem", "raw"])
def test_hs256_signed_with_the_public_key_is_rejected(env: Env, form: str) -> None:
    public = env.private.public_key()
    secret = (
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
        if form == "pem"
        else public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    )
    token = compact(env.header(alg="HS256"), env.payload(role="admin"), hmac_signer(secret))

    _reject(env.tokens, token, "algorithm mismatch")


def test_modified_payload_is_rejected(env: Env) -> None:
    header, _, signature = env.token.split(".")
    token = f"{header}.{b64json(env.payload(role='admin'))}.{signature}"

    _reject(env.tokens, token, "bad signature")


def test_token_signed_by_another_key_reusing_the_real_kid_is_rejected(env: Env) -> None:
    attacker = Ed25519PrivateKey.generate()
    token = compact(env.header(), env.payload(role="admin"), attacker.sign)

    _reject(env.tokens, token, "bad signature")


def test_unknown_kid_is_rejected(env: Env) -> None:
    token = env.sign(env.header(kid="no-such-key"), env.payload())

    _reject(env.tokens, token, "unknown kid")


@pytest.mark.parametrize(
    "kid",
    ["../../../../dev/null", "/etc/passwd", "file:///etc/passwd"],
    ids=["relative", "absolute", "file-url"],
)
def test_path_like_kid_is_unknown_and_reads_nothing(
    env: Env, monkeypatch: pytest.MonkeyPatch, kid: str
) -> None:
    token = env.sign(env.header(kid=kid), env.payload())

    def refuse(*args: object, **kwargs: object) -> NoReturn:
        pytest.fail("token verification opened a file")

    with monkeypatch.context() as patch:
        for owner, name in [(builtins, "open"), (io, "open"), (os, "open")]:
            patch.setattr(owner, name, refuse)
        with pytest.raises(InvalidTokenError) as exc_info:
            env.tokens.verify(token)

    assert exc_info.value.reason == "unknown kid"


@pytest.mark.parametrize("kid", [None, 7, ["k"], {"k": 1}], ids=["missing", "int", "list", "obj"])
def test_missing_or_non_string_kid_is_rejected(env: Env, kid: Any) -> None:
    header = env.header()
    header.pop("kid")
    if kid is not None:
        header["kid"] = kid

    _reject(env.tokens, env.sign(header, env.payload()), "unknown kid")


@pytest.mark.parametrize(
    "typ",
    [None, "JWT", "refresh+jwt", "at+jwt+extra", 1],
    ids=["missing", "jwt", "refresh", "suffix", "int"],
)
def test_wrong_or_missing_typ_is_rejected(env: Env, typ: Any) -> None:
    header = env.header()
    header.pop("typ")
    if typ is not None:
        header["typ"] = typ

    _reject(env.tokens, env.sign(header, env.payload()), "wrong token type")


@pytest.mark.parametrize("typ", ["application/at+jwt", "AT+JWT"], ids=["media-type", "upper"])
def test_other_spellings_of_at_jwt_are_accepted(env: Env, typ: str) -> None:
    token = env.sign(env.header(typ=typ), env.payload())

    assert env.tokens.verify(token).jti == env.claims.jti


def test_expired_beyond_leeway_is_rejected(env: Env) -> None:
    env.clock.set(datetime.fromtimestamp(env.claims.exp + 31, UTC))

    _reject(env.tokens, env.token, "expired")


def test_expired_within_leeway_is_accepted(env: Env) -> None:
    env.clock.set(datetime.fromtimestamp(env.claims.exp + 29, UTC))

    assert env.tokens.verify(env.token).sub == "user-1"


def test_nbf_in_the_future_is_rejected(env: Env) -> None:
    token = env.sign(env.header(), env.payload(nbf=env.claims.iat + 60))

    _reject(env.tokens, token, "not yet valid")


def test_iat_in_the_future_is_rejected(env: Env) -> None:
    token = env.sign(env.header(), env.payload(iat=env.claims.iat + 3600))

    _reject(env.tokens, token, "issued in the future")


def test_wrong_audience_is_rejected(env: Env) -> None:
    token = env.sign(env.header(), env.payload(aud="another-api"))

    _reject(env.tokens, token, "wrong audience")


def test_audience_list_is_rejected(env: Env) -> None:
    token = env.sign(env.header(), env.payload(aud=["another-api", AUDIENCE]))

    _reject(env.tokens, token, "wrong audience")


def test_wrong_issuer_is_rejected(env: Env) -> None:
    token = env.sign(env.header(), env.payload(iss="https://attacker.example"))

    _reject(env.tokens, token, "wrong issuer")


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"])
def test_missing_registered_claim_is_rejected(env: Env, claim: str) -> None:
    payload = env.payload()
    del payload[claim]

    _reject(env.tokens, env.sign(env.header(), payload), f"missing claim {claim}")


@pytest.mark.parametrize("claim", ["role", "sid", "tv", "client_id"])
def test_missing_bastion_claim_is_rejected(env: Env, claim: str) -> None:
    payload = env.payload()
    del payload[claim]

    _reject(env.tokens, env.sign(env.header(), payload), f"missing claim {claim}")


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("sub", 5),
        ("jti", 7),
        ("role", ["admin"]),
        ("sid", 5),
        ("tv", "3"),
        ("tv", True),
        ("client_id", ""),
        ("exp", "9"),
    ],
    ids=[
        "sub-int",
        "jti-int",
        "role-list",
        "sid-int",
        "tv-str",
        "tv-bool",
        "client-id-empty",
        "exp-str",
    ],
)
def test_claim_of_the_wrong_type_is_rejected(env: Env, claim: str, value: Any) -> None:
    token = env.sign(env.header(), env.payload(**{claim: value}))

    with pytest.raises(InvalidTokenError):
        env.tokens.verify(token)


@pytest.mark.parametrize("kid_of", ["attacker", "real"], ids=["attacker-kid", "real-kid"])
def test_key_from_jku_x5u_jwk_headers_is_never_used(env: Env, kid_of: str) -> None:
    attacker = Ed25519PrivateKey.generate()
    raw = attacker.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    kid = "attacker-key" if kid_of == "attacker" else env.key.kid
    header = env.header(
        kid=kid,
        jku="https://attacker.example/jwks.json",
        x5u="https://attacker.example/cert.pem",
        jwk={"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": kid},
        x5c=[b64(b"not a certificate")],
    )
    token = compact(header, env.payload(role="admin"), attacker.sign)

    _reject(env.tokens, token, "unknown kid" if kid_of == "attacker" else "bad signature")


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c.d", "!!!.e30.", f"{b64json([1])}.e30.", f"{'a' * 9000}.e30.sig"],
    ids=["empty", "one-part", "two-parts", "four-parts", "bad-base64", "header-list", "huge"],
)
def test_malformed_token_is_rejected(env: Env, token: str) -> None:
    _reject(env.tokens, token, "malformed token")


def test_hs256_key_set_rejects_token_signed_with_another_secret() -> None:
    clock = FrozenClock(NOW)
    tokens = AccessTokens(
        KeySet.from_secret(os.urandom(32)), issuer=ISSUER, audience=AUDIENCE, clock=clock
    )
    token, claims = tokens.issue(subject="u", role="user", session_id="s", token_version=0)
    header = jwt.get_unverified_header(token)
    forged = compact(header, {**asdict(claims), "role": "admin"}, hmac_signer(os.urandom(32)))

    assert tokens.verify(token).role == "user"
    _reject(tokens, forged, "bad signature")


@pytest.mark.parametrize("leeway", [31, 300, -1], ids=["31s", "5min", "negative"])
def test_leeway_outside_0_to_30_seconds_is_refused(leeway: int) -> None:
    with pytest.raises(ValueError, match="leeway"):
        AccessTokens(
            KeySet.generate(), issuer=ISSUER, audience=AUDIENCE, leeway=timedelta(seconds=leeway)
        )


# -- the cache of verified tokens does not widen what is accepted -----------------------


def test_a_cached_token_still_expires(env: Env) -> None:
    assert env.tokens.verify(env.token) == env.claims  # verified, and now cached

    env.clock.advance(seconds=15 * 60 + 31)  # past exp and the 30 s leeway

    with pytest.raises(InvalidTokenError, match="expired"):
        env.tokens.verify(env.token)


def test_a_cached_token_of_a_removed_key_is_refused(env: Env) -> None:
    signed_by = env.key.kid
    env.tokens.verify(env.token)
    env.keys.rotate(clock=env.clock)
    env.clock.advance(seconds=60)

    assert env.keys.prune(clock=env.clock, keep_for=timedelta(0)) == [signed_by]
    with pytest.raises(InvalidTokenError, match="unknown kid"):
        env.tokens.verify(env.token)


def test_a_forged_signature_on_a_cached_payload_is_still_checked(env: Env) -> None:
    env.tokens.verify(env.token)
    head, payload, _signature = env.token.split(".")
    forged = f"{head}.{payload}.{b64(bytes(64))}"

    with pytest.raises(InvalidTokenError, match="bad signature"):
        env.tokens.verify(forged)


def test_each_token_is_verified_once_while_cached(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    decode = jwt.decode
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: calls.append(1) or decode(*a, **k))
    small = AccessTokens(env.keys, issuer=ISSUER, audience=AUDIENCE, clock=env.clock, cache_size=2)
    tokens = [
        small.issue(subject=f"user-{n}", role="user", session_id="s", token_version=0)[0]
        for n in range(3)
    ]

    for _ in range(3):
        small.verify(tokens[0])
    small.verify(tokens[1])
    small.verify(tokens[2])  # the cache holds two: the oldest, tokens[0], goes
    small.verify(tokens[0])

    assert len(calls) == 4
