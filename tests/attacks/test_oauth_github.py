"""Signing in with GitHub (OAuth 2, not OpenID Connect) against a local stand-in that
speaks its endpoints' shapes: the token endpoint's JSON answer (200 with an ``error``
member when it refuses), ``/user`` and ``/user/emails``. Attack: an address GitHub has
not verified, or verified but not the primary one, is not taken as the user's verified
email; a refused code or a user API that names nobody fails the sign-in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from bastion.clock import FrozenClock
from bastion.errors import OAuthFailedError
from bastion.oidc import OAuthProvider, OAuthSignIn, SignInBinding
from bastion.throttle._attempts import MemoryAttemptStore
from tests.oidc.json_server import Answer, JSONServer

SECRET = "a-github-client-secret-0123456789abcdef"


@pytest.fixture
async def github() -> AsyncIterator[JSONServer]:
    async with JSONServer() as server:
        server.answers["/login/oauth/access_token"] = Answer(
            {"access_token": "gho_x", "token_type": "bearer", "scope": "read:user,user:email"}
        )
        server.answers["/user"] = Answer({"id": 583231, "login": "octocat", "name": None})
        server.answers["/user/emails"] = Answer(
            [
                {"email": "old@example.com", "primary": False, "verified": True},
                {"email": "octo@example.com", "primary": True, "verified": True},
            ]
        )
        yield server


@pytest.fixture
async def oauth(github: JSONServer) -> AsyncIterator[OAuthSignIn]:
    clock = FrozenClock(datetime.now(UTC))
    signin = OAuthSignIn(
        {"github": OAuthProvider(preset="github", client_id="Iv1.abc", client_secret=SECRET)},
        redirect_base="http://testserver",
        binding=SignInBinding(b"g" * 32, clock=clock, claim=MemoryAttemptStore().claim),
        clock=clock,
        leeway=timedelta(seconds=30),
        github_endpoints={
            "authorization_endpoint": f"{github.url}/login/oauth/authorize",
            "token_endpoint": f"{github.url}/login/oauth/access_token",
            "user": f"{github.url}/user",
            "emails": f"{github.url}/user/emails",
        },
    )
    yield signin
    await signin.aclose()


async def answer(oauth: OAuthSignIn) -> tuple[dict[str, str], str, dict[str, str]]:
    url, cookie = await oauth.authorize("github", None)
    sent = dict(parse_qsl(urlsplit(url).query))
    return {"state": sent["state"], "code": "a-code"}, cookie, sent


async def test_github_names_the_user_and_the_primary_verified_address(
    oauth: OAuthSignIn, github: JSONServer
) -> None:
    query, cookie, sent = await answer(oauth)

    identity, _ = await oauth.callback("github", query, cookie)

    assert sent["code_challenge_method"] == "S256"
    assert sent["scope"] == "read:user user:email"
    assert "nonce" not in sent  # not OpenID Connect
    assert (identity.subject, identity.name) == ("583231", "octocat")
    assert (identity.email, identity.email_verified) == ("octo@example.com", True)
    assert github.requests == ["/login/oauth/access_token", "/user", "/user/emails"]


@pytest.mark.parametrize(
    "emails",
    [
        [{"email": "octo@example.com", "primary": True, "verified": False}],
        [
            {"email": "octo@example.com", "primary": True, "verified": False},
            {"email": "other@example.com", "primary": False, "verified": True},
        ],
        [{"email": "octo@example.com", "primary": "true", "verified": "true"}],
        [],
        {"message": "Requires authentication"},
    ],
)
async def test_an_unverified_or_secondary_address_is_no_verified_email(
    oauth: OAuthSignIn, github: JSONServer, emails: Any
) -> None:
    github.answers["/user/emails"] = Answer(emails)
    query, cookie, _ = await answer(oauth)

    identity, _ = await oauth.callback("github", query, cookie)

    assert (identity.email, identity.email_verified) == (None, False)


async def test_a_refused_code_fails_the_sign_in(oauth: OAuthSignIn, github: JSONServer) -> None:
    # GitHub answers a refused code with 200 and an error member.
    github.answers["/login/oauth/access_token"] = Answer(
        {"error": "bad_verification_code", "error_description": "The code is incorrect."}
    )
    query, cookie, _ = await answer(oauth)

    with pytest.raises(OAuthFailedError, match=r"code was refused \(bad_verification_code\)"):
        await oauth.callback("github", query, cookie)


@pytest.mark.parametrize("user", [{"login": "octocat"}, {"id": "583231"}, {"id": True}])
async def test_a_user_api_that_names_nobody_fails_the_sign_in(
    oauth: OAuthSignIn, github: JSONServer, user: dict[str, Any]
) -> None:
    github.answers["/user"] = Answer(user)
    query, cookie, _ = await answer(oauth)

    with pytest.raises(OAuthFailedError, match="GitHub named no user"):
        await oauth.callback("github", query, cookie)


@pytest.mark.parametrize(
    "broken",
    [
        Answer(None, raw=b"<html>not JSON</html>"),
        Answer(["a", "list"]),
        Answer({"access_token": "x"}, status=502),
        Answer({"access_token": "x"}, delay=2.0),  # past the exchange's time limit
        Answer({"token_type": "bearer"}),  # no access token
    ],
)
async def test_a_broken_or_slow_token_endpoint_fails_the_sign_in(
    github: JSONServer, broken: Answer
) -> None:
    github.answers["/login/oauth/access_token"] = broken
    clock = FrozenClock(datetime.now(UTC))
    oauth = OAuthSignIn(
        {"github": OAuthProvider(preset="github", client_id="Iv1.abc", client_secret=SECRET)},
        redirect_base="http://testserver",
        binding=SignInBinding(b"g" * 32, clock=clock, claim=MemoryAttemptStore().claim),
        clock=clock,
        leeway=timedelta(seconds=30),
        timeout=0.5,
        github_endpoints={
            "authorization_endpoint": f"{github.url}/login/oauth/authorize",
            "token_endpoint": f"{github.url}/login/oauth/access_token",
            "user": f"{github.url}/user",
            "emails": f"{github.url}/user/emails",
        },
    )
    try:
        query, cookie, _ = await answer(oauth)
        with pytest.raises(OAuthFailedError, match=r"code exchange failed|no access token"):
            await oauth.callback("github", query, cookie)
    finally:
        await oauth.aclose()
