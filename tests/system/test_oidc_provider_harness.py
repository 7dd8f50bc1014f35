"""The OIDC test harness against the real provider: discovery, the code flow with PKCE
driven without a browser, ID tokens verified with PyJWT, single-use codes, PKCE refused
when missing, and JWT access tokens (RFC 9068) for the API resource."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from tests.oidc.harness import (
    ALICE,
    API_ES256_RESOURCE,
    API_RESOURCE,
    BOB,
    CLIENT_ID,
    CLIENT_SECRET,
    POST_CLIENT_ID,
    REDIRECT_URI,
    Provider,
    pkce_pair,
    running_provider,
    sign_in,
)


@pytest.fixture
def browser() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


def verify(provider: Provider, token: str, audience: str) -> dict[str, Any]:
    """The token's claims, its signature checked against the provider's JWKS."""
    keys = jwt.PyJWKSet.from_dict(httpx.get(provider.jwks_uri).json())
    key = keys[jwt.get_unverified_header(token)["kid"]]
    claims: dict[str, Any] = jwt.decode(
        token,
        key.key,
        algorithms=["RS256", "ES256"],
        audience=audience,
        issuer=provider.issuer,
        options={"require": ["iss", "aud", "exp", "iat", "sub"]},
    )
    return claims


def exchange(
    provider: Provider, code: str, verifier: str | None, auth: tuple[str, str] | None = None
) -> httpx.Response:
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    if verifier is not None:
        data["code_verifier"] = verifier
    return httpx.post(provider.token_endpoint, data=data, auth=auth or (CLIENT_ID, CLIENT_SECRET))


def test_discovery_names_the_harness_issuer_and_only_s256(provider: Provider) -> None:
    document = httpx.get(provider.discovery_url).json()
    assert document["issuer"] == provider.issuer == f"http://127.0.0.1:{provider.port}"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["authorization_endpoint"] == provider.authorization_endpoint
    assert document["token_endpoint"] == provider.token_endpoint
    assert document["jwks_uri"] == provider.jwks_uri
    assert document["userinfo_endpoint"] == provider.userinfo_endpoint
    assert {"openid", "email", "profile"} <= set(document["scopes_supported"])


def test_the_code_flow_gives_a_verifiable_id_token_once(
    provider: Provider, browser: httpx.Client
) -> None:
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    verifier, challenge = pkce_pair()
    url = provider.authorization_url(state=state, nonce=nonce, code_challenge=challenge)

    back = sign_in(browser, url, login="alice")

    assert back.startswith(f"{REDIRECT_URI}?")
    params = query(back)
    assert params["state"] == state
    assert params["iss"] == provider.issuer
    tokens = exchange(provider, params["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    claims = verify(provider, tokens.json()["id_token"], audience=CLIENT_ID)
    assert claims["iss"] == provider.issuer
    assert claims["aud"] == CLIENT_ID
    assert claims["nonce"] == nonce
    assert claims["sub"] == "alice"
    assert claims["email"] == ALICE["email"]
    assert claims["email_verified"] is True
    assert claims["name"] == ALICE["name"]
    assert "role" not in claims

    again = exchange(provider, params["code"], verifier)
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant"


def test_the_code_is_refused_without_its_verifier(
    provider: Provider, browser: httpx.Client
) -> None:
    _, challenge = pkce_pair()
    url = provider.authorization_url(state="s", nonce="n", code_challenge=challenge)
    code = query(sign_in(browser, url, login="bob"))["code"]

    for verifier in (None, pkce_pair()[0]):
        refused = exchange(provider, code, verifier)
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_grant"


def test_an_authorization_request_without_pkce_is_refused(
    provider: Provider, browser: httpx.Client
) -> None:
    url = provider.authorization_url(state="no-pkce", nonce="n", code_challenge=None)

    params = query(sign_in(browser, url, login="alice"))

    assert "code" not in params
    assert params["error"] == "invalid_request"
    assert "PKCE" in params["error_description"]
    assert params["state"] == "no-pkce"


@pytest.mark.parametrize(("account", "role"), [(ALICE, "admin"), (BOB, None)])
def test_signing_in_for_the_api_gives_a_jwt_access_token_with_the_role(
    provider: Provider, browser: httpx.Client, account: dict[str, Any], role: str | None
) -> None:
    verifier, challenge = pkce_pair()
    url = provider.authorization_url(
        state="s",
        nonce="n",
        code_challenge=challenge,
        scope="openid email api:read",
        resource=API_RESOURCE,
    )
    code = query(sign_in(browser, url, login=account["sub"]))["code"]

    tokens = exchange(provider, code, verifier)
    assert tokens.status_code == 200, tokens.text
    access_token = tokens.json()["access_token"]
    assert jwt.get_unverified_header(access_token)["typ"] == "at+jwt"
    claims = verify(provider, access_token, audience=API_RESOURCE)
    assert claims["sub"] == account["sub"]
    assert claims["client_id"] == CLIENT_ID
    assert claims["scope"] == "api:read"
    assert claims.get("role") == role
    id_token = verify(provider, tokens.json()["id_token"], audience=CLIENT_ID)
    assert id_token["email_verified"] is account["email_verified"]


def test_a_second_sign_in_reuses_the_providers_session(
    provider: Provider, browser: httpx.Client
) -> None:
    for state in ("first", "second"):
        _, challenge = pkce_pair()
        url = provider.authorization_url(state=state, nonce="n", code_challenge=challenge)
        # The second time, "nobody" is never asked for: the session's alice is.
        back = sign_in(browser, url, login="alice" if state == "first" else "nobody")
        assert query(back)["state"] == state
        assert "code" in query(back)


@pytest.mark.parametrize(
    ("resource", "alg"), [(API_RESOURCE, "RS256"), (API_ES256_RESOURCE, "ES256")]
)
def test_client_credentials_give_a_jwt_access_token_for_the_api(
    provider: Provider, resource: str, alg: str
) -> None:
    response = httpx.post(
        provider.token_endpoint,
        data={"grant_type": "client_credentials", "resource": resource, "scope": "api:write"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )

    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    header = jwt.get_unverified_header(token)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == alg
    claims = verify(provider, token, audience=resource)
    assert claims["aud"] == resource
    assert claims["sub"] == claims["client_id"] == CLIENT_ID
    assert claims["scope"] == "api:write"


def test_an_unknown_resource_is_refused(provider: Provider) -> None:
    response = httpx.post(
        provider.token_endpoint,
        data={"grant_type": "client_credentials", "resource": "https://other.test/"},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_target"


def test_a_client_secret_post_client_authenticates_in_the_body(provider: Provider) -> None:
    # (oidc-provider takes a secret in the body or in Basic for either registered method.)
    data = {"grant_type": "client_credentials", "resource": API_RESOURCE}
    right = httpx.post(
        provider.token_endpoint,
        data=data | {"client_id": POST_CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    wrong = httpx.post(
        provider.token_endpoint,
        data=data | {"client_id": POST_CLIENT_ID, "client_secret": "not-the-secret"},
    )

    assert right.status_code == 200, right.text
    assert jwt.get_unverified_header(right.json()["access_token"])["typ"] == "at+jwt"
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "invalid_client"


def test_the_provider_stops_with_its_block() -> None:
    with running_provider() as running:
        assert httpx.get(running.discovery_url).status_code == 200
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", running.port)) != 0
