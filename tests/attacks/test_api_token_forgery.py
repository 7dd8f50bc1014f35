"""Forged and misused access tokens against ``GET /users/me``, through the real app.

RFC 8725 §2-3 (alg none, algorithm confusion, explicit typing), RFC 9068 §4 (typ, iss,
aud, exp), RFC 6750 §2-3 (header only, ``error="invalid_token"``), ASVS 9.1.1-9.1.3 and
9.2.1-9.2.3, OWASP API2:2023. Each attack must get the one opaque 401 answer, emit an
``auth_failure`` event, fetch nothing from the network and change nothing stored.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bastion.stores import Account
from bastion.testing import FrozenClock, capture_events
from bastion.tokens import AccessTokens
from bastion_tasks.settings import TaskSettings
from tests.helpers import signed_up, without_request_id
from tests.jws import b64, b64decode, b64json, compact, hmac_signer

ATTACKER_URL = "https://attacker.example/.well-known/jwks.json"


@dataclass
class NetworkLog:
    """Connections and name look-ups to anything but loopback (the test databases)."""

    attempts: list[object]


def _is_loopback(host: object) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if host is None or host == "localhost":
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def network(monkeypatch: pytest.MonkeyPatch) -> NetworkLog:
    """Refuse and record every non-loopback connection or DNS look-up (ASVS 9.1.3)."""
    log = NetworkLog([])
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo

    def outside(address: object) -> bool:
        if isinstance(address, str | bytes):  # a Unix socket path
            return False
        host = address[0] if isinstance(address, tuple) and address else address
        return not _is_loopback(host)

    def connect(sock: socket.socket, address: Any) -> None:
        if outside(address):
            log.attempts.append(address)
            raise OSError("outbound network access is disabled in this test")
        real_connect(sock, address)

    def connect_ex(sock: socket.socket, address: Any) -> int:
        if outside(address):
            log.attempts.append(address)
            raise OSError("outbound network access is disabled in this test")
        return real_connect_ex(sock, address)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        if outside(address):
            log.attempts.append(address)
            raise OSError("outbound network access is disabled in this test")
        return real_create_connection(address, *args, **kwargs)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_loopback(host):
            log.attempts.append(host)
            raise socket.gaierror("name resolution is disabled in this test")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return log


@dataclass
class Forger:
    """What an attacker (and the test) can get hold of, and the victim's genuine tokens."""

    app: Any
    settings: TaskSettings
    pair: dict[str, Any]
    jwks: dict[str, Any]

    @property
    def claims(self) -> dict[str, Any]:
        return asdict(self.app.state.security.access_tokens.verify(self.pair["access_token"]))

    @property
    def kid(self) -> str:
        return str(self.app.state.security.keys.signing_key.kid)

    @property
    def private_key(self) -> Ed25519PrivateKey:
        key = self.app.state.security.keys.signing_key.private_key
        assert isinstance(key, Ed25519PrivateKey)
        return key

    def header(self, **changes: Any) -> dict[str, Any]:
        header = {"alg": "EdDSA", "kid": self.kid, "typ": "at+jwt", **changes}
        return {name: value for name, value in header.items() if value is not None}

    def payload(self, **changes: Any) -> dict[str, Any]:
        return {**self.claims, **changes}

    def signed(self, header: dict[str, Any], payload: dict[str, Any]) -> str:
        """Signed with the service's real key: only the chosen header or claim is wrong."""
        return compact(header, payload, self.private_key.sign)

    def tokens(self, *, at: datetime | None = None, **overrides: str) -> AccessTokens:
        return AccessTokens(
            self.app.state.security.keys,
            issuer=overrides.get("issuer", self.settings.jwt_issuer),
            audience=overrides.get("audience", self.settings.jwt_audience),
            clock=FrozenClock(at) if at else None,
        )

    def reissue(self, tokens: AccessTokens) -> str:
        claims = self.claims
        token, _ = tokens.issue(
            subject=claims["sub"],
            role=claims["role"],
            session_id=claims["sid"],
            token_version=claims["tv"],
        )
        return token

    def public_jwk(self) -> dict[str, str]:
        keys = [key for key in self.jwks["keys"] if key["kid"] == self.kid]
        assert len(keys) == 1
        return dict(keys[0])

    def public_pem(self) -> bytes:
        public = self.app.state.security.keys.signing_key.verification_key
        return bytes(public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))

    def public_raw(self) -> bytes:
        public = self.app.state.security.keys.signing_key.verification_key
        return bytes(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


Request = dict[str, Any]  # keyword arguments of httpx.AsyncClient.get


def _bearer(token: str) -> Request:
    return {"headers": {"Authorization": f"Bearer {token}"}}


def _attacker_signed(
    forger: Forger, *, real_kid: bool, embed_jwk: bool = False, **extra_header: str
) -> Request:
    """Signed with a key the attacker made, announced by kid, ``jku``, ``x5u`` or ``jwk``."""
    attacker = Ed25519PrivateKey.generate()
    header: dict[str, Any] = forger.header(
        kid=forger.kid if real_kid else "attacker", **extra_header
    )
    if embed_jwk:
        raw = attacker.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        header["jwk"] = {"kty": "OKP", "crv": "Ed25519", "x": b64(raw), "kid": "attacker"}
    return _bearer(compact(header, forger.payload(role="admin"), attacker.sign))


def _tampered_payload(forger: Forger) -> Request:
    header, _, signature = forger.pair["access_token"].split(".")
    return _bearer(f"{header}.{b64json(forger.payload(role='admin'))}.{signature}")


def _in_an_hour() -> int:
    return int((datetime.now(UTC) + timedelta(hours=1)).timestamp())


FORGERIES: dict[str, Callable[[Forger], Request]] = {
    "no-token": lambda f: {},
    "alg-none": lambda f: _bearer(compact(f.header(alg="none"), f.payload(role="admin"))),
    "alg-NONE": lambda f: _bearer(compact(f.header(alg="NONE"), f.payload(role="admin"))),
    "unsigned-with-real-alg": lambda f: _bearer(compact(f.header(), f.payload(role="admin"))),
    "hs256-with-jwks-public-key": lambda f: _bearer(
        compact(
            f.header(alg="HS256"),
            f.payload(role="admin"),
            hmac_signer(b64decode(f.public_jwk()["x"])),
        )
    ),
    "hs256-with-jwks-jwk-json": lambda f: _bearer(
        compact(
            f.header(alg="HS256"),
            f.payload(role="admin"),
            hmac_signer(json.dumps(f.public_jwk()).encode()),
        )
    ),
    "hs256-with-keyset-public-pem": lambda f: _bearer(
        compact(f.header(alg="HS256"), f.payload(role="admin"), hmac_signer(f.public_pem()))
    ),
    "hs256-with-keyset-public-raw": lambda f: _bearer(
        compact(f.header(alg="HS256"), f.payload(role="admin"), hmac_signer(f.public_raw()))
    ),
    "payload-role-admin": _tampered_payload,
    "signed-by-another-key-with-real-kid": lambda f: _attacker_signed(f, real_kid=True),
    "unknown-kid": lambda f: _bearer(f.signed(f.header(kid="no-such-key"), f.payload())),
    "path-kid-traversal": lambda f: _bearer(
        f.signed(f.header(kid="../../../../../../dev/null"), f.payload())
    ),
    "path-kid-key-file": lambda f: _bearer(
        f.signed(f.header(kid=str(f.settings.keys_path)), f.payload())
    ),
    "expired": lambda f: _bearer(f.reissue(f.tokens(at=datetime.now(UTC) - timedelta(hours=1)))),
    "future-nbf": lambda f: _bearer(f.signed(f.header(), f.payload(nbf=_in_an_hour()))),
    "issued-in-the-future": lambda f: _bearer(
        f.reissue(f.tokens(at=datetime.now(UTC) + timedelta(hours=1)))
    ),
    "wrong-aud": lambda f: _bearer(f.reissue(f.tokens(audience="another-api"))),
    "wrong-iss": lambda f: _bearer(f.reissue(f.tokens(issuer="https://attacker.example"))),
    "typ-JWT": lambda f: _bearer(f.signed(f.header(typ="JWT"), f.payload())),
    "typ-missing": lambda f: _bearer(f.signed(f.header(typ=None), f.payload())),
    "refresh-token-as-access-token": lambda f: _bearer(f.pair["refresh_token"]),
    "access-token-in-query": lambda f: {"params": {"access_token": f.pair["access_token"]}},
    "jku-to-attacker": lambda f: _attacker_signed(f, real_kid=False, jku=ATTACKER_URL),
    "x5u-to-attacker": lambda f: _attacker_signed(
        f, real_kid=False, x5u="https://attacker.example/cert.pem"
    ),
    "embedded-jwk": lambda f: _attacker_signed(f, real_kid=False, embed_jwk=True),
    "embedded-jwk-with-real-kid": lambda f: _attacker_signed(f, real_kid=True, embed_jwk=True),
}
KEY_SOURCE_HEADERS = [
    "jku-to-attacker",
    "x5u-to-attacker",
    "embedded-jwk",
    "embedded-jwk-with-real-kid",
]


@pytest.fixture
async def forger(client: httpx.AsyncClient, app: Any, settings: TaskSettings) -> Forger:
    assert settings.jwt_algorithm == "EdDSA"
    pair = await signed_up(client, "victim@example.com")
    jwks = (await client.get("/.well-known/jwks.json")).json()
    return Forger(app, settings, pair, jwks)


async def _stored_account(app: Any, forger: Forger) -> Account:
    account = await app.state.security.stores.accounts.get(uuid.UUID(forger.claims["sub"]))
    assert account is not None
    return account


async def test_the_genuine_token_is_accepted(client: httpx.AsyncClient, forger: Forger) -> None:
    response = await client.get("/users/me", **_bearer(forger.pair["access_token"]))

    assert response.status_code == 200
    assert response.json()["role"] == "member"


@pytest.mark.parametrize("attack", list(FORGERIES), ids=list(FORGERIES))
async def test_forged_token_is_refused_as_invalid_token_and_recorded(
    client: httpx.AsyncClient, forger: Forger, attack: str
) -> None:
    request = FORGERIES[attack](forger)
    with capture_events() as events:
        response = await client.get("/users/me", **request)

    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/invalid-token"
    assert [(e.event_type, e.endpoint) for e in events] == [("auth_failure", "/users/me")]


async def test_forgeries_change_nothing_stored(
    client: httpx.AsyncClient, app: Any, forger: Forger
) -> None:
    before = await _stored_account(app, forger)

    for build in FORGERIES.values():
        await client.get("/users/me", **build(forger))

    assert await _stored_account(app, forger) == before
    genuine = await client.get("/users/me", **_bearer(forger.pair["access_token"]))
    assert genuine.json()["role"] == "member"


async def test_every_forgery_gets_one_identical_answer(
    client: httpx.AsyncClient, forger: Forger
) -> None:
    answers: dict[str, tuple[str, str]] = {}
    for attack, build in FORGERIES.items():
        response = await client.get("/users/me", **build(forger))
        body = json.dumps(without_request_id(response.json()), sort_keys=True)
        answers[attack] = (body, response.headers["www-authenticate"])

    assert len(set(answers.values())) == 1, answers


@pytest.mark.parametrize("attack", KEY_SOURCE_HEADERS, ids=KEY_SOURCE_HEADERS)
async def test_key_source_header_makes_no_outbound_request(
    client: httpx.AsyncClient, forger: Forger, network: NetworkLog, attack: str
) -> None:
    response = await client.get("/users/me", **FORGERIES[attack](forger))

    assert response.status_code == 401
    assert network.attempts == []


async def test_the_network_guard_catches_an_outbound_connection(network: NetworkLog) -> None:
    with pytest.raises(OSError, match="disabled"):
        socket.create_connection(("203.0.113.9", 443), timeout=0.1)

    assert network.attempts == [("203.0.113.9", 443)]
