"""The /tasks/{id}/attachments routes: upload, list, download, delete, on every backend."""

from __future__ import annotations

import asyncio
import stat
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest

from tests import samples
from tests.conftest import AppMaker
from tests.helpers import user
from tests.samples import attachment_rows, multipart, part, stored_files, upload, upload_raw


@pytest.fixture
async def owner(client: httpx.AsyncClient, app: Any) -> dict[str, Any]:
    return await user(client, app, "owner@example.com")


async def _task(client: httpx.AsyncClient, auth: dict[str, str], title: str = "A task") -> str:
    response = await client.post("/tasks", json={"title": title}, headers=auth)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


@pytest.fixture
async def task_id(client: httpx.AsyncClient, owner: dict[str, Any]) -> str:
    return await _task(client, owner["auth"])


async def _attach(
    client: httpx.AsyncClient, task_id: str, auth: dict[str, str], data: bytes, **kwargs: Any
) -> dict[str, Any]:
    response = await upload(client, task_id, auth, data, **kwargs)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _share(
    client: httpx.AsyncClient, task_id: str, owner: dict[str, Any], email: str, permission: str
) -> None:
    response = await client.post(
        f"/tasks/{task_id}/shares",
        json={"email": email, "permission": permission},
        headers=owner["auth"],
    )
    assert response.status_code == 201, response.text


# -- the round trip --------------------------------------------------------------------


async def test_an_upload_answers_201_with_the_attachment(
    client: httpx.AsyncClient, owner: dict[str, Any], task_id: str
) -> None:
    data = samples.png()

    response = await upload(client, task_id, owner["auth"], data, "photo.png", "image/png")

    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "filename", "content_type", "size", "created_at"}
    assert UUID(body["id"]).version == 4
    assert body["filename"] == "photo.png"
    assert body["content_type"] == "image/png"
    assert body["size"] == len(data)
    assert body["created_at"].endswith("Z")


async def test_the_list_shows_the_task_s_attachments_oldest_first(
    client: httpx.AsyncClient, owner: dict[str, Any], task_id: str
) -> None:
    first = await _attach(client, task_id, owner["auth"], samples.pdf(), filename="a.pdf")
    second = await _attach(client, task_id, owner["auth"], samples.text(), filename="b.txt")

    response = await client.get(f"/tasks/{task_id}/attachments", headers=owner["auth"])

    assert response.status_code == 200
    assert response.json() == [first, second]


@pytest.mark.parametrize("kind", list(samples.SAMPLES))
async def test_a_download_returns_the_bytes_with_the_detected_type(
    client: httpx.AsyncClient, owner: dict[str, Any], task_id: str, kind: str
) -> None:
    data = samples.SAMPLES[kind]()
    # No declared type: the type comes from the bytes alone.
    attachment = await _attach(client, task_id, owner["auth"], data, filename="no-extension")

    response = await client.get(
        f"/tasks/{task_id}/attachments/{attachment['id']}", headers=owner["auth"]
    )

    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == (
        "text/plain; charset=utf-8" if kind == "text/plain" else kind
    )


async def test_a_download_is_a_file_to_save_never_a_page(
    client: httpx.AsyncClient, owner: dict[str, Any], task_id: str
) -> None:
    data = samples.text()
    attachment = await _attach(client, task_id, owner["auth"], data, filename="Résumé 東京.txt")

    response = await client.get(
        f"/tasks/{task_id}/attachments/{attachment['id']}", headers=owner["auth"]
    )

    headers = response.headers
    assert headers["content-disposition"] == (
        'attachment; filename="Resume __.txt"; '
        "filename*=UTF-8''R%C3%A9sum%C3%A9%20%E6%9D%B1%E4%BA%AC.txt"
    )
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == str(len(data))
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"
    assert headers["content-security-policy"].startswith("default-src 'none'")


