"""A real OpenID Provider for the tests: panva's ``oidc-provider`` (Node.js), on loopback.

``running_provider(config)`` installs the npm packages once (into a cache folder outside
the repository, keyed by the lock file), starts ``provider/server.mjs`` on a free port and
stops it at the end. ``sign_in`` walks the provider's development login and consent pages
with an ``httpx.Client``, as a browser would, and hands back the redirect to the client.

Without node and npm, or when the install fails, the tests that need the provider skip,
except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx
import pytest

__all__ = [
    "ALICE",
    "API_ES256_RESOURCE",
    "API_RESOURCE",
    "BOB",
    "CLIENT_ID",
    "CLIENT_SECRET",
    "POST_CLIENT_ID",
    "POST_REDIRECT_URI",
    "REDIRECT_URI",
    "Provider",
    "ProviderFlowError",
    "client_token",
    "default_config",
    "install_provider",
    "pkce_pair",
    "published_keys",
    "running_provider",
    "sign_in",
    "user_tokens",
]

PROVIDER_DIR = Path(__file__).parent / "provider"
START_TIMEOUT = 30.0  # seconds for the provider to print READY
STOP_TIMEOUT = 5.0  # seconds for each step of stopping it
INSTALL_TIMEOUT = 600.0  # seconds for npm ci

CLIENT_ID = "bastion-app"
CLIENT_SECRET = "bastion-app-secret-0123456789abcdef"
POST_CLIENT_ID = "bastion-post-app"  # the same secret, sent in the form body
# The redirect URIs Bastion builds for providers named "corp" and "corp-post" on
# http://testserver (``<public url>/auth/oauth/<name>/callback``).
REDIRECT_URI = "http://testserver/auth/oauth/corp/callback"
POST_REDIRECT_URI = "http://testserver/auth/oauth/corp-post/callback"
API_RESOURCE = "https://api.test/"  # JWT access tokens signed RS256
API_ES256_RESOURCE = "https://es256.api.test/"  # the same, signed ES256
API_SCOPES = "api:read api:write"
ALICE: dict[str, Any] = {
    "sub": "alice",
    "email": "alice@example.com",
    "email_verified": True,
    "name": "Alice Example",
    "role": "admin",
}
BOB: dict[str, Any] = {
    "sub": "bob",
    "email": "bob@example.com",
    "email_verified": False,
    "name": "Bob Example",
}


def default_config() -> dict[str, Any]:
    """Two confidential clients (``client_secret_basic`` and ``client_secret_post``), both
        allowed the code and client credentials grants; accounts ``alice`` (role ``admin``)
        and ``bob`` (no role); the APIs ``https://api.test/`` and ``https://es256.api.test/``,
    with JWT access tokens signed RS256 and ES256."""
    grants = ["authorization_code", "client_credentials"]
    return {
        "clients": [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI, POST_REDIRECT_URI],
                "grant_types": grants,
                "token_endpoint_auth_method": "client_secret_basic",
            },
            {
                "client_id": POST_CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [REDIRECT_URI, POST_REDIRECT_URI],
                "grant_types": grants,
                "token_endpoint_auth_method": "client_secret_post",
            },
        ],
        "accounts": [ALICE, BOB],
        "resources": [
            {"indicator": API_RESOURCE, "scope": API_SCOPES},
            {"indicator": API_ES256_RESOURCE, "scope": API_SCOPES, "alg": "ES256"},
        ],
    }


def _unavailable(reason: str) -> NoReturn:
    """Skip the test, or fail it under ``CI=true``: CI never skips for a missing tool."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the OIDC provider tests may not skip)", pytrace=False)
    pytest.skip(reason)


def _cache_root() -> Path:
    if root := os.environ.get("BASTION_TEST_CACHE"):
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "bastion-tests"


def _digest(*parts: bytes) -> str:
    sha = hashlib.sha256()
    for part in parts:
        sha.update(hashlib.sha256(part).digest())
    return sha.hexdigest()[:16]


_install_failure: list[str] = []  # this process's failed install: not tried again


