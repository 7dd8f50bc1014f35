"""The account flows end to end, through a real SMTP server on loopback.

Register → emailed link → verify → log in; forgotten password → emailed link → reset;
password change; one's own sessions; the unlock link after failed logins. Every email
is read from the SMTP server it was delivered to.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bastion.errors import InvalidTokenError
from bastion.events import RequestContext
from bastion.stores import AccountChange
from bastion.testing import capture_events
from tests.conftest import AppMaker
from tests.helpers import (
    STRONG_PASSWORD,
    add_user,
    link_in,
    login,
    mail_to,
    register,
    without_request_id,
)
from tests.smtp import SMTPTestServer
from tests.smtp import mail_settings as smtp_settings

NEW_PASSWORD = "a different long passphrase 2026"


def mail_settings(smtp: SMTPTestServer, **overrides: Any) -> dict[str, Any]:
    return smtp_settings(smtp, public_url="https://tasks.example", **overrides)


@pytest.fixture
async def mail_app(make: AppMaker, smtp: SMTPTestServer) -> Any:
    return await make.app(**mail_settings(smtp))


@pytest.fixture
async def mail_client(make: AppMaker, mail_app: Any) -> httpx.AsyncClient:
    return await make.client(mail_app)


async def delivered(app: Any, smtp: SMTPTestServer, address: str) -> list[Any]:
    await app.state.security.drain()
    return mail_to(smtp.messages, address)


async def emailed_token(app: Any, smtp: SMTPTestServer, address: str, path: str) -> str:
    messages = await delivered(app, smtp, address)
    assert messages, f"no email to {address}"
    return link_in(messages[-1], path)


def bearer(pair: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {pair['access_token']}"}


async def test_newcomer_registers_follows_the_link_and_logs_in(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp, require_verified_email=True))
    client = await make.client(app)
    assert (await register(client, "newcomer@example.com")).status_code == 202
    before = await client.post(
        "/auth/login", json={"email": "newcomer@example.com", "password": STRONG_PASSWORD}
    )
    token = await emailed_token(app, smtp, "newcomer@example.com", "/auth/email/verify")

    verified = await client.post("/auth/email/verify", json={"token": token})
    pair = await login(client, "newcomer@example.com")
    me = await client.get("/users/me", headers=bearer(pair))

    assert before.status_code == 401
    assert verified.status_code == 204
    assert me.json()["email_verified"] is True


async def test_unverified_login_looks_like_a_wrong_password(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp, require_verified_email=True))
    client = await make.client(app)
    await register(client, "newcomer@example.com")

    right = await client.post(
        "/auth/login", json={"email": "newcomer@example.com", "password": STRONG_PASSWORD}
    )
    wrong = await client.post(
        "/auth/login", json={"email": "newcomer@example.com", "password": NEW_PASSWORD}
    )

    assert right.status_code == wrong.status_code == 401
    assert without_request_id(right.json()) == without_request_id(wrong.json())
    assert set(right.headers) == set(wrong.headers)


async def test_verification_email_links_to_the_public_url(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await register(mail_client, "newcomer@example.com")

    [message] = await delivered(mail_app, smtp, "newcomer@example.com")

    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "https://tasks.example/auth/email/verify#token=" in text
    assert message["From"] == "Bastion <no-reply@localhost>"


async def test_registering_a_taken_address_emails_a_notice_not_a_link(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await add_user(mail_app, "alice@example.com")

    response = await register(mail_client, "alice@example.com", NEW_PASSWORD)
    [message] = await delivered(mail_app, smtp, "alice@example.com")

    assert response.status_code == 202
    assert "tried to register" in message["Subject"]
    assert "#token=" not in message.get_body(preferencelist=("plain",)).get_content()


async def test_verifying_the_address_activates_shares_made_before_it_registered(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    owner = await add_user(mail_app, "owner@example.com")
    assert owner
    pair = await login(mail_client, "owner@example.com")
    task = await mail_client.post("/tasks", json={"title": "plan"}, headers=bearer(pair))
    task_id = task.json()["id"]
    shared = await mail_client.post(
        f"/tasks/{task_id}/shares",
        json={"email": "later@example.com", "permission": "read"},
        headers=bearer(pair),
    )
    assert shared.status_code == 201
    await register(mail_client, "later@example.com")
    later = await login(mail_client, "later@example.com")
    pending = await mail_client.get(f"/tasks/{task_id}", headers=bearer(later))
    token = await emailed_token(mail_app, smtp, "later@example.com", "/auth/email/verify")

    await mail_client.post("/auth/email/verify", json={"token": token})
    active = await mail_client.get(f"/tasks/{task_id}", headers=bearer(later))

    assert pending.status_code == 404
    assert active.status_code == 200


async def test_a_share_with_an_unverified_account_waits_for_verification(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    # Mallory registers Bob's address before anyone shares with it.
    await register(mail_client, "bob@example.com")
    squatter = await login(mail_client, "bob@example.com")
    await add_user(mail_app, "owner@example.com")
    owner = await login(mail_client, "owner@example.com")
    task = await mail_client.post("/tasks", json={"title": "plan"}, headers=bearer(owner))
    task_id = task.json()["id"]

    shared = await mail_client.post(
        f"/tasks/{task_id}/shares",
        json={"email": "bob@example.com", "permission": "read"},
        headers=bearer(owner),
    )
    seen = await mail_client.get(f"/tasks/{task_id}", headers=bearer(squatter))

    assert shared.status_code == 201
    assert seen.status_code == 404


async def test_a_password_reset_activates_shares_waiting_for_the_address(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await add_user(mail_app, "owner@example.com")
    owner = await login(mail_client, "owner@example.com")
    task = await mail_client.post("/tasks", json={"title": "plan"}, headers=bearer(owner))
    task_id = task.json()["id"]
    await mail_client.post(
        f"/tasks/{task_id}/shares",
        json={"email": "later@example.com", "permission": "read"},
        headers=bearer(owner),
    )
    await register(mail_client, "later@example.com")
    await mail_client.post("/auth/password/forgot", json={"email": "later@example.com"})
    token = await emailed_token(mail_app, smtp, "later@example.com", "/auth/password/reset")

    await mail_client.post(
        "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    later = await login(mail_client, "later@example.com", NEW_PASSWORD)
    seen = await mail_client.get(f"/tasks/{task_id}", headers=bearer(later))

    assert seen.status_code == 200


async def test_a_new_verification_link_can_be_asked_for(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await register(mail_client, "newcomer@example.com")
    await mail_app.state.security.drain()

    response = await mail_client.post(
        "/auth/email/verify/request", json={"email": "newcomer@example.com"}
    )
    messages = await delivered(mail_app, smtp, "newcomer@example.com")
    verified = await mail_client.post(
        "/auth/email/verify", json={"token": link_in(messages[-1], "/auth/email/verify")}
    )

    assert response.status_code == 202
    assert len(messages) == 2
    assert verified.status_code == 204


async def test_forgotten_password_is_reset_with_the_emailed_link(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await add_user(mail_app, "alice@example.com")

    forgot = await mail_client.post("/auth/password/forgot", json={"email": "alice@example.com"})
    token = await emailed_token(mail_app, smtp, "alice@example.com", "/auth/password/reset")
    reset = await mail_client.post(
        "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    old = await mail_client.post(
        "/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD}
    )
    new = await mail_client.post(
        "/auth/login", json={"email": "alice@example.com", "password": NEW_PASSWORD}
    )

    assert forgot.status_code == 202
    assert reset.status_code == 204
    assert old.status_code == 401
    assert new.status_code == 200


async def test_password_reset_revokes_every_session_and_access_token(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await add_user(mail_app, "alice@example.com")
    laptop = await login(mail_client, "alice@example.com")
    phone = await login(mail_client, "alice@example.com")
    await mail_client.post("/auth/password/forgot", json={"email": "alice@example.com"})
    token = await emailed_token(mail_app, smtp, "alice@example.com", "/auth/password/reset")

    await mail_client.post(
        "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )

    for pair in (laptop, phone):
        me = await mail_client.get("/users/me", headers=bearer(pair))
        refreshed = await mail_client.post(
            "/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        )
        assert me.status_code == 401
        assert refreshed.status_code == 401


async def test_password_reset_tells_the_owner_by_email(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await add_user(mail_app, "alice@example.com")
    await mail_client.post("/auth/password/forgot", json={"email": "alice@example.com"})
    token = await emailed_token(mail_app, smtp, "alice@example.com", "/auth/password/reset")

    await mail_client.post(
        "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    messages = await delivered(mail_app, smtp, "alice@example.com")

    assert "password was changed" in messages[-1]["Subject"]


async def test_password_reset_ends_a_lock_after_failed_logins(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    alice = await add_user(mail_app, "alice@example.com")
    await mail_app.state.security.accounts.admin.apply(
        alice.id, AccountChange(locked=True, bump_token_version=False), lambda b, a: []
    )
    await mail_client.post("/auth/password/forgot", json={"email": "alice@example.com"})
    token = await emailed_token(mail_app, smtp, "alice@example.com", "/auth/password/reset")

    await mail_client.post(
        "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    response = await mail_client.post(
        "/auth/login", json={"email": "alice@example.com", "password": NEW_PASSWORD}
    )

    assert response.status_code == 200


async def test_refused_new_password_keeps_the_reset_link_usable(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await add_user(mail_app, "alice@example.com")
    await mail_client.post("/auth/password/forgot", json={"email": "alice@example.com"})
    token = await emailed_token(mail_app, smtp, "alice@example.com", "/auth/password/reset")

    weak = await mail_client.post(
        "/auth/password/reset", json={"token": token, "new_password": "password1234567"}
    )
    strong = await mail_client.post(
        "/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )

    assert weak.status_code == 422
    assert weak.json()["errors"][0]["loc"] == ["body", "new_password"]
    assert "password1234567" not in weak.text
    assert strong.status_code == 204


async def test_forgot_password_for_an_unknown_address_sends_nothing(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    response = await mail_client.post("/auth/password/forgot", json={"email": "nobody@example.com"})
    await mail_app.state.security.drain()

    assert response.status_code == 202
    assert smtp.messages == []


async def test_password_change_needs_the_current_password(
    client: httpx.AsyncClient, app: Any
) -> None:
    await add_user(app, "alice@example.com")
    pair = await login(client, "alice@example.com")

    with capture_events() as events:
        response = await client.post(
            "/auth/password/change",
            json={"current_password": NEW_PASSWORD, "new_password": NEW_PASSWORD + "x"},
            headers=bearer(pair),
        )
    still = await client.post(
        "/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD}
    )

    assert response.status_code == 403
    assert response.json()["type"] == "/problems/wrong-password"
    assert "password_change_failed" in [e.event_type for e in events]
    assert still.status_code == 200


async def test_password_change_keeps_this_session_and_ends_the_others(
    client: httpx.AsyncClient, app: Any
) -> None:
    await add_user(app, "alice@example.com")
    this = await login(client, "alice@example.com")
    other = await login(client, "alice@example.com")

    response = await client.post(
        "/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(this),
    )
    kept = await client.post("/auth/refresh", json={"refresh_token": this["refresh_token"]})
    ended = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    old_access = await client.get("/users/me", headers=bearer(other))
    new_login = await client.post(
        "/auth/login", json={"email": "alice@example.com", "password": NEW_PASSWORD}
    )

    assert response.status_code == 204
    assert kept.status_code == 200
    assert ended.status_code == 401
    assert old_access.status_code == 401
    assert new_login.status_code == 200


async def test_password_change_tells_the_owner_by_email(
    mail_app: Any, mail_client: httpx.AsyncClient, smtp: SMTPTestServer
) -> None:
    await add_user(mail_app, "alice@example.com")
    pair = await login(mail_client, "alice@example.com")

    await mail_client.post(
        "/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(pair),
    )
    [message] = await delivered(mail_app, smtp, "alice@example.com")

    text = message.get_body(preferencelist=("plain",)).get_content()
    assert "password was changed" in message["Subject"]
    assert NEW_PASSWORD not in text


async def test_a_password_change_does_not_land_after_a_revocation_during_it(
    client: httpx.AsyncClient, app: Any
) -> None:
    await add_user(app, "alice@example.com")
    pair = await login(client, "alice@example.com")
    security = app.state.security
    principal = await security.accounts.authenticator.authenticate(pair["access_token"])
    await client.post("/auth/logout-all", headers=bearer(pair))  # e.g. a reset meanwhile

    with pytest.raises(InvalidTokenError):
        await security.lifecycle.change_password(
            principal, STRONG_PASSWORD, NEW_PASSWORD, context=RequestContext()
        )
    still = await client.post(
        "/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD}
    )

    assert still.status_code == 200


async def test_password_change_to_the_same_password_is_refused(
    client: httpx.AsyncClient, app: Any
) -> None:
    await add_user(app, "alice@example.com")
    pair = await login(client, "alice@example.com")

    response = await client.post(
        "/auth/password/change",
        json={"current_password": STRONG_PASSWORD, "new_password": STRONG_PASSWORD},
        headers=bearer(pair),
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "new_password"]


async def test_sessions_list_the_callers_live_sessions(client: httpx.AsyncClient, app: Any) -> None:
    await add_user(app, "alice@example.com")
    await client.post(
        "/auth/login",
        json={"email": "alice@example.com", "password": STRONG_PASSWORD},
        headers={"User-Agent": "phone-app/1.0"},
    )
    this = await login(client, "alice@example.com")

    response = await client.get("/auth/sessions", headers=bearer(this))

    sessions = response.json()
    assert response.status_code == 200
    assert len(sessions) == 2
    assert [s["current"] for s in sessions].count(True) == 1
    assert {"phone-app/1.0"} <= {s["user_agent"] for s in sessions}
    assert set(sessions[0]) == {
        "id",
        "created_at",
        "last_used_at",
        "ip_address",
        "user_agent",
        "current",
    }
    assert sessions[0]["ip_address"] == "203.0.113.7"


async def test_ending_a_session_revokes_its_refresh_and_access_tokens(
    client: httpx.AsyncClient, app: Any
) -> None:
    await add_user(app, "alice@example.com")
    other = await login(client, "alice@example.com")
    this = await login(client, "alice@example.com")
    listed = (await client.get("/auth/sessions", headers=bearer(this))).json()
    [other_id] = [s["id"] for s in listed if not s["current"]]

    response = await client.delete(f"/auth/sessions/{other_id}", headers=bearer(this))
    refreshed = await client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    other_access = await client.get("/users/me", headers=bearer(other))
    this_access = await client.get("/users/me", headers=bearer(this))
    after = (await client.get("/auth/sessions", headers=bearer(this))).json()

    assert response.status_code == 204
    assert refreshed.status_code == 401
    assert other_access.status_code == 401
    assert this_access.status_code == 200
    assert other_id not in [s["id"] for s in after]


async def test_another_users_session_cannot_be_ended(client: httpx.AsyncClient, app: Any) -> None:
    await add_user(app, "alice@example.com")
    await add_user(app, "mallory@example.com")
    alice = await login(client, "alice@example.com")
    mallory = await login(client, "mallory@example.com")
    [alice_session] = (await client.get("/auth/sessions", headers=bearer(alice))).json()

    response = await client.delete(f"/auth/sessions/{alice_session['id']}", headers=bearer(mallory))
    still = await client.get("/users/me", headers=bearer(alice))

    assert response.status_code == 404
    assert still.status_code == 200


async def test_locked_account_is_unlocked_with_the_emailed_link(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(
        **mail_settings(smtp),
        login_defence_enabled=True,
        login_lock_after=3,
        login_delay_after=10,
        login_challenge_after=10,
    )
    client = await make.client(app)
    await add_user(app, "alice@example.com")
    for _ in range(3):
        await client.post(
            "/auth/login", json={"email": "alice@example.com", "password": NEW_PASSWORD}
        )
    locked = await client.post(
        "/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD}
    )
    # The right password on the locked account also emailed a sign-in link.
    messages = await delivered(app, smtp, "alice@example.com")
    [unlock_mail] = [m for m in messages if m["Subject"].endswith("account was locked")]
    token = link_in(unlock_mail, "/auth/unlock")

    unlocked = await client.post("/auth/unlock", json={"token": token})
    again = await client.post("/auth/unlock", json={"token": token})
    response = await client.post(
        "/auth/login", json={"email": "alice@example.com", "password": STRONG_PASSWORD}
    )

    assert locked.status_code == 401
    assert unlocked.status_code == 204
    assert again.status_code == 400
    assert response.status_code == 200


async def test_mail_server_down_still_answers_and_logs_the_failure(
    make: AppMaker, smtp: SMTPTestServer
) -> None:
    app = await make.app(**mail_settings(smtp, smtp_port=1))
    client = await make.client(app)
    await add_user(app, "alice@example.com")

    with capture_events() as events:
        response = await client.post("/auth/password/forgot", json={"email": "alice@example.com"})
        await app.state.security.postman.drain()
        await app.state.security.events.drain()

    assert response.status_code == 202
    failed = [e for e in events if e.event_type == "email_failed"]
    assert failed
    assert "#token=" not in failed[0].details


@pytest.mark.parametrize("path", ["/auth/email/verify", "/auth/password/reset", "/auth/unlock"])
async def test_link_pages_keep_the_token_out_of_requests(
    client: httpx.AsyncClient, path: str
) -> None:
    page = await client.get(path)
    script = await client.get("/auth/link.js")

    assert page.status_code == 200
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert f'data-action="{path}"' in page.text
    assert script.status_code == 200
    assert "location.hash" in script.text
