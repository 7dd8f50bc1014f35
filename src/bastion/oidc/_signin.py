"""Signing in with an external provider: the authorization request and the provider's
answer, as RFC 9700 (OAuth 2.0 Security BCP) and OpenID Connect Core require.

:meth:`OAuthSignIn.authorize` sends the browser to the provider with ``state``,
``nonce`` and a PKCE ``S256`` challenge bound to it by a cookie
(:class:`~bastion.oidc.SignInBinding`) and the exact redirect URI.
:meth:`OAuthSignIn.callback` checks the answer against that cookie (state once), the
provider's ``error``, RFC 9207's ``iss``, exchanges the code once with the verifier,
validates the ID token (:func:`~bastion.oidc.validate_id_token`), and names the external
identity: its subject, and its email only with whether the provider verified it.
GitHub, which is not OpenID, names the user and their verified addresses by its API.

The HTTP calls are our bounded ``fetch_json`` (Authlib's httpx client is deprecated in
favour of another HTTP package, and reads answers whole); each is one request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from bastion.clock import Clock
from bastion.errors import InvalidTokenError, OAuthFailedError
from bastion.oidc._binding import SignInBinding, SignInRequest
from bastion.oidc._config import ASYMMETRIC_ALGORITHMS
from bastion.oidc._http import ProviderUnavailableError, fetch_json
from bastion.oidc._id_token import validate_id_token
from bastion.oidc._keys import RemoteKeySet
from bastion.oidc._metadata import ProviderMetadata, check_url, discover
from bastion.oidc._providers import GITHUB, OAuthProvider, is_microsoft_issuer

__all__ = ["ExternalIdentity", "OAuthSignIn"]

log = logging.getLogger("bastion.oidc")

_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
_MAX_CODE = 2048
_RETRY_DISCOVERY = timedelta(minutes=1)


@dataclass(frozen=True)
class ExternalIdentity:
    """Who the provider says signed in."""

    provider: str
    subject: str
    email: str | None
    email_verified: bool
    name: str | None
    amr: tuple[str, ...]  # what Bastion's tokens and events say: ``("ext:<provider>",)``
    # The methods the provider says it used (its ID token's ``amr``), for step-up rules.
    provider_amr: tuple[str, ...] = ()
    # The provider's amr names a method its settings count as this service's second
    # factor (``second_factor_amr``): the sign-in needs no code of Bastion's own.
    second_factor: bool = False


@dataclass
class _Provider:
    name: str
    config: OAuthProvider
    metadata: ProviderMetadata | None = None
    keys: RemoteKeySet | None = None
    tried_at: Any = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one discovery at a time


class OAuthSignIn:
    """The configured providers, and the two halves of a sign-in."""

    def __init__(
        self,
        providers: Mapping[str, OAuthProvider],
        *,
        redirect_base: str,
        binding: SignInBinding,
        clock: Clock,
        leeway: timedelta,
        allow_http: bool = False,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
        github_endpoints: Mapping[str, str] | None = None,
    ) -> None:
        """``redirect_base``: the public URL of the auth routes (``BASTION_PUBLIC_URL`` and
        the prefix); a provider's redirect URI is ``<redirect_base>/auth/oauth/<name>/callback``.
        ``github_endpoints``: GitHub's endpoints elsewhere (GitHub Enterprise, a stand-in)."""
        self._providers = {name: _Provider(name, config) for name, config in providers.items()}
        for provider in self._providers.values():
            if provider.config.issuer:
                check_url(provider.config.issuer, allow_http=allow_http, what="issuer")
        self._base = redirect_base.rstrip("/")
        self._binding = binding
        self._clock = clock
        self._leeway = leeway
        self._allow_http = allow_http
        self._timeout = timeout
        self._github = {**GITHUB, **(github_endpoints or {})}
        self._client = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(timeout), follow_redirects=False
        )

    @property
    def binding(self) -> SignInBinding:
        return self._binding

    def __contains__(self, name: object) -> bool:
        return name in self._providers

    def names(self) -> list[tuple[str, str]]:
        """``(name, display name)`` of every provider, in the settings' order."""
        return [(name, p.config.label(name)) for name, p in self._providers.items()]

    def redirect_uri(self, name: str) -> str:
        return f"{self._base}/auth/oauth/{name}/callback"

    async def start(self, *, within: float = 3.0) -> None:
        """Discover the OpenID providers, together, waiting ``within`` seconds at most:
        one that does not answer by then is logged and tried again when a browser asks
        for it (at most once a minute), so a provider that is down delays no start."""

        async def one(provider: _Provider) -> None:
            async with provider.lock:
                await self._discover(provider)

        providers = [p for p in self._providers.values() if p.config.is_oidc]
        tasks = [asyncio.ensure_future(one(p)) for p in providers]
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        for provider, task in zip(providers, tasks, strict=True):
            if task in pending:
                log.warning("sign-in provider %s: no discovery within %g s", provider.name, within)
        await asyncio.gather(*pending, return_exceptions=True)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def authorize(
        self,
        name: str,
        next_path: str | None,
        *,
        cookie_mode: bool = False,
        link_to: str | None = None,
        link_session: str | None = None,
    ) -> tuple[str, str]:
        """The provider's authorization URL for a new sign-in, and the cookie that binds
        it to this browser.

        Raises:
            OAuthFailedError: no such provider, or its metadata cannot be read.
        """
        provider = self._provider(name)
        endpoint = (await self._metadata(provider)).authorization_endpoint
        if endpoint is None:
            raise OAuthFailedError("the provider has no authorization endpoint")
        request, cookie = self._binding.begin(
            name, next_path, cookie_mode=cookie_mode, link_to=link_to, link_session=link_session
        )
        params = {
            "response_type": "code",
            "client_id": provider.config.client_id,
            "redirect_uri": self.redirect_uri(name),
            "scope": " ".join(provider.config.requested_scopes),
            "state": request.state,
            "code_challenge": request.code_challenge,
            "code_challenge_method": "S256",
        }
        if provider.config.is_oidc:
            params["nonce"] = request.nonce
        separator = "&" if "?" in endpoint else "?"
        return f"{endpoint}{separator}{urlencode(params)}", cookie

    async def callback(
        self, name: str, query: Mapping[str, str], cookie: str | None
    ) -> tuple[ExternalIdentity, SignInRequest]:
        """The identity the provider's answer ``query`` names, for the sign-in that
        ``cookie`` started.

        Raises:
            OAuthFailedError: every refusal (its reason is for the event, not the browser).
        """
        provider = self._provider(name)
        request = await self._binding.finish(cookie, name, query.get("state"))
        error = query.get("error")
        if error is not None:
            named = error if _ERROR_CODE.fullmatch(error) else "an invalid error code"
            raise OAuthFailedError(f"the provider answered {named}")
        metadata = await self._metadata(provider)
        self._check_iss(provider, metadata, query.get("iss"))
        code = query.get("code")
        if not code or len(code) > _MAX_CODE:
            raise OAuthFailedError("no code")
        tokens = await self._exchange(provider, metadata, code, request)
        if provider.config.is_oidc:
            identity = await self._oidc_identity(provider, metadata, tokens, request)
        else:
            identity = await self._github_identity(provider, tokens)
        return identity, request

    # -- the steps -------------------------------------------------------------------

    def _provider(self, name: str) -> _Provider:
        provider = self._providers.get(name)
        if provider is None:
            raise OAuthFailedError("no such provider")
        return provider

    async def _metadata(self, provider: _Provider) -> ProviderMetadata:
        if not provider.config.is_oidc:
            return ProviderMetadata(
                issuer="https://github.com",
                jwks_uri="",
                authorization_endpoint=self._github["authorization_endpoint"],
                token_endpoint=self._github["token_endpoint"],
            )
        if provider.metadata is None:
            async with provider.lock:
                tried = provider.tried_at
                if provider.metadata is None and (
                    tried is None or self._clock.now() - tried >= _RETRY_DISCOVERY
                ):
                    await self._discover(provider)
        if provider.metadata is None:
            raise OAuthFailedError("the provider's metadata cannot be read")
        return provider.metadata

    async def _discover(self, provider: _Provider) -> None:
        provider.tried_at = self._clock.now()
        config = provider.config
        discovery_issuer = config.issuer or config.expected_issuer
        assert discovery_issuer is not None
        try:
            metadata = await discover(
                self._client,
                discovery_issuer,
                time_limit=self._timeout,
                allow_http=self._allow_http,
                expected_issuer=config.expected_issuer,
            )
        except ProviderUnavailableError as exc:
            log.warning("sign-in provider %s: discovery failed: %s", provider.name, exc)
            return
        if metadata.code_challenge_methods and "S256" not in metadata.code_challenge_methods:
            log.warning("sign-in provider %s does not support PKCE S256", provider.name)
        provider.metadata = metadata
        provider.keys = RemoteKeySet(
            self._client, metadata.jwks_uri, clock=self._clock, timeout=self._timeout
        )

    def _check_iss(self, provider: _Provider, metadata: ProviderMetadata, iss: str | None) -> None:
        """RFC 9207: an ``iss`` sent must be the provider's; a provider that says it
        sends one must (a mix-up attack answers with another provider's code)."""
        if iss is None:
            if metadata.iss_in_authorization_response:
                raise OAuthFailedError("iss missing from the answer")
            return
        if provider.config.multi_tenant:
            if not is_microsoft_issuer(iss):
                raise OAuthFailedError("iss is another provider's")
        elif iss != metadata.issuer:
            raise OAuthFailedError("iss is another provider's")

    async def _exchange(
        self,
        provider: _Provider,
        metadata: ProviderMetadata,
        code: str,
        request: SignInRequest,
    ) -> dict[str, Any]:
        if metadata.token_endpoint is None:
            raise OAuthFailedError("the provider has no token endpoint")
        config = provider.config
        secret = config.client_secret.get_secret_value()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.redirect_uri(provider.name),
            "code_verifier": request.verifier,
        }
        headers = {"Accept": "application/json"}  # GitHub answers a form otherwise
        if config.token_endpoint_auth_method == "client_secret_post":  # noqa: S105
            form |= {"client_id": config.client_id, "client_secret": secret}
        else:
            # RFC 6749 §2.3.1: each part form-encoded, then joined and base64-encoded.
            pair = f"{quote(config.client_id, safe='')}:{quote(secret, safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            status, answer = await fetch_json(
                self._client,
                "POST",
                metadata.token_endpoint,
                time_limit=self._timeout,
                expect_ok=False,
                data=form,
                headers=headers,
            )
        except ProviderUnavailableError as exc:
            raise OAuthFailedError(f"the code exchange failed: {exc}") from None
        error = answer.get("error")
        if status != 200 or error is not None:
            code_name = error if isinstance(error, str) and _ERROR_CODE.fullmatch(error) else status
            raise OAuthFailedError(f"the code was refused ({code_name})")
        if not isinstance(answer.get("access_token"), str):
            raise OAuthFailedError("the token answer has no access token")
        return answer

    async def _oidc_identity(
        self,
        provider: _Provider,
        metadata: ProviderMetadata,
        tokens: dict[str, Any],
        request: SignInRequest,
    ) -> ExternalIdentity:
        id_token = tokens.get("id_token")
        if not isinstance(id_token, str):
            raise OAuthFailedError("the token answer has no ID token")
        assert provider.keys is not None
        try:
            claims = await validate_id_token(
                id_token,
                keys=provider.keys,
                issuer=metadata.issuer,
                client_id=provider.config.client_id,
                nonce=request.nonce,
                algorithms=ASYMMETRIC_ALGORITHMS,
                clock=self._clock,
                leeway=self._leeway,
                issuer_matches=provider.config.issuer_matches(),
            )
        except InvalidTokenError as exc:
            raise OAuthFailedError(f"ID token refused: {exc.reason}") from None
        email, verified, name = claims.email, claims.email_verified, claims.name
        if email is None and metadata.userinfo_endpoint is not None:
            info = await self._get(metadata.userinfo_endpoint, tokens["access_token"])
            # OpenID Connect Core §5.3.2: userinfo speaks of the ID token's subject or
            # of nobody.
            if info.get("sub") != claims.sub:
                raise OAuthFailedError("userinfo names another subject")
            if isinstance(info.get("email"), str):
                email, verified = info["email"], info.get("email_verified") is True
            if name is None and isinstance(info.get("name"), str):
                name = info["name"]
        return ExternalIdentity(
            provider=provider.name,
            subject=claims.sub,
            email=email,
            email_verified=verified,
            name=name,
            amr=(f"ext:{provider.name}",),
            provider_amr=claims.amr,
            second_factor=bool(set(claims.amr) & set(provider.config.second_factor_amr)),
        )

    async def _github_identity(
        self, provider: _Provider, tokens: dict[str, Any]
    ) -> ExternalIdentity:
        user = await self._get(self._github["user"], tokens["access_token"])
        subject = user.get("id")
        if not isinstance(subject, int) or isinstance(subject, bool):
            raise OAuthFailedError("GitHub named no user")
        listed = await self._get(self._github["emails"], tokens["access_token"], allow_list=True)
        emails = listed.get("items")
        emails = emails if isinstance(emails, list) else []
        primary = next(
            (
                e
                for e in emails
                if isinstance(e, dict)
                and e.get("primary") is True
                and e.get("verified") is True
                and isinstance(e.get("email"), str)
            ),
            None,
        )
        name = user.get("name") if isinstance(user.get("name"), str) else user.get("login")
        return ExternalIdentity(
            provider=provider.name,
            subject=str(subject),
            email=primary["email"] if primary else None,
            email_verified=primary is not None,
            name=name if isinstance(name, str) else None,
            amr=(f"ext:{provider.name}",),
        )

    async def _get(
        self, url: str, access_token: str, *, allow_list: bool = False
    ) -> dict[str, Any]:
        """A provider API's JSON answer; with ``allow_list`` a JSON array (GitHub's
        emails) comes as ``{"items": [...]}``."""
        try:
            _, answer = await fetch_json(
                self._client,
                "GET",
                url,
                time_limit=self._timeout,
                headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
                allow_list=allow_list,
            )
        except ProviderUnavailableError as exc:
            raise OAuthFailedError(f"the provider's API failed: {exc}") from None
        return answer
