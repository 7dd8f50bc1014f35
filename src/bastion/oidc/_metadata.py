"""An OpenID provider's metadata, by discovery (OpenID Connect Discovery 1.0 §4; RFC 8414
for plain OAuth 2 authorization servers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from bastion.oidc._http import ProviderUnavailableError, fetch_json

__all__ = ["ProviderMetadata", "check_url", "discover"]


@dataclass(frozen=True)
class ProviderMetadata:
    issuer: str
    jwks_uri: str
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    userinfo_endpoint: str | None = None
    code_challenge_methods: tuple[str, ...] = ()
    # RFC 9207: the provider sends ``iss`` with its authorization responses.
    iss_in_authorization_response: bool = False


def check_url(url: str, *, allow_http: bool, what: str) -> str:
    """``url`` if it is an absolute https URL (http too when ``allow_http``: development),
    with no fragment; ValueError otherwise."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"{what} is not a URL: {exc}") from None
    schemes = {"https", "http"} if allow_http else {"https"}
    if parsed.scheme not in schemes or not parsed.host:
        raise ValueError(f"{what} must be an {'http(s)' if allow_http else 'https'} URL")
    if parsed.fragment or parsed.userinfo:
        raise ValueError(f"{what} must have no fragment and no credentials")
    return url


async def discover(
    client: httpx.AsyncClient,
    issuer: str,
    *,
    time_limit: float,
    allow_http: bool,
    expected_issuer: str | None = None,
) -> ProviderMetadata:
    """Read ``issuer``'s discovery document; the issuer it names must be ``issuer``
    exactly (§4.3: what stops one provider's document from speaking for another), or
    ``expected_issuer`` (Microsoft's tenant-independent endpoints name a template), and
    its endpoints must be https outside development.

    Raises:
        ProviderUnavailableError: the document cannot be read or does not hold.
    """
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    _, document = await fetch_json(client, "GET", url, time_limit=time_limit)
    host = httpx.URL(url).host
    if document.get("issuer") != (expected_issuer or issuer):
        raise ProviderUnavailableError(f"{host}: the discovery document names another issuer")
    try:
        jwks_uri = check_url(_text(document, "jwks_uri"), allow_http=allow_http, what="jwks_uri")
        endpoints = {
            name: check_url(document[name], allow_http=allow_http, what=name)
            if isinstance(document.get(name), str)
            else None
            for name in ("authorization_endpoint", "token_endpoint", "userinfo_endpoint")
        }
    except (ValueError, KeyError) as exc:
        raise ProviderUnavailableError(f"{host}: {exc}") from None
    methods = document.get("code_challenge_methods_supported")
    return ProviderMetadata(
        issuer=expected_issuer or issuer,
        jwks_uri=jwks_uri,
        code_challenge_methods=tuple(m for m in methods if isinstance(m, str))
        if isinstance(methods, list)
        else (),
        iss_in_authorization_response=document.get("authorization_response_iss_parameter_supported")
        is True,
        **endpoints,
    )


def _text(document: dict[str, Any], name: str) -> str:
    value = document.get(name)
    if not isinstance(value, str) or not value:
        raise KeyError(f"no {name}")
    return value
