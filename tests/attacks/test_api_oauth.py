"""Sign in with an external provider through the service's routes, against a real
OpenID provider, on both backends; and the attacks on it over HTTP (RFC 9700): an answer
brought to another browser or replayed, a provider identity whose unverified address is
an existing account's, the last way to sign in unlinked. Every refusal is the same 400
``oauth-failed``, and an ``auth_failure`` event says why."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pyotp

from bastion.stores import TOTPFactor
from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import STRONG_PASSWORD, add_user, link_in, login, mail_to
from tests.oidc.harness import (
    ALICE,
    BOB,
    CLIENT_ID,
    CLIENT_SECRET,
    Provider,
    sign_in,
)
from tests.smtp import SMTPTestServer
from tests.smtp import mail_settings as smtp_settings


def providers_setting(provider: Provider) -> dict[str, Any]:
    return {
        "corp": {
            "preset": "oidc",
            "issuer": provider.issuer,
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "display_name": "Corp SSO",
        }
    }


async def service(make: AppMaker, provider: Provider, **overrides: Any) -> Any:
    return await make.app(
        oauth_providers=providers_setting(provider),
        public_url="http://testserver",
        cookie_secure=False,
        **overrides,
    )


def at_provider(location: str, login_as: str) -> str:
    """The provider's answer (path and query on this service) once ``login_as`` signs in."""
    with httpx.Client() as browser:
        back = urlsplit(sign_in(browser, location, login=login_as))
    return f"{back.path}?{back.query}"


async def signed_in(client: httpx.AsyncClient, login_as: str, **headers: str) -> httpx.Response:
    start = await client.get(
        "/auth/oauth/corp/authorize", params={"next": "/tasks"}, headers=headers
    )
    assert start.status_code == 302, start.text
    return await client.get(at_provider(start.headers["location"], login_as), headers=headers)


