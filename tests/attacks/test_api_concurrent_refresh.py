"""Concurrent refresh with one token: exactly one request wins the rotation.

ASVS 10.4.5, RFC 9700 §4.14.2: a refresh token is single use even when it is presented
by several requests at once. On PostgreSQL the requests run as real concurrent
transactions on separate pooled connections; the store's compare-and-set decides.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest

from tests.helpers import signed_up


@pytest.mark.parametrize("racers", [2, 8], ids=["2-racers", "8-racers"])
async def test_one_refresh_token_rotates_once_under_concurrency(
    client: httpx.AsyncClient, racers: int
) -> None:
    pair = await signed_up(client, "racer@example.com")
    body = {"refresh_token": pair["refresh_token"]}

    responses = await asyncio.gather(
        *(client.post("/auth/refresh", json=body) for _ in range(racers))
    )

    assert Counter(r.status_code for r in responses) == {200: 1, 401: racers - 1}