def install_provider() -> Path:
    """Install ``provider/package-lock.json`` with ``npm ci`` into the cache (once per lock,
    under a file lock) and return the path of ``server.mjs``'s copy beside its
    ``node_modules``."""
    if _install_failure:
        _unavailable(_install_failure[0])
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are needed to run the OIDC provider (oidc-provider)")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
    major = version.stdout.strip().lstrip("v").split(".")[0]
    if not major.isdigit() or int(major) < 20:
        _unavailable(f"the OIDC provider needs Node.js 20 or later, not {version.stdout!r}")

    package = (PROVIDER_DIR / "package.json").read_bytes()
    lock = (PROVIDER_DIR / "package-lock.json").read_bytes()
    key = _digest(package, lock)
    target = _cache_root() / "oidc-provider" / key
    target.parent.mkdir(parents=True, exist_ok=True)
    with (target.parent / f"{key}.lock").open("w") as lockfile:
        fcntl.flock(lockfile, fcntl.LOCK_EX)
        if not (target / ".installed").exists():
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            (target / "package.json").write_bytes(package)
            (target / "package-lock.json").write_bytes(lock)
            env = {**os.environ, "npm_config_update_notifier": "false"}
            try:
                result = subprocess.run(
                    [npm, "ci", "--no-audit", "--no-fund"],
                    cwd=target, env=env, capture_output=True, text=True, check=False,
                    timeout=INSTALL_TIMEOUT,
                )  # fmt: skip
            except subprocess.TimeoutExpired:
                _install_failure.append(f"npm ci took over {INSTALL_TIMEOUT:.0f} s in {target}")
                _unavailable(_install_failure[0])
            if result.returncode != 0:
                _install_failure.append(
                    f"npm ci of the OIDC provider failed (exit {result.returncode}) in "
                    f"{target}:\n{result.stderr[-2000:]}"
                )
                _unavailable(_install_failure[0])
            (target / ".installed").write_text(f"{key}\n")

    # server.mjs must sit beside node_modules for `import 'oidc-provider'` to resolve.
    source = (PROVIDER_DIR / "server.mjs").read_bytes()
    server = target / f"server-{_digest(source)}.mjs"
    if not server.exists():
        partial = target / f".{server.name}.{os.getpid()}.tmp"
        partial.write_bytes(source)
        partial.replace(server)
    return server


@dataclass(frozen=True)
class Provider:
    """A running provider. Its endpoints are oidc-provider's default routes."""

    issuer: str
    port: int
    log: Path  # the provider's stderr

    def url(self, path: str) -> str:
        """``path`` on the provider itself (not through the issuer's address, which may
        be a proxy's)."""
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def discovery_url(self) -> str:
        return self.url("/.well-known/openid-configuration")

    @property
    def authorization_endpoint(self) -> str:
        return self.url("/auth")

    @property
    def token_endpoint(self) -> str:
        return self.url("/token")

    @property
    def jwks_uri(self) -> str:
        return self.url("/jwks")

    @property
    def userinfo_endpoint(self) -> str:
        return self.url("/me")

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def authorization_url(
        self,
        *,
        state: str,
        nonce: str | None,
        code_challenge: str | None,
        client_id: str = CLIENT_ID,
        redirect_uri: str = REDIRECT_URI,
        scope: str = "openid email profile",
        **extra: str,
    ) -> str:
        """An authorization request for the code flow; ``code_challenge`` is S256's (see
        ``pkce_pair``), None leaves PKCE out. ``extra`` adds parameters, e.g. ``resource``."""
        params = {
            "response_type": "code",
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
        }
        if nonce is not None:
            params["nonce"] = nonce
        if code_challenge is not None:
            params |= {"code_challenge": code_challenge, "code_challenge_method": "S256"}
        return f"{self.authorization_endpoint}?{urlencode(params | extra)}"


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) or "(empty)"
    except OSError:
        return "(no stderr)"


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Close its stdin (it exits on that), then SIGTERM, then SIGKILL."""
    if process.stdin is not None:
        with suppress(OSError):
            process.stdin.close()
    for step in (None, process.terminate, process.kill):
        if step is not None:
            step()
        try:
            process.wait(timeout=STOP_TIMEOUT)
            return
        except subprocess.TimeoutExpired:
            continue
    process.wait()


@contextmanager
def running_provider(
    config: dict[str, Any] | None = None,
    *,
    issuer: str | None = None,
    timeout: float = START_TIMEOUT,
) -> Iterator[Provider]:
    """Run ``server.mjs`` with ``config`` (``default_config()`` when None) on a free
    loopback port until the block ends. ``issuer``: the issuer it names, when it is
    reached through another address (a proxy a test can cut)."""
    server = install_provider()
    node = shutil.which("node")
    assert node is not None
    with tempfile.TemporaryDirectory(prefix="oidc-provider-") as tmp:
        config_path = Path(tmp) / "config.json"
        config_path.write_text(json.dumps(default_config() if config is None else config))
        out_path, err_path = Path(tmp) / "stdout", Path(tmp) / "stderr"
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in {"OIDC_ISSUER", "OIDC_PORT", "NODE_OPTIONS", "DEBUG"}
        }
        env["OIDC_PROVIDER_CONFIG"] = str(config_path)
        if issuer is not None:
            env["OIDC_ISSUER"] = issuer
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                [node, str(server), "--port", "0", "--exit-with-stdin"],
                cwd=server.parent, env=env, stdin=subprocess.PIPE, stdout=out, stderr=err,
            )  # fmt: skip
        try:
            named, port = _wait_ready(process, out_path, err_path, timeout)
            yield Provider(issuer=named, port=port, log=err_path)
        finally:
            _stop(process)


def _wait_ready(
    process: subprocess.Popen[bytes], out_path: Path, err_path: Path, timeout: float
) -> tuple[str, int]:
    deadline = time.monotonic() + timeout
    while True:
        for line in out_path.read_text(errors="replace").splitlines():
            if line.startswith("READY "):
                issuer, port = line.removeprefix("READY ").split()
                return issuer, int(port)
        if process.poll() is not None:
            raise RuntimeError(
                f"the OIDC provider exited with {process.returncode} before READY; "
                f"stderr:\n{_tail(err_path)}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the OIDC provider printed no READY within {timeout:.0f} s; "
                f"stderr:\n{_tail(err_path)}"
            )
        time.sleep(0.05)


def pkce_pair() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` for S256."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class ProviderFlowError(AssertionError):
    """The provider answered something ``sign_in`` did not expect."""


class _Forms(HTMLParser):
    """The forms of a page: action, method and the named inputs' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            self.forms.append({"action": values.get("action", ""), "fields": {}})
            self.forms[-1]["method"] = values.get("method", "get").lower()
        elif tag == "input" and self.forms and values.get("name"):
            self.forms[-1]["fields"][values["name"]] = values.get("value", "")


