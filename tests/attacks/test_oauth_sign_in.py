"""Attack: sign in through a real OpenID provider in ways RFC 9700 and OpenID Connect
Core refuse: an answer replayed, a code replayed under another sign-in, the provider's
refusal passed off as consent, a mix-up (another issuer's ``iss``), redirect URIs that
differ from the registered one. The sign-in itself: the browser goes to the provider with
PKCE S256, a nonce and the exact redirect URI, and comes back as the identity the
provider names, with its email only as verified as the provider says."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from bastion.clock import FrozenClock
from bastion.errors import OAuthFailedError
from bastion.oidc import ExternalIdentity, OAuthProvider, OAuthSignIn, SignInBinding
from bastion.throttle._attempts import MemoryAttemptStore
from tests.oidc.harness import (
    ALICE,
    CLIENT_ID,
    CLIENT_SECRET,
    POST_CLIENT_ID,
    Provider,
    ProviderFlowError,
    running_provider,
    sign_in,
)
from tests.tcp_proxy import TCPProxy

BASE = "http://testserver"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(datetime.now(UTC))


def sign_ins(provider: Provider, clock: FrozenClock, **extra: Any) -> OAuthSignIn:
    configs = {
        "corp": OAuthProvider(
            preset="oidc", issuer=provider.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
        ),
        "corp-post": OAuthProvider(
            preset="oidc",
            issuer=provider.issuer,
            client_id=POST_CLIENT_ID,
            client_secret=CLIENT_SECRET,
            token_endpoint_auth_method="client_secret_post",
        ),
    }
    binding = SignInBinding(b"s" * 32, clock=clock, claim=MemoryAttemptStore(clock=clock).claim)
    return OAuthSignIn(
        configs,
        redirect_base=BASE,
        binding=binding,
        clock=clock,
        leeway=timedelta(seconds=30),
        allow_http=True,
        **extra,
    )


@pytest.fixture
async def oauth(provider: Provider, clock: FrozenClock) -> AsyncIterator[OAuthSignIn]:
    signin = sign_ins(provider, clock)
    await signin.start()
    yield signin
    await signin.aclose()


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def provider_answer(url: str, login: str) -> dict[str, str]:
    with httpx.Client() as browser:
        return query(sign_in(browser, url, login=login))


async def signed_in(oauth: OAuthSignIn, login: str, name: str = "corp") -> ExternalIdentity:
    url, cookie = await oauth.authorize(name, "/tasks")
    identity, request = await oauth.callback(name, provider_answer(url, login), cookie)
    assert request.next == "/tasks"
    return identity


async def test_a_sign_in_names_the_providers_identity(oauth: OAuthSignIn) -> None:
    url, _ = await oauth.authorize("corp", None)
    sent = query(url)

    alice = await signed_in(oauth, "alice")
    bob = await signed_in(oauth, "bob", name="corp-post")

    assert sent["code_challenge_method"] == "S256"
    assert sent["redirect_uri"] == f"{BASE}/auth/oauth/corp/callback"
    assert {"state", "nonce", "code_challenge"} <= set(sent)
    assert (alice.subject, alice.email, alice.email_verified) == ("alice", ALICE["email"], True)
    assert alice.amr == ("ext:corp",)  # not the provider's own methods
    assert (bob.subject, bob.email_verified) == ("bob", False)  # the provider did not verify it


async def test_an_answer_is_accepted_once(oauth: OAuthSignIn) -> None:
    url, cookie = await oauth.authorize("corp", None)
    answer = provider_answer(url, "alice")
    await oauth.callback("corp", answer, cookie)

    with pytest.raises(OAuthFailedError, match="state replayed"):
        await oauth.callback("corp", answer, cookie)


async def test_a_code_replayed_under_another_sign_in_is_refused(oauth: OAuthSignIn) -> None:
    url, cookie = await oauth.authorize("corp", None)
    used = provider_answer(url, "alice")
    await oauth.callback("corp", used, cookie)
    # The attacker starts a sign-in of their own and brings the victim's used code to it.
    own_url, own_cookie = await oauth.authorize("corp", None)
    own_state = query(own_url)["state"]

    with pytest.raises(OAuthFailedError, match="code was refused"):
        await oauth.callback("corp", used | {"state": own_state}, own_cookie)


async def test_the_providers_refusal_is_a_failed_sign_in(oauth: OAuthSignIn) -> None:
    url, cookie = await oauth.authorize("corp", None)
    state = query(url)["state"]

    for error in ("access_denied", "<script>"):
        with pytest.raises(OAuthFailedError, match="the provider answered"):
            await oauth.callback("corp", {"state": state, "error": error}, cookie)
        url, cookie = await oauth.authorize("corp", None)
        state = query(url)["state"]


async def test_another_issuers_answer_is_refused(oauth: OAuthSignIn, provider: Provider) -> None:
    url, cookie = await oauth.authorize("corp", None)
    answer = provider_answer(url, "alice")
    assert answer.get("iss") == provider.issuer  # RFC 9207: the provider names itself

    with pytest.raises(OAuthFailedError, match="iss is another provider's"):
        await oauth.callback("corp", answer | {"iss": "https://evil.example"}, cookie)
    url, cookie = await oauth.authorize("corp", None)
    answer = provider_answer(url, "alice")
    answer.pop("iss")
    with pytest.raises(OAuthFailedError, match="iss missing"):
        await oauth.callback("corp", answer, cookie)


@pytest.mark.parametrize(
    "variant",
    [
        f"{BASE}/auth/oauth/corp/callback/",
        f"{BASE}/auth/oauth/corp/callback?x=1",
        f"{BASE}/auth/oauth/CORP/callback",
        f"{BASE}/auth/oauth/corp/other",
        "http://evil.example/auth/oauth/corp/callback",
        "https://testserver/auth/oauth/corp/callback",
        "http://testserver.evil.example/auth/oauth/corp/callback",
    ],
)
async def test_the_provider_answers_no_other_redirect_uri(oauth: OAuthSignIn, variant: str) -> None:
    url, _ = await oauth.authorize("corp", None)
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query)) | {"redirect_uri": variant}
    tampered = urlunsplit(parts._replace(query=urlencode(params)))

    with httpx.Client() as browser:
        try:
            back = sign_in(browser, tampered, login="alice", redirect_uri=variant)
        except ProviderFlowError:
            return  # an error page: nothing went to the variant
    assert "code" not in query(back), "a code went to an unregistered redirect URI"


async def test_a_provider_down_at_start_is_asked_again_later(clock: FrozenClock) -> None:
    proxy = TCPProxy("127.0.0.1", 1)
    await proxy.start()
    await proxy.cut()
    with running_provider(issuer=f"http://127.0.0.1:{proxy.port}") as provider:
        proxy.point_at("127.0.0.1", provider.port)
        oauth = sign_ins(provider, clock)
        try:
            await oauth.start()  # does not raise
            with pytest.raises(OAuthFailedError, match="metadata cannot be read"):
                await oauth.authorize("corp", None)
            await proxy.restore()
            clock.advance(seconds=61)
            url, _ = await oauth.authorize("corp", None)
            assert url.startswith(f"http://127.0.0.1:{proxy.port}/auth?")
        finally:
            await oauth.aclose()
            await proxy.cut()
