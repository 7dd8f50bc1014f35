"""Attack: fill the server's disk through attachments (OWASP API4:2023).

One account may keep uploading within the rate limit (10 MiB files, 10 writes a
minute: about 100 MB a minute). The tasks of one owner hold at most
``BASTION_ATTACHMENT_QUOTA_BYTES`` of files, whoever uploads them: past it an upload is a
507 ``insufficient-storage`` problem, nothing of it is kept (no row, no file, no
``.part``), racing uploads cannot pass the quota together, and deleting a file makes
room again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.conftest import AppMaker
from tests.helpers import user
from tests.samples import attachment_rows, part, stored_files, upload, upload_raw

KIB = 1024
QUOTA = 10 * KIB
FILE = b"a" * (4 * KIB)  # plain text: two fit in the quota, a third does not


@pytest.fixture
async def quota_app(make: AppMaker) -> Any:
    return await make.app(attachment_quota_bytes=QUOTA, attachment_max_bytes=64 * KIB)


@pytest.fixture
async def client(make: AppMaker, quota_app: Any) -> httpx.AsyncClient:
    return await make.client(quota_app)


@pytest.fixture
async def owner(client: httpx.AsyncClient, quota_app: Any) -> dict[str, Any]:
    return await user(client, quota_app, "owner@example.com")


async def _task(client: httpx.AsyncClient, auth: dict[str, str], title: str = "t") -> str:
    response = await client.post("/tasks", json={"title": title}, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _refused_for_quota(response: httpx.Response) -> bool:
    return (
        response.status_code == 507
        and response.headers["content-type"] == "application/problem+json"
        and response.json()["type"] == "/problems/insufficient-storage"
    )


async def _stored_bytes(app: Any) -> int:
    return sum(int(row["size"]) for row in await attachment_rows(app))


def _partial_files(app: Any) -> list[str]:
    return [path.name for path in stored_files(app) if path.name.endswith(".part")]


async def test_uploads_past_the_owners_quota_are_refused_and_leave_nothing(
    client: httpx.AsyncClient, quota_app: Any, owner: dict[str, Any]
) -> None:
    first, second = await _task(client, owner["auth"]), await _task(client, owner["auth"])
    accepted = [
        await upload(client, first, owner["auth"], FILE, "1.txt"),
        await upload(client, second, owner["auth"], FILE, "2.txt"),
    ]

    refused = await upload(client, first, owner["auth"], FILE, "3.txt")

    assert [response.status_code for response in accepted] == [201, 201]
    assert _refused_for_quota(refused), refused.text
    assert len(await attachment_rows(quota_app)) == 2
    assert len(stored_files(quota_app)) == 2
    assert await _stored_bytes(quota_app) <= QUOTA


async def test_deleting_an_attachment_makes_room_again(
    client: httpx.AsyncClient, quota_app: Any, owner: dict[str, Any]
) -> None:
    task_id = await _task(client, owner["auth"])
    kept = [(await upload(client, task_id, owner["auth"], FILE)).json() for _ in range(2)]
    assert _refused_for_quota(await upload(client, task_id, owner["auth"], FILE))

    deleted = await client.delete(
        f"/tasks/{task_id}/attachments/{kept[0]['id']}", headers=owner["auth"]
    )
    again = await upload(client, task_id, owner["auth"], FILE)

    assert deleted.status_code == 204
    assert again.status_code == 201, again.text
    assert await _stored_bytes(quota_app) == 2 * len(FILE)


async def test_a_file_that_passes_the_space_left_is_cut_off_and_leaves_nothing(
    client: httpx.AsyncClient, quota_app: Any, owner: dict[str, Any]
) -> None:
    task_id = await _task(client, owner["auth"])
    assert (await upload(client, task_id, owner["auth"], FILE)).status_code == 201
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        # Under the 64 KiB file cap for long, over the 6 KiB left of the quota at once.
        nonlocal sent
        yield part(b"", filename="endless.txt")[:-2]
        while True:
            sent += 1
            yield b"a" * 4096

    response = await upload_raw(client, task_id, owner["auth"], endless())

    assert _refused_for_quota(response), response.text
    assert sent <= 4
    assert len(await attachment_rows(quota_app)) == 1
    assert len(stored_files(quota_app)) == 1
    assert _partial_files(quota_app) == []


async def test_an_editor_fills_the_owners_quota_not_its_own(
    client: httpx.AsyncClient, quota_app: Any, owner: dict[str, Any]
) -> None:
    editor = await user(client, quota_app, "editor@example.com")
    shared = await _task(client, owner["auth"])
    granted = await client.post(
        f"/tasks/{shared}/shares",
        json={"email": "editor@example.com", "permission": "edit"},
        headers=owner["auth"],
    )
    assert granted.status_code == 201, granted.text
    for _ in range(2):
        assert (await upload(client, shared, editor["auth"], FILE)).status_code == 201

    by_editor = await upload(client, shared, editor["auth"], FILE)
    by_owner = await upload(client, await _task(client, owner["auth"]), owner["auth"], FILE)
    to_own_task = await upload(client, await _task(client, editor["auth"]), editor["auth"], FILE)

    assert _refused_for_quota(by_editor)
    assert _refused_for_quota(by_owner)
    assert to_own_task.status_code == 201


async def test_racing_uploads_cannot_pass_the_quota_together(
    client: httpx.AsyncClient, quota_app: Any, owner: dict[str, Any]
) -> None:
    tasks = [await _task(client, owner["auth"], f"t{i}") for i in range(3)]
    rounds = []
    for _ in range(3):  # a race lost by chance once is still lost in one of three rounds
        responses = await asyncio.gather(
            *[upload(client, tasks[i % 3], owner["auth"], FILE, f"{i}.txt") for i in range(8)]
        )
        rounds.append((sorted(r.status_code for r in responses), await _stored_bytes(quota_app)))
        for response in responses:
            if response.status_code == 201:
                task_id = tasks[responses.index(response) % 3]
                url = f"/tasks/{task_id}/attachments/{response.json()['id']}"
                assert (await client.delete(url, headers=owner["auth"])).status_code == 204

    assert rounds == [([201, 201] + [507] * 6, 2 * len(FILE))] * 3
    assert stored_files(quota_app) == []


async def test_the_quota_refusal_is_documented(quota_app: Any) -> None:
    responses = quota_app.openapi()["paths"]["/tasks/{task_id}/attachments"]["post"]["responses"]

    assert "application/problem+json" in responses["507"]["content"]
