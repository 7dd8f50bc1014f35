"""Fetching a provider's JSON documents (discovery, JWKS, token and userinfo answers):
bounded in time and size, no redirects, TLS verified, and every failure one error type
that names the host but never a query, a code or a secret."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx

from bastion.errors import ServiceUnavailableError

__all__ = ["MAX_DOCUMENT_BYTES", "ProviderUnavailableError", "fetch_json", "read_json"]

MAX_DOCUMENT_BYTES = 512 * 1024  # a discovery document or a JWKS is a few KiB


class ProviderUnavailableError(ServiceUnavailableError):
    """A provider or issuer did not answer usefully (down, slow, too large, not JSON)."""


async def fetch_json(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    time_limit: float,
    max_bytes: int = MAX_DOCUMENT_BYTES,
    expect_ok: bool = True,
    allow_list: bool = False,
    **request: Any,
) -> tuple[int, dict[str, Any]]:
    """``(status, object)`` of a JSON object answer; raises ProviderUnavailableError.

    httpx's timeout bounds each step; ``asyncio.timeout`` bounds the whole call, so a
    server dripping one byte at a time cannot stretch it. With ``expect_ok`` anything but
    200 is a failure; without it, a 4xx JSON error object is returned to the caller.
    With ``allow_list`` a JSON array answer comes as ``{"items": [...]}``.
    """
    host = httpx.URL(url).host
    # Uncompressed only: the cap counts the bytes as they arrive, and a compressed answer
    # would be inflated whole before they are counted.
    request["headers"] = {**request.get("headers", {}), "Accept-Encoding": "identity"}
    try:
        async with asyncio.timeout(time_limit):
            async with client.stream(method, url, **request) as response:
                status = response.status_code
                if response.is_redirect:
                    raise ProviderUnavailableError(f"{host}: refused a redirect ({status})")
                if (expect_ok and status != 200) or status >= 500 or status < 200:
                    raise ProviderUnavailableError(f"{host}: HTTP {status}")
                if response.headers.get("content-encoding", "identity").lower() != "identity":
                    raise ProviderUnavailableError(f"{host}: a compressed answer")
                body = await _bounded(response, max_bytes, host)
    except (TimeoutError, httpx.TimeoutException) as exc:
        raise ProviderUnavailableError(f"{host}: no answer within {time_limit:g} s") from exc
    except httpx.HTTPError as exc:
        raise ProviderUnavailableError(f"{host}: {type(exc).__name__}") from exc
    return status, read_json(body, host, allow_list=allow_list)


async def _bounded(response: httpx.Response, max_bytes: int, host: str) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ProviderUnavailableError(f"{host}: answer larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > max_bytes:
            raise ProviderUnavailableError(f"{host}: answer larger than {max_bytes} bytes")
    return bytes(body)


def read_json(body: bytes, host: str, *, allow_list: bool = False) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        raise ProviderUnavailableError(f"{host}: the answer is not JSON") from None
    if allow_list and isinstance(value, list):
        return {"items": value}
    if not isinstance(value, dict):
        raise ProviderUnavailableError(f"{host}: the answer is not a JSON object")
    return value
