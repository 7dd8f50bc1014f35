"""Resource-server mode through the service's routes, against a real OpenID provider, on
both backends: an external issuer's access token is a principal with its mapped role,
created on first sight, revoked by its ``jti`` and with its account; and the attacks on
it over HTTP (an ``alg`` swapped, a key the issuer never published, an issuer not
configured, another audience, a flood of made-up ``kid``s). Every refusal is the same
401 as for any invalid token, and its ``auth_failure`` event names the issuer."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import uuid
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bastion.accounts import ExternalPrincipals
from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import user
from tests.oidc.harness import (
    ALICE,
    API_ES256_RESOURCE,
    API_RESOURCE,
    Provider,
    client_token,
    published_keys,
    user_tokens,
)


def issuers_setting(provider: Provider, **overrides: Any) -> list[dict[str, Any]]:
    return [
        {
            "issuer": provider.issuer,
            "audience": API_RESOURCE,
            "algorithms": ["RS256"],
            "role_claim": "role",
            "role_map": {"admin": "admin"},
            **overrides,
        }
    ]


async def service(make: AppMaker, provider: Provider, **overrides: Any) -> Any:
    overrides.setdefault("external_issuers", issuers_setting(provider))
    return await make.app(**overrides)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def access_token(provider: Provider, login: str, **kwargs: Any) -> str:
    return str(user_tokens(provider, login, **kwargs)["access_token"])


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return jwt.get_unverified_header(token), jwt.decode(token, options={"verify_signature": False})


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def unpadded(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def attacker_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def principals(app: Any) -> ExternalPrincipals:
    external = app.state.security.external
    assert external is not None
    return external  # type: ignore[no-any-return]


async def test_an_external_users_token_is_a_principal_with_its_mapped_role(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    first, second = access_token(provider, "alice"), access_token(provider, "alice")

    with capture_events() as events:
        me = await client.get("/users/me", headers=bearer(first))
        again = await client.get("/users/me", headers=bearer(second))
        users = await client.get("/admin/users", headers=bearer(first))  # the role admin
        created = await client.post("/tasks", json={"title": "From SSO"}, headers=bearer(second))

    assert me.status_code == 200, me.text
    assert me.json()["role"] == "admin"
    assert me.json()["email"] == ALICE["email"]  # the token's email claim
    assert again.json()["id"] == me.json()["id"]  # one principal: issuer + sub
    assert users.status_code == 200
    assert created.status_code == 201
    assert created.json()["owner_id"] == me.json()["id"]
    registered = [e for e in events if e.event_type == "user_registered"]
    assert len(registered) == 1  # created on first sight, once
    assert provider.issuer in (registered[0].details or "")
    stored = await app.state.security.stores.accounts.get(uuid.UUID(me.json()["id"]))
    assert stored.password_hash is None  # nobody signs in to it with a password
    assert stored.role == "viewer"  # the row's role grants nothing; the token's decides
    assert stored.email.endswith("@external.invalid")


async def test_a_token_whose_role_maps_to_none_may_only_read_its_account(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    token = access_token(provider, "bob")  # no role claim

    me = await client.get("/users/me", headers=bearer(token))
    tasks = await client.get("/tasks", headers=bearer(token))
    renamed = await client.patch("/users/me", json={"display_name": "B"}, headers=bearer(token))
    sessions = await client.get("/auth/sessions", headers=bearer(token))

    assert me.status_code == 200, me.text
    assert me.json()["role"] == "none"
    assert tasks.status_code == 403
    assert renamed.status_code == 403  # "authenticated" is not enough without a role
    assert sessions.status_code == 403


async def test_a_role_the_map_does_not_name_grants_nothing(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(
        make, provider, external_issuers=issuers_setting(provider, role_map={"auditor": "admin"})
    )
    client = await make.client(app)
    token = access_token(provider, "alice")  # role "admin" at the issuer, unmapped here

    assert (await client.get("/admin/users", headers=bearer(token))).status_code == 403
    assert (await client.get("/users/me", headers=bearer(token))).json()["role"] == "none"


async def test_a_logout_revokes_that_token_only(make: AppMaker, provider: Provider) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    token, other = access_token(provider, "alice"), access_token(provider, "alice")
    assert (await client.get("/users/me", headers=bearer(other))).status_code == 200

    out = await client.post("/auth/logout", headers=bearer(token))

    assert out.status_code == 204, out.text
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 401
    assert (await client.get("/users/me", headers=bearer(other))).status_code == 200


async def test_revoking_the_principal_refuses_its_tokens_issued_before(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    admin = await user(client, app, "root@example.com", "admin")
    token = access_token(provider, "alice")
    me = await client.get("/users/me", headers=bearer(token))
    principal_id = me.json()["id"]

    revoked = await client.post(
        f"/admin/users/{principal_id}/revoke-sessions", headers=admin["auth"]
    )

    assert revoked.status_code == 204
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 401
    # A token issued later is accepted again once past the issuer's clock leeway (30 s):
    # tests/attacks/test_api_external_claims.py signs one with its own iat.
    disabled = await client.patch(
        f"/admin/users/{principal_id}", json={"is_active": False}, headers=admin["auth"]
    )
    assert disabled.status_code == 200
    assert (await client.get("/users/me", headers=bearer(token))).status_code == 401


async def test_the_principals_logout_all_revokes_its_tokens(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    token, other = access_token(provider, "alice"), access_token(provider, "alice")

    out = await client.post("/auth/logout-all", headers=bearer(token))

    assert out.status_code == 204, out.text
    assert (await client.get("/users/me", headers=bearer(other))).status_code == 401


async def test_a_service_without_the_issuer_refuses_its_tokens(
    make: AppMaker, provider: Provider
) -> None:
    app = await make.app()  # no external issuer configured
    client = await make.client(app)

    refused = await client.get("/users/me", headers=bearer(access_token(provider, "alice")))

    assert refused.status_code == 401


def forged_tokens(provider: Provider) -> dict[str, str]:
    """Tokens an attacker makes from a real one: each must be refused."""
    real = access_token(provider, "alice")
    header, claims = parts(real)
    key = attacker_key()
    [published] = [k for k in published_keys(provider)["keys"] if k["kty"] == "RSA"]
    public_pem = (
        jwt.PyJWK(published)
        .key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )
    hs256 = f"{b64(header | {'alg': 'HS256'})}.{b64(claims)}"
    mac = hmac.new(public_pem.encode(), hs256.encode(), hashlib.sha256).digest()
    return {
        "alg none": f"{b64(header | {'alg': 'none'})}.{b64(claims)}.",
        "HS256 with the public key": f"{hs256}.{unpadded(mac)}",
        "a key the issuer never published": jwt.encode(
            claims, key, algorithm="RS256", headers=header | {"kid": "attacker"}
        ),
        "the issuer's kid, the attacker's key": jwt.encode(
            claims, key, algorithm="RS256", headers=header
        ),
        "an issuer not configured": jwt.encode(
            claims | {"iss": "https://idp.attacker.example"},
            key,
            algorithm="RS256",
            headers=header,
        ),
        "another subject in a signed token": (
            f"{real.split('.')[0]}.{b64(claims | {'sub': 'bob'})}.{real.split('.')[2]}"
        ),
        "another audience": access_token(provider, "alice", resource=API_ES256_RESOURCE),
        "a client's token of another audience": client_token(provider, API_ES256_RESOURCE),
    }


async def test_forged_and_foreign_tokens_are_refused_as_any_invalid_token(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(
        make,
        provider,
        external_issuers=issuers_setting(provider, algorithms=["RS256", "ES256"]),
    )
    client = await make.client(app)
    garbage = await client.get("/users/me", headers=bearer("not.a.token"))

    for attack, token in forged_tokens(provider).items():
        with capture_events() as events:
            refused = await client.get("/users/me", headers=bearer(token))
            await asyncio.sleep(0)  # the event is written after the response

        assert refused.status_code == 401, attack
        assert refused.headers["www-authenticate"] == garbage.headers["www-authenticate"], attack
        assert refused.json()["type"] == garbage.json()["type"], attack
        failures = [e for e in events if e.event_type == "auth_failure"]
        assert failures, attack
        if attack != "an issuer not configured":
            assert provider.issuer in (failures[0].details or ""), attack
    listed = await app.state.security.stores.accounts.page(limit=10)
    assert not [a for a in listed if a.email.endswith("@external.invalid")]  # none created


async def test_a_flood_of_made_up_kids_fetches_the_issuers_keys_once(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    header, claims = parts(access_token(provider, "alice"))
    key = attacker_key()
    tokens = principals(app).tokens
    before = tokens.key_fetches(provider.issuer)

    for _ in range(50):
        forged = jwt.encode(
            claims, key, algorithm="RS256", headers=header | {"kid": secrets.token_hex(8)}
        )
        refused = await client.get("/users/me", headers=bearer(forged))
        assert refused.status_code == 401

    assert tokens.key_fetches(provider.issuer) - before <= 1
    served = await client.get("/users/me", headers=bearer(access_token(provider, "alice")))
    assert served.status_code == 200  # the real keys still serve


async def test_a_typ_other_than_at_jwt_is_refused_unless_the_issuer_sends_none(
    make: AppMaker, provider: Provider
) -> None:
    id_token = str(user_tokens(provider, "alice")["id_token"])  # typ JWT, aud the client
    app = await service(make, provider)
    client = await make.client(app)

    refused = await client.get("/users/me", headers=bearer(id_token))

    assert refused.status_code == 401


async def test_an_external_token_in_the_access_cookie_is_not_accepted(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider, cookie_secure=False)
    client = await make.client(app)
    client.cookies.set("bastion-access", access_token(provider, "alice"))

    refused = await client.get("/users/me")

    assert refused.status_code == 401  # the cookie mode's cookies are Bastion's own
