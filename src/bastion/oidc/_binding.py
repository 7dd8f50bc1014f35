"""What ties a provider's answer to the browser that asked for the sign-in (RFC 9700
§2.1, §4.7; OpenID Connect Core §3.1.2.1): ``state`` (256 random bits), ``nonce`` and the
PKCE ``S256`` verifier (RFC 7636), with the provider and the page to return to, in a
short-lived signed cookie, set on the way out and checked on the way back. A ``state``
is accepted once (on every instance: the claim is in the shared store), so a replayed
answer is refused even with its cookie."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

from bastion.clock import Clock
from bastion.errors import OAuthFailedError

__all__ = ["SignInBinding", "SignInRequest", "pkce_challenge", "safe_next"]

_MAX_COOKIE = 2048
_MAX_NEXT = 512


@dataclass(frozen=True)
class SignInRequest:
    provider: str
    state: str
    nonce: str
    verifier: str  # the PKCE code verifier: 43 characters, 256 bits
    next: str  # a path of this site to return to
    issued_at: int
    cookie_mode: bool = False  # answer with a cookie session (a browser's navigation)
    link_to: str | None = None  # the signed-in account to link to, instead of a sign-in
    link_session: str | None = None  # the session that asked for the link

    @property
    def code_challenge(self) -> str:
        return pkce_challenge(self.verifier)


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, ``S256`` (never ``plain``)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def safe_next(value: str | None) -> str:
    """``value`` if it is a path of this site, else ``/``: no scheme, no host, no
    ``//`` or ``/\\`` (a browser reads both as another host), no control characters."""
    if (
        not value
        or len(value) > _MAX_NEXT
        or not value.startswith("/")
        or value.startswith(("//", "/\\"))
        or any(ord(c) < 0x20 or c in "\\\x7f" for c in value)
        or not _is_text(value)
    ):
        return "/"
    return value


def _is_text(value: str) -> bool:
    """Unicode text: no lone surrogate, which has no UTF-8 form to put in a URL."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class SignInBinding:
    """Issues and checks the cookie of a sign-in in progress."""

    def __init__(
        self,
        secret: bytes,
        *,
        clock: Clock,
        claim: Callable[[str, int], Awaitable[bool]],
        max_age: timedelta = timedelta(minutes=10),
    ) -> None:
        """``secret``: the cookie's HMAC key (32 bytes or more, derived for this use
        alone). ``claim(value, ttl)``: True the first time ``value`` is claimed within
        ``ttl`` seconds, on every instance (the shared store's)."""
        if len(secret) < 32:
            raise ValueError("the sign-in cookie's key must have at least 32 bytes")
        self._secret = secret
        self._clock = clock
        self._claim = claim
        self._max_age = int(max_age.total_seconds())

    @property
    def max_age(self) -> int:
        return self._max_age

    def begin(
        self,
        provider: str,
        next_path: str | None = None,
        *,
        cookie_mode: bool = False,
        link_to: str | None = None,
        link_session: str | None = None,
    ) -> tuple[SignInRequest, str]:
        """A new sign-in for ``provider``: its parameters, and the cookie's value."""
        request = SignInRequest(
            provider=provider,
            state=secrets.token_urlsafe(32),
            nonce=secrets.token_urlsafe(32),
            verifier=secrets.token_urlsafe(32),
            next=safe_next(next_path),
            issued_at=int(self._clock.now().timestamp()),
            cookie_mode=cookie_mode,
            link_to=link_to,
            link_session=link_session,
        )
        body = _b64(json.dumps(asdict(request), separators=(",", ":")).encode())
        return request, f"{body}.{self._sign(body)}"

    async def finish(self, cookie: str | None, provider: str, state: str | None) -> SignInRequest:
        """The sign-in ``cookie`` started, if the provider's answer (``state``) is for
        it, for ``provider``, in time, and the first such answer.

        Raises:
            OAuthFailedError: anything else; the reason says which.
        """
        if (
            not cookie
            or len(cookie) > _MAX_COOKIE
            or not cookie.isascii()
            or cookie.count(".") != 1
        ):
            raise OAuthFailedError("no sign-in cookie")
        body, signature = cookie.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            raise OAuthFailedError("sign-in cookie not ours")
        try:
            request = SignInRequest(**json.loads(base64.urlsafe_b64decode(body + "==")))
        except (ValueError, TypeError):
            raise OAuthFailedError("sign-in cookie not ours") from None
        if request.provider != provider:
            raise OAuthFailedError("sign-in cookie of another provider")
        if (
            not state
            or not state.isascii()
            or not hmac.compare_digest(state.encode(), request.state.encode())
        ):
            raise OAuthFailedError("state missing or foreign")
        age = self._clock.now().timestamp() - request.issued_at
        if not 0 <= age <= self._max_age:
            raise OAuthFailedError("sign-in expired")
        digest = hashlib.sha256(request.state.encode()).hexdigest()
        if not await self._claim(f"oauth-state:{digest}", self._max_age):
            raise OAuthFailedError("state replayed")
        return request

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode("ascii"), hashlib.sha256).digest())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")