async def test_a_delete_removes_the_row_and_the_file(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    attachment = await _attach(client, task_id, owner["auth"], samples.gif())
    url = f"/tasks/{task_id}/attachments/{attachment['id']}"

    response = await client.delete(url, headers=owner["auth"])

    assert response.status_code == 204
    assert (await client.get(url, headers=owner["auth"])).status_code == 404
    assert (await client.delete(url, headers=owner["auth"])).status_code == 404
    assert await attachment_rows(app) == []
    assert stored_files(app) == []


async def test_the_file_is_stored_under_a_generated_key_readable_by_the_service_only(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    attachment = await _attach(client, task_id, owner["auth"], samples.jpeg(), filename="me.jpg")

    [row] = await attachment_rows(app)
    [path] = stored_files(app)
    assert str(row["id"]).replace("-", "") == attachment["id"].replace("-", "")
    assert str(row["created_by"]).replace("-", "") == owner["id"].replace("-", "")
    assert path.name == row["storage_key"]
    assert len(path.name) == 32
    assert "me" not in path.name
    assert path.read_bytes() == samples.jpeg()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


async def test_deleting_the_task_removes_its_files_from_disk(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    other_task = await _task(client, owner["auth"], "kept")
    await _attach(client, task_id, owner["auth"], samples.png())
    await _attach(client, task_id, owner["auth"], samples.pdf())
    kept = await _attach(client, other_task, owner["auth"], samples.text())
    assert len(stored_files(app)) == 3

    response = await client.delete(f"/tasks/{task_id}", headers=owner["auth"])

    assert response.status_code == 204
    rows = await attachment_rows(app)
    assert [str(r["id"]).replace("-", "") for r in rows] == [kept["id"].replace("-", "")]
    assert [p.name for p in stored_files(app)] == [rows[0]["storage_key"]]


async def test_a_refused_task_delete_keeps_the_files(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    editor = await user(client, app, "editor@example.com")
    await _share(client, task_id, owner, editor["email"], "edit")
    await _attach(client, task_id, owner["auth"], samples.png())

    response = await client.delete(f"/tasks/{task_id}", headers=editor["auth"])

    assert response.status_code == 403
    assert len(await attachment_rows(app)) == 1
    assert len(stored_files(app)) == 1


# -- limits ----------------------------------------------------------------------------


@pytest.fixture
async def small(make: AppMaker) -> tuple[Any, httpx.AsyncClient, dict[str, Any], str]:
    """An app whose attachments may be 1 KiB at most, a member and a task."""
    app = await make.app(attachment_max_bytes=1024)
    client = await make.client(app)
    member = await user(client, app, "small@example.com")
    return app, client, member, await _task(client, member["auth"])


async def test_a_file_of_exactly_the_cap_is_accepted(small: Any) -> None:
    _, client, member, task_id = small

    response = await upload(client, task_id, member["auth"], b"a" * 1024, "cap.txt")

    assert response.status_code == 201
    assert response.json()["size"] == 1024


async def test_one_byte_over_the_cap_is_413_and_nothing_is_kept(small: Any) -> None:
    app, client, member, task_id = small

    response = await upload(client, task_id, member["auth"], b"a" * 1025, "over.txt")

    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "/problems/payload-too-large"
    assert await attachment_rows(app) == []
    assert stored_files(app) == []


async def test_a_chunked_body_is_cut_off_at_the_cap_while_it_streams(small: Any) -> None:
    app, client, member, task_id = small
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield part(b"", filename="stream.txt")[:-2]  # the part's headers, then its data
        for _ in range(1000):  # 1 MiB in all, if the server kept reading
            sent += 1
            yield b"a" * 1024

    response = await upload_raw(client, task_id, member["auth"], body())

    assert response.status_code == 413
    assert sent <= 2
    assert await attachment_rows(app) == []
    assert stored_files(app) == []


async def test_a_declared_length_over_the_route_cap_is_refused_before_reading(
    small: Any,
) -> None:
    app, client, member, task_id = small
    body = multipart(part(b"a" * 200_000))

    response = await upload_raw(client, task_id, member["auth"], body)

    assert response.status_code == 413
    assert "66560 bytes" in response.json()["detail"]  # 1 KiB + the multipart allowance
    assert stored_files(app) == []


async def test_other_routes_keep_the_one_mib_body_cap(
    client: httpx.AsyncClient, owner: dict[str, Any], task_id: str
) -> None:
    big = b'{"title": "' + b"a" * (1024 * 1024) + b'"}'
    headers = {**owner["auth"], "Content-Type": "application/json"}

    create = await client.post("/tasks", content=big, headers=headers)
    change = await client.patch(f"/tasks/{task_id}", content=big, headers=headers)

    assert create.status_code == 413
    assert change.status_code == 413


async def test_a_task_takes_at_most_20_attachments(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    for index in range(20):
        await _attach(client, task_id, owner["auth"], b"note %d\n" % index)

    response = await upload(client, task_id, owner["auth"], samples.text())

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"loc": ["body", "file"], "msg": "a task has at most 20 attachments"}
    ]
    assert len(await attachment_rows(app)) == 20
    assert len(stored_files(app)) == 20


async def test_the_cap_holds_in_the_insert_even_past_the_early_check(
    client: httpx.AsyncClient,
    app: Any,
    owner: dict[str, Any],
    task_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for index in range(20):
        await _attach(client, task_id, owner["auth"], b"note %d\n" % index)
    service = app.state.attachments

    async def nothing_yet(task_id: Any) -> int:
        return 0

    monkeypatch.setattr(service, "count", nothing_yet)

    response = await upload(client, task_id, owner["auth"], samples.text())

    assert response.status_code == 422
    assert len(await attachment_rows(app)) == 20
    assert len(stored_files(app)) == 20


async def test_racing_uploads_cannot_pass_the_attachment_cap(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    answers = await asyncio.gather(
        *[upload(client, task_id, owner["auth"], b"race %d\n" % i) for i in range(25)]
    )

    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201] * 20 + [422] * 5
    assert len(await attachment_rows(app)) == 20
    assert len(stored_files(app)) == 20


@pytest.mark.parametrize(
    ("method", "suffix", "route_class"),
    [("POST", "", "writes"), ("GET", "", "reads"), ("DELETE", "/{a}", "deletes")],
    ids=["upload", "list", "delete"],
)
async def test_the_routes_fall_into_the_rate_classes_of_their_methods(
    make: AppMaker, method: str, suffix: str, route_class: str
) -> None:
    app = await make.app(rate_limit_enabled=True)
    client = await make.client(app)
    member = await user(client, app, "limited@example.com")
    task_id = await _task(client, member["auth"])
    attachment = await _attach(client, task_id, member["auth"], samples.text())
    url = f"/tasks/{task_id}/attachments" + suffix.format(a=attachment["id"])
    files = {"file": ("a.txt", samples.text())} if method == "POST" else None

    response = await client.request(method, url, headers=member["auth"], files=files)

    assert response.status_code < 300
    assert f'"{route_class}";' in response.headers["ratelimit-policy"]


# -- who may do what -------------------------------------------------------------------


async def test_a_read_share_may_list_and_download_but_not_upload_or_delete(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    reader = await user(client, app, "reader@example.com")
    await _share(client, task_id, owner, reader["email"], "read")
    attachment = await _attach(client, task_id, owner["auth"], samples.pdf())
    url = f"/tasks/{task_id}/attachments"

    listed = await client.get(url, headers=reader["auth"])
    downloaded = await client.get(f"{url}/{attachment['id']}", headers=reader["auth"])
    uploaded = await upload(client, task_id, reader["auth"], samples.text())
    deleted = await client.delete(f"{url}/{attachment['id']}", headers=reader["auth"])

    assert listed.status_code == 200
    assert downloaded.status_code == 200
    assert downloaded.content == samples.pdf()
    assert uploaded.status_code == 403
    assert deleted.status_code == 403
    assert len(await attachment_rows(app)) == 1


async def test_a_viewer_with_an_edit_share_may_download_but_not_upload(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    viewer = await user(client, app, "viewer@example.com", "viewer")
    await _share(client, task_id, owner, viewer["email"], "edit")
    attachment = await _attach(client, task_id, owner["auth"], samples.text())

    downloaded = await client.get(
        f"/tasks/{task_id}/attachments/{attachment['id']}", headers=viewer["auth"]
    )
    uploaded = await upload(client, task_id, viewer["auth"], samples.text())

    assert downloaded.status_code == 200
    assert uploaded.status_code == 403
    assert len(stored_files(app)) == 1


async def test_an_edit_share_may_upload_and_delete(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    editor = await user(client, app, "editor@example.com")
    await _share(client, task_id, owner, editor["email"], "edit")

    attachment = await _attach(client, task_id, editor["auth"], samples.gif())
    deleted = await client.delete(
        f"/tasks/{task_id}/attachments/{attachment['id']}", headers=editor["auth"]
    )

    assert deleted.status_code == 204
    assert stored_files(app) == []


async def test_another_user_gets_404_on_every_attachment_route(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    stranger = await user(client, app, "stranger@example.com")
    attachment = await _attach(client, task_id, owner["auth"], samples.png())
    url = f"/tasks/{task_id}/attachments"

    answers = [
        await client.get(url, headers=stranger["auth"]),
        await client.get(f"{url}/{attachment['id']}", headers=stranger["auth"]),
        await client.delete(f"{url}/{attachment['id']}", headers=stranger["auth"]),
        await upload(client, task_id, stranger["auth"], samples.text()),
    ]

    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert all(a.json()["type"] == "/problems/not-found" for a in answers)
    assert len(await attachment_rows(app)) == 1
    assert len(stored_files(app)) == 1


async def test_an_attachment_of_another_task_is_not_found(
    client: httpx.AsyncClient, app: Any, owner: dict[str, Any], task_id: str
) -> None:
    other_task = await _task(client, owner["auth"], "other")
    attachment = await _attach(client, other_task, owner["auth"], samples.text())
    url = f"/tasks/{task_id}/attachments/{attachment['id']}"

    downloaded = await client.get(url, headers=owner["auth"])
    deleted = await client.delete(url, headers=owner["auth"])

    assert downloaded.status_code == 404
    assert deleted.status_code == 404
    assert len(stored_files(app)) == 1


async def test_anonymous_callers_are_refused_before_the_body_is_read(
    client: httpx.AsyncClient, app: Any, task_id: str
) -> None:
    response = await upload(client, task_id, {}, samples.png())

    assert response.status_code == 401
    assert stored_files(app) == []
