"""Resource-server mode against claims an issuer signs that no well-behaved one would:
the real OpenID provider of the suite publishes a key the test holds, so the test signs
what it likes. Whatever the values, the answer is a problem or a success, never a 500,
and a principal is whole (its account and its identity's record) or not there; a
revocation holds against an issuer whose clock runs ahead, within the leeway."""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion.accounts._principals import issuer_key, principal_id
from bastion.clock import FrozenClock
from bastion.stores import ExternalLink
from tests.conftest import AppMaker
from tests.helpers import user
from tests.oidc.harness import API_RESOURCE, Provider, default_config, running_provider

KID = "held-by-the-test"
HELD_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def issuer() -> Iterator[Provider]:
    """The real provider, signing with (and publishing) a key this module holds."""
    private = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(HELD_KEY))
    config = default_config() | {
        "jwks": {"keys": [private | {"kid": KID, "alg": "RS256", "use": "sig"}]}
    }
    with running_provider(config) as running:
        yield running


def signed(provider: Provider, payload: bytes | dict[str, Any]) -> str:
    """A token over ``payload`` (raw JSON bytes for what json.dumps will not write)."""
    header = {"alg": "RS256", "typ": "at+jwt", "kid": KID}
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    segments = [
        jwt.utils.base64url_encode(json.dumps(header).encode()),
        jwt.utils.base64url_encode(raw),
    ]
    signing_input = b".".join(segments)
    signature = jwt.algorithms.RSAAlgorithm(jwt.algorithms.RSAAlgorithm.SHA256).sign(
        signing_input, HELD_KEY
    )
    return (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()


def claims(provider: Provider, now: int, **values: Any) -> dict[str, Any]:
    return {
        "iss": provider.issuer,
        "aud": API_RESOURCE,
        "sub": f"s-{secrets.token_hex(4)}",
        "jti": secrets.token_hex(8),
        "iat": now,
        "exp": now + 300,
        "role": "admin",
    } | values


def with_raw(payload: dict[str, Any], name: str, json_text: str) -> bytes:
    """``payload`` as JSON with claim ``name`` set to ``json_text`` as written."""
    return json.dumps(payload | {name: "@@"}).replace('"@@"', json_text).encode()


async def service(make: AppMaker, provider: Provider, **overrides: Any) -> Any:
    issuers = [
        {
            "issuer": provider.issuer,
            "audience": API_RESOURCE,
            "role_claim": "role",
            "role_map": {"admin": "admin"},
        }
    ]
    return await make.app(external_issuers=issuers, **overrides)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hostile(provider: Provider) -> dict[str, tuple[str, bool]]:
    """Tokens with odd claim values (each its own subject and jti), and whether each
    must be accepted."""
    now = int(time.time())

    def token(**values: Any) -> str:
        return signed(provider, claims(provider, now, **values))

    def raw(name: str, json_text: str) -> str:
        return signed(provider, with_raw(claims(provider, now), name, json_text))

    return {
        "sub with a lone surrogate": (raw("sub", '"\\ud800"'), False),
        "sub with a NUL": (token(sub="a\u0000b"), False),
        "sub of 256 characters": (token(sub="s" * 256), False),
        "jti with a lone surrogate": (raw("jti", '"\\ud800"'), True),
        "jti with a NUL": (token(jti="j\u0000"), True),
        "jti of 5000 characters": (token(jti="j" * 5000), True),
        "email with a lone surrogate": (raw("email", '"\\udc00"'), True),
        "email with a NUL": (token(email="a\u0000@b.example"), True),
        "email of 9000 characters": (token(email="e" * 9000), True),
        "exp past the year 9999": (token(exp=253402300800), False),
        "exp of 1e300": (token(exp=1e300), False),
        "exp of 10**20": (token(exp=10**20), False),
        "exp a month and more away": (token(exp=now + 32 * 86400), False),
    }


async def test_hostile_claim_values_are_answered_never_with_a_500(
    make: AppMaker, issuer: Provider
) -> None:
    app = await service(make, issuer)
    client = await make.client(app)
    stores = app.state.security.stores

    for name, (token, accepted) in hostile(issuer).items():
        me = await client.get("/users/me", headers=bearer(token))
        tasks = await client.get("/tasks", headers=bearer(token))
        out = await client.post("/auth/logout", headers=bearer(token))
        after = await client.get("/users/me", headers=bearer(token))

        assert (me.status_code, tasks.status_code) == ((200, 200) if accepted else (401, 401)), (
            name,
            me.text,
        )
        assert out.status_code == (204 if accepted else 401), (name, out.text)
        assert after.status_code == 401, name  # logged out, or never in
        if accepted:
            assert "\x00" not in me.json()["email"]
            assert len(me.json()["email"]) <= 320
            [link] = await stores.links.of_user(uuid.UUID(me.json()["id"]))
            assert link.provider == issuer_key(issuer.issuer)  # the principal is whole


async def test_a_principal_is_created_with_its_identity_or_not_at_all(
    make: AppMaker, issuer: Provider
) -> None:
    app = await service(make, issuer)
    client = await make.client(app)
    stores = app.state.security.stores
    now = int(time.time())
    payload = claims(issuer, now, sub="taken")
    # The identity's record exists (its account was deleted by hand, say): the account
    # is not created without it.
    user_id = principal_id(issuer.issuer, "taken")
    account = await user(client, app, "first@example.com")
    other = uuid.UUID(account["id"])
    await stores.links.add(
        ExternalLink(issuer_key(issuer.issuer), "taken", other, None, datetime.now(UTC))
    )

    refused = await client.get("/users/me", headers=bearer(signed(issuer, payload)))

    assert refused.status_code == 401
    assert await stores.accounts.get(user_id) is None  # nothing half-written


async def test_a_revocation_holds_against_an_issuer_clock_ahead_within_the_leeway(
    make: AppMaker, issuer: Provider
) -> None:
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    app = await service(make, issuer, clock=clock)
    client = await make.client(app)
    now = int(clock.now().timestamp())
    sub = f"s-{secrets.token_hex(4)}"
    ahead = signed(issuer, claims(issuer, now, sub=sub, iat=now + 25))  # issued before
    current = signed(issuer, claims(issuer, now, sub=sub, iat=now - 5))
    assert (await client.get("/tasks", headers=bearer(ahead))).status_code == 200

    out = await client.post("/auth/logout-all", headers=bearer(current))
    clock.advance(seconds=5)
    later = signed(issuer, claims(issuer, now, sub=sub, iat=now + 31))

    assert out.status_code == 204
    assert (await client.get("/tasks", headers=bearer(ahead))).status_code == 401
    assert (await client.get("/tasks", headers=bearer(current))).status_code == 401
    assert (await client.get("/tasks", headers=bearer(later))).status_code == 200