async def test_a_sign_in_with_the_provider_opens_a_session(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)

    listed = await client.get("/auth/oauth/providers")
    schema = (await client.get("/openapi.json")).json()
    answer = await signed_in(client, "alice")

    assert listed.json() == [{"name": "corp", "display_name": "Corp SSO"}]
    authorize = schema["paths"]["/auth/oauth/{provider}/authorize"]["get"]
    assert authorize["parameters"][0]["schema"]["enum"] == ["corp"]  # the docs list them
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    me = await client.get(
        "/users/me", headers={"Authorization": f"Bearer {answer.json()['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["email"] == ALICE["email"]
    assert "bastion-oauth=" in answer.headers["set-cookie"]  # the sign-in's cookie goes
    assert "max-age=0" in answer.headers["set-cookie"].lower()


async def test_a_browsers_sign_in_ends_in_a_cookie_session(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)

    answer = await signed_in(client, "alice", **{"Sec-Fetch-Mode": "navigate"})

    assert answer.status_code == 303
    assert answer.headers["location"] == "/tasks"
    assert "access_token" not in answer.text  # never in a URL or a body the page shows
    me = await client.get("/users/me")  # the session cookies
    assert me.status_code == 200
    assert me.json()["email"] == ALICE["email"]


async def test_the_answer_in_another_browser_or_twice_is_refused(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    victim, attacker = await make.client(app), await make.client(app, ip="198.51.100.9")
    start = await victim.get("/auth/oauth/corp/authorize")
    answer = at_provider(start.headers["location"], "alice")

    with capture_events() as events:
        elsewhere = await attacker.get(answer)  # no sign-in cookie of it
        first = await victim.get(answer)
        again = await victim.get(answer)  # replayed (the cookie is gone: set it back)
        victim.cookies.set("bastion-oauth", start.cookies["bastion-oauth"])
        replayed = await victim.get(answer)

    assert first.status_code == 200
    for refused in (elsewhere, again, replayed):
        assert refused.status_code == 400
        assert refused.json()["type"] == "/problems/oauth-failed"
        assert refused.json()["detail"] == "Sign-in with the provider failed"  # no reason
    reasons = [e.details for e in events if e.event_type == "auth_failure"]
    assert any("no sign-in cookie" in reason for reason in reasons)
    assert any("state replayed" in reason for reason in reasons)


async def test_the_providers_refusal_and_a_made_up_answer_are_refused(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    start = await client.get("/auth/oauth/corp/authorize")
    state = dict(httpx.URL(start.headers["location"]).params)["state"]

    denied = await client.get(
        "/auth/oauth/corp/callback", params={"state": state, "error": "access_denied"}
    )
    twice = await client.get(f"/auth/oauth/corp/callback?state={state}&state={state}&code=x")
    unknown = await client.get("/auth/oauth/nobody/authorize")

    assert denied.status_code == twice.status_code == 400
    assert unknown.status_code == 404


async def test_an_unverified_provider_address_of_an_account_links_nothing(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    await add_user(app, BOB["email"])  # a local account; bob's provider did not verify it

    answer = await signed_in(client, "bob")

    assert answer.status_code == 400
    assert answer.json()["type"] == "/problems/oauth-failed"
    local = await login(client, BOB["email"])  # the account is the owner's still
    links = await client.delete(
        "/auth/oauth/corp", headers={"Authorization": f"Bearer {local['access_token']}"}
    )
    assert links.status_code == 404  # nothing was linked to it


async def test_the_last_way_to_sign_in_is_not_unlinked(make: AppMaker, provider: Provider) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    pair = (await signed_in(client, "alice")).json()
    auth = {"Authorization": f"Bearer {pair['access_token']}"}

    unlinked = await client.delete("/auth/oauth/corp", headers=auth)

    assert unlinked.status_code == 409


async def test_the_sign_in_cookie_is_host_bound_and_short_lived(
    make: AppMaker, provider: Provider
) -> None:
    app = await make.app(
        oauth_providers=providers_setting(provider), public_url="http://testserver"
    )
    client = await make.client(app)

    start = await client.get("/auth/oauth/corp/authorize")

    cookie = start.headers["set-cookie"].lower()
    assert cookie.startswith("__host-bastion-oauth=")
    for part in ("secure", "httponly", "samesite=lax", "path=/", "max-age=600"):
        assert part in cookie


async def test_a_signed_in_owner_links_an_identity_and_signs_in_with_it(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    owner = await add_user(app, "owner@example.com")
    local = await login(client, "owner@example.com")
    auth = {"Authorization": f"Bearer {local['access_token']}"}

    start = await client.post("/auth/oauth/corp/link", headers=auth)
    linked = await client.get(at_provider(start.headers["location"], "alice"))
    anonymous = await make.client(app, ip="198.51.100.20")
    answer = await signed_in(anonymous, "alice")

    assert start.status_code == 302
    assert linked.status_code == 204
    assert answer.status_code == 200
    me = await anonymous.get(
        "/users/me", headers={"Authorization": f"Bearer {answer.json()['access_token']}"}
    )
    assert me.json()["id"] == str(owner.id)  # the owner's account, not a new one
    assert (await client.delete("/auth/oauth/corp", headers=auth)).status_code == 204
    assert (await anonymous.post("/auth/oauth/corp/link")).status_code == 401


async def test_an_account_a_provider_created_has_no_password_until_a_reset(
    make: AppMaker, provider: Provider, smtp: SMTPTestServer
) -> None:
    app = await service(make, provider, **smtp_settings(smtp))
    client = await make.client(app)
    assert (await signed_in(client, "alice")).status_code == 200
    email = ALICE["email"]

    guessed = [
        await client.post("/auth/login", json={"email": email, "password": password})
        for password in ("", "a long passphrase of mine", STRONG_PASSWORD)
    ]
    await client.post("/auth/password/forgot", json={"email": email})
    await app.state.security.drain()
    token = link_in(mail_to(smtp.messages, email)[-1], "/auth/password/reset")
    reset = await client.post(
        "/auth/password/reset", json={"token": token, "new_password": STRONG_PASSWORD}
    )

    assert [r.status_code for r in guessed] == [422, 401, 401]
    assert reset.status_code == 204
    assert (await login(client, email))["access_token"]


async def test_a_link_started_with_a_token_ends_with_its_session(
    make: AppMaker, provider: Provider
) -> None:
    # A stolen token starts a link; the owner logs out before the thief finishes it.
    app = await service(make, provider)
    thief = await make.client(app)
    owner = await add_user(app, "owner@example.com")
    stolen = await login(thief, "owner@example.com")
    auth = {"Authorization": f"Bearer {stolen['access_token']}"}
    start = await thief.post("/auth/oauth/corp/link", headers=auth)
    logout = await thief.post(
        "/auth/logout", json={"refresh_token": stolen["refresh_token"]}, headers=auth
    )

    finished = await thief.get(at_provider(start.headers["location"], "alice"))

    assert logout.status_code == 204
    assert finished.status_code == 400
    assert finished.json()["type"] == "/problems/oauth-failed"
    anonymous = await make.client(app, ip="198.51.100.30")
    pair = (await signed_in(anonymous, "alice")).json()
    me = await anonymous.get(
        "/users/me", headers={"Authorization": f"Bearer {pair['access_token']}"}
    )
    assert me.json()["id"] != str(owner.id)  # the identity was not linked to the owner


async def test_a_provider_sign_in_asks_for_the_second_factor_of_an_account_with_one(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    first = (await signed_in(client, "alice")).json()
    auth = {"Authorization": f"Bearer {first['access_token']}"}
    secret = (await client.post("/auth/mfa/totp/setup", headers=auth)).json()["secret"]
    totp = pyotp.TOTP(secret)
    assert (
        await client.post("/auth/mfa/totp/confirm", json={"code": totp.now()}, headers=auth)
    ).status_code == 200

    again = await signed_in(client, "alice")
    done = await client.post(
        "/auth/mfa/verify",
        json={"mfa_token": again.json()["mfa_token"], "code": totp.at(time.time() + 30)},
    )

    assert again.status_code == 200
    assert again.json()["mfa_required"] is True
    assert "access_token" not in again.json()
    assert done.status_code == 200, done.text
    claims = jwt.decode(done.json()["access_token"], options={"verify_signature": False})
    assert claims["amr"] == ["ext:corp", "otp"]


async def test_a_provider_identity_is_not_linked_by_address_to_an_account_with_a_factor(
    make: AppMaker, provider: Provider
) -> None:
    app = await service(make, provider)
    client = await make.client(app)
    account = await add_user(app, ALICE["email"])  # verified, as the provider's address
    stores = app.state.security.stores
    now = datetime.now(UTC)
    await stores.mfa.begin(TOTPFactor(account.id, "v1.sealed", now))
    assert await stores.mfa.confirm(account.id, secret="v1.sealed", now=now, recovery_digests=[])

    with capture_events() as events:
        answer = await signed_in(client, "alice")

    assert answer.status_code == 400
    assert answer.json()["type"] == "/problems/oauth-failed"
    assert await stores.links.of_user(account.id) == []
    assert "account_linked" not in [e.event_type for e in events]
    assert "max-age=0" in answer.headers["set-cookie"].lower()  # the sign-in's cookie goes
