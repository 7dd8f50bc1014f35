"""No password or token ever reaches stdout, stderr, a log record, an event or an error body.

ASVS 16.2.5 and 16.5.1, OWASP Logging Cheat Sheet ("Data to exclude"); API.md: no event
ever contains a password or a token, and a 422 never echoes a submitted password.
One scenario drives every credential-handling route with distinctive secrets; each
place where text can come out is then searched for them.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from bastion.events import event_to_dict
from bastion.stores import EventQuery
from bastion.testing import capture_events

EMAIL = "keeper@example.com"
PASSWORD = "Umbrella-Quasar-Tangerine-4817-Fjord"
WRONG_PASSWORD = "Gravel-Nimbus-Pelican-2290-Harbor-X"
WEAK_PASSWORDS = {
    "too-short": "Wk-9zQ-short",
    "guessable": "zzzzzzzzzzzzzzzzzzzzzzzzzzzz",
    "too-long": "Overlong-Secret-Vx81-" + "y" * 4100,
}
SOURCES = ["stdout", "stderr", "log records", "captured events", "stored events", "error responses"]


@dataclass
class Transcript:
    """The secrets a scenario handled, and every text that came out of the service."""

    secrets: dict[str, str] = field(default_factory=dict)
    sources: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SOURCES})

    def keep(self, name: str, value: str) -> None:
        self.secrets[name] = value
        if len(value) > 20:
            self.secrets[f"{name}[:20]"] = value[:20]

    def keep_pair(self, name: str, pair: dict[str, Any]) -> None:
        self.keep(f"{name} access token", pair["access_token"])
        self.keep(f"{name} refresh token", pair["refresh_token"])
        self.keep(f"{name} Authorization header", f"Bearer {pair['access_token']}")

    def leaks(self, source: str) -> list[str]:
        text = "\n".join(self.sources[source])
        return [name for name, secret in self.secrets.items() if secret in text]


def _forged(access_token: str) -> str:
    header, payload, signature = access_token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["role"] = "admin"
    raw = json.dumps(claims, separators=(",", ":")).encode()
    return f"{header}.{base64.urlsafe_b64encode(raw).rstrip(b'=').decode()}.{signature}"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _log_text(record: logging.LogRecord) -> str:
    formatted = logging.Formatter("%(name)s %(levelname)s %(message)s").format(record)
    return f"{formatted} {record.args!r} {record.__dict__!r}"


async def _scenario(client: httpx.AsyncClient, transcript: Transcript) -> list[httpx.Response]:
    """Every route that handles a password or a token, successes and failures alike."""
    responses: list[httpx.Response] = []

    async def send(method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await client.request(method, url, **kwargs)
        responses.append(response)
        return response

    credentials = {"email": EMAIL, "password": PASSWORD}
    assert (await send("POST", "/auth/register", json=credentials)).status_code == 202
    assert (await send("POST", "/auth/register", json=credentials)).status_code == 202
    first = (await send("POST", "/auth/login", json=credentials)).json()
    transcript.keep_pair("login", first)
    wrong = {"email": EMAIL, "password": WRONG_PASSWORD}
    assert (await send("POST", "/auth/login", json=wrong)).status_code == 401
    form = {"username": EMAIL, "password": PASSWORD}
    second = (await send("POST", "/auth/token", data=form)).json()
    transcript.keep_pair("form", second)
    wrong_form = {"username": EMAIL, "password": WRONG_PASSWORD}
    assert (await send("POST", "/auth/token", data=wrong_form)).status_code == 401

    rotated = await send("POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]})
    third = rotated.json()
    transcript.keep_pair("refreshed", third)
    reuse = await send("POST", "/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert reuse.status_code == 401
    revoked = await send("POST", "/auth/refresh", json={"refresh_token": third["refresh_token"]})
    assert revoked.status_code == 401

    assert (await send("GET", "/users/me", headers=_bearer(second["access_token"]))).is_success
    forged = _forged(second["access_token"])
    transcript.keep("forged token", forged)
    assert (await send("GET", "/users/me", headers=_bearer(forged))).status_code == 401
    logout = await send(
        "POST",
        "/auth/logout",
        headers=_bearer(second["access_token"]),
        json={"refresh_token": second["refresh_token"]},
    )
    assert logout.status_code == 204
    after = await send("GET", "/users/me", headers=_bearer(second["access_token"]))
    assert after.status_code == 401

    await _cookie_mode(send, transcript)

    for name, weak in WEAK_PASSWORDS.items():
        body = {"email": "weak@example.com", "password": weak}
        assert (await send("POST", "/auth/register", json=body)).status_code == 422
        transcript.keep(f"{name} password", weak)
    return responses


async def _cookie_mode(send: Any, transcript: Transcript) -> None:
    """The cookie mode: session cookies and CSRF tokens, accepted and refused."""

    def cookies(**values: str) -> str:
        return "; ".join(f"__Host-bastion-{name}={value}" for name, value in values.items())

    def set_cookie(response: httpx.Response, name: str) -> str:
        for header in response.headers.get_list("set-cookie"):
            if header.startswith(f"__Host-bastion-{name}="):
                return header.split(";")[0].split("=", 1)[1]
        raise AssertionError(f"no {name} cookie")

    pre = (await send("GET", "/auth/csrf")).json()["csrf_token"]
    transcript.keep("pre-session CSRF token", pre)
    login = await send(
        "POST",
        "/auth/login",
        json={"email": EMAIL, "password": PASSWORD},
        headers={"X-CSRF-Token": pre, "Cookie": cookies(csrf=pre)},
    )
    assert login.json()["token_type"] == "cookie"
    jar = {name: set_cookie(login, name) for name in ("access", "refresh", "csrf")}
    for name, value in jar.items():
        transcript.keep(f"{name} cookie", value)
    forged = await send("POST", "/tasks", json={"title": "t"}, headers={"Cookie": cookies(**jar)})
    assert forged.status_code == 403
    mismatched = await send(
        "POST",
        "/tasks",
        json={"title": "t"},
        headers={"Cookie": cookies(**jar), "X-CSRF-Token": pre},
    )
    assert mismatched.status_code == 403
    logout = await send(
        "POST", "/auth/logout", headers={"Cookie": cookies(**jar), "X-CSRF-Token": jar["csrf"]}
    )
    assert logout.status_code == 204


@pytest.fixture
async def transcript(
    client: httpx.AsyncClient,
    app: Any,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> Transcript:
    # DEBUG everywhere, including libraries that quiet their own loggers (SQLAlchemy sets
    # WARNING on "sqlalchemy"); loggers that do not propagate get the capture handler too.
    caplog.set_level(logging.DEBUG)
    loggers = [
        logger
        for logger in logging.root.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        caplog.set_level(logging.DEBUG, logger=logger.name)
    isolated = [logger for logger in loggers if not logger.propagate]
    for logger in isolated:
        logger.addHandler(caplog.handler)
    result = Transcript()
    result.keep("password", PASSWORD)
    result.keep("wrong password", WRONG_PASSWORD)
    try:
        with capture_events() as events:
            responses = await _scenario(client, result)
    finally:
        for logger in isolated:
            logger.removeHandler(caplog.handler)
    await app.state.security.events.drain()  # denial events are written after the response
    stored = await app.state.security.stores.events.query(EventQuery(limit=100_000))

    output = capsys.readouterr()
    result.sources["stdout"].append(output.out)
    result.sources["stderr"].append(output.err)
    result.sources["log records"].extend(_log_text(record) for record in caplog.records)
    for source, found in (("captured events", events), ("stored events", stored)):
        result.sources[source].extend(
            json.dumps(event_to_dict(event), default=str) for event in found
        )
    result.sources["error responses"].extend(
        f"{response.headers!r}\n{response.text}"
        for response in responses
        if response.status_code >= 400
    )
    return result


@pytest.mark.parametrize("source", SOURCES, ids=SOURCES)
async def test_no_secret_reaches(transcript: Transcript, source: str) -> None:
    leaks = transcript.leaks(source)

    assert leaks == []


async def test_the_scenario_writes_to_every_checked_place(transcript: Transcript) -> None:
    sources = transcript.sources

    assert '"event_type":"token_reuse_detected"' in sources["stdout"][0]
    assert any("sqlalchemy.engine" in line for line in sources["log records"])
    assert len(sources["captured events"]) >= 10
    assert len(sources["stored events"]) == len(sources["captured events"])
    assert len(sources["error responses"]) == 11
    assert len(transcript.secrets) >= 20


async def test_the_leak_check_finds_a_planted_secret(transcript: Transcript) -> None:
    transcript.sources["stdout"].append(f"oops {PASSWORD[:20]}")

    leaks = transcript.leaks("stdout")

    assert leaks == ["password[:20]"]


@pytest.mark.parametrize("weak", list(WEAK_PASSWORDS), ids=list(WEAK_PASSWORDS))
async def test_weak_password_422_does_not_echo_the_password(
    client: httpx.AsyncClient, weak: str
) -> None:
    password = WEAK_PASSWORDS[weak]

    response = await client.post(
        "/auth/register", json={"email": "weak@example.com", "password": password}
    )

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert password not in response.text
    assert password[:8] not in response.text