def _is_redirect_uri(url: str, redirect_uri: str) -> bool:
    target, expected = urlsplit(url), urlsplit(redirect_uri)
    return (target.scheme, target.netloc, target.path) == (
        expected.scheme,
        expected.netloc,
        expected.path,
    )


def sign_in(
    browser: httpx.Client,
    authorization_url: str,
    *,
    login: str,
    redirect_uri: str | None = None,
    max_steps: int = 12,
) -> str:
    """Follow ``authorization_url`` through the provider's development login (as account
    ``login``; its password field is ignored) and consent pages, and return the URL it
    redirects to at ``redirect_uri`` (by default the request's own), with ``code`` and
    ``state`` or ``error``, without requesting it. ``browser`` keeps the provider's
    cookies: signing in again with it reuses the provider's session."""
    if redirect_uri is None:
        redirect_uri = dict(parse_qsl(urlsplit(authorization_url).query))["redirect_uri"]
    response = browser.get(authorization_url, follow_redirects=False)
    for _ in range(max_steps):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if _is_redirect_uri(location, redirect_uri):
                return location
            response = browser.get(location, follow_redirects=False)
            continue
        parser = _Forms()
        parser.feed(response.text)
        forms = [form for form in parser.forms if form["method"] == "post"]
        if response.status_code != 200 or not forms:
            raise ProviderFlowError(
                f"{response.request.method} {response.url} answered {response.status_code}:"
                f"\n{response.text[:2000]}"
            )
        form = forms[0]
        fields = dict(form["fields"])
        if fields.get("prompt") == "login":
            fields |= {"login": login, "password": "ignored-by-dev-interactions"}
        elif fields.get("prompt") != "consent":
            raise ProviderFlowError(f"unexpected form at {response.url}: {fields}")
        action = urljoin(str(response.url), form["action"])
        response = browser.post(action, data=fields, follow_redirects=False)
    raise ProviderFlowError(f"no redirect to {redirect_uri} within {max_steps} steps")


def published_keys(provider: Provider) -> dict[str, Any]:
    """The provider's JWK set, as it publishes it."""
    keys: dict[str, Any] = httpx.get(provider.jwks_uri).json()
    return keys


def client_token(provider: Provider, resource: str = API_RESOURCE, scope: str = "api:read") -> str:
    """A JWT access token for ``resource`` by the client-credentials grant (``sub`` is
    the client id)."""
    response = httpx.post(
        provider.token_endpoint,
        data={"grant_type": "client_credentials", "resource": resource, "scope": scope},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def user_tokens(
    provider: Provider,
    login: str,
    *,
    resource: str = API_RESOURCE,
    scope: str = "openid email api:read",
    nonce: str | None = None,
    client_id: str = CLIENT_ID,
) -> dict[str, Any]:
    """The token answer (``access_token`` for ``resource``, ``id_token``) after ``login``
    signs in through the code flow with PKCE, as a browser would."""
    verifier, challenge = pkce_pair()
    url = provider.authorization_url(
        state=secrets.token_urlsafe(16),
        nonce=nonce or secrets.token_urlsafe(16),
        code_challenge=challenge,
        client_id=client_id,
        scope=scope,
        resource=resource,
    )
    with httpx.Client() as browser:
        back = sign_in(browser, url, login=login)
    code = dict(parse_qsl(urlsplit(back).query))["code"]
    response = httpx.post(
        provider.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        },
        auth=(client_id, CLIENT_SECRET),
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens
