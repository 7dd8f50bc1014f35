"""The API docs: offline assets, a CSP without inline or remote script, and who may read them.

A browser run (docs/api-docs.md) checks that Swagger UI and ReDoc render under this CSP;
these tests pin what the server sends.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from bastion.fastapi.routers.docs import DOCS_ASSETS
from tests.helpers import STRONG_PASSWORD, add_user, user

# The docs do not depend on the database: one backend is enough.
pytestmark = pytest.mark.parametrize("backend", ["sqlite"])

PAGES = ["/docs", "/redoc", "/docs/oauth2-redirect"]
DOCS_ROUTES = [*PAGES, "/openapi.json", "/docs/assets/swagger-ui-bundle.js"]
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
_SCRIPT = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
_REFERENCE = re.compile(r'\b(?:src|href)="([^"]+)"', re.IGNORECASE)


@pytest.mark.parametrize("path", PAGES, ids=PAGES)
async def test_docs_pages_run_no_inline_script(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    scripts = _SCRIPT.findall(response.text)
    assert scripts
    assert all('src="/docs/assets/' in attributes for attributes in scripts)


@pytest.mark.parametrize("path", PAGES, ids=PAGES)
async def test_docs_pages_load_only_our_own_assets(client: httpx.AsyncClient, path: str) -> None:
    page = await client.get(path)
    references = _REFERENCE.findall(page.text)

    answers = [await client.get(reference) for reference in references]

    assert references
    assert all(reference.startswith("/docs/assets/") for reference in references)
    assert [answer.status_code for answer in answers] == [200] * len(references)


@pytest.mark.parametrize("path", [*PAGES, "/docs/assets/swagger-init.js"])
async def test_docs_csp_admits_no_inline_script_and_no_other_origin(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)

    assert response.headers["content-security-policy"] == DOCS_CSP


async def test_the_rest_of_the_api_keeps_the_json_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")

    assert response.headers["content-security-policy"] == (
        "default-src 'none'; frame-ancestors 'none'"
    )


@pytest.mark.parametrize("name", sorted(DOCS_ASSETS))
async def test_each_asset_is_served_with_its_media_type(
    client: httpx.AsyncClient, name: str
) -> None:
    response = await client.get(f"/docs/assets/{name}")

    assert response.status_code == 200
    assert response.headers["content-type"] == DOCS_ASSETS[name][2]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "public, max-age=86400"
    assert response.content


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("link.js", id="a-file-of-the-assets-folder"),
        pytest.param("docs-swagger.html", id="a-page-template"),
        pytest.param("swagger-ui.css.map", id="a-sibling-name"),
        pytest.param("..%2Fdocs.py", id="encoded-traversal"),
        pytest.param("..%2F..%2F..%2Fconfig.py", id="deep-encoded-traversal"),
        pytest.param("%2e%2e%2f__init__.py", id="dot-encoded-traversal"),
        pytest.param("SWAGGER-UI.CSS", id="another-case"),
    ],
)
async def test_a_name_outside_the_allowlist_is_not_served(
    client: httpx.AsyncClient, name: str
) -> None:
    response = await client.get(f"/docs/assets/{name}")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_served_redoc_bundle_loads_no_remote_image(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs/assets/redoc.standalone.js")

    assert b"https://cdn.redoc.ly/" not in response.content
    assert b"data:image/svg+xml,%3Csvg%20xmlns=" in response.content


@pytest.mark.parametrize("path", DOCS_ROUTES, ids=DOCS_ROUTES)
@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"docs_access": "off"}, id="access-off"),
        pytest.param({"docs_enabled": False}, id="docs-disabled"),
        pytest.param({"docs_access": "admin", "docs_enabled": False}, id="disabled-wins"),
    ],
)
async def test_docs_turned_off_are_not_there(
    make: Any, path: str, overrides: dict[str, Any]
) -> None:
    app = await make.app(**overrides)
    client = await make.client(app)

    response = await client.get(path)

    assert response.status_code == 404


@pytest.mark.parametrize("path", DOCS_ROUTES, ids=DOCS_ROUTES)
async def test_admin_docs_refuse_an_anonymous_reader(make: Any, path: str) -> None:
    app = await make.app(docs_access="admin")
    client = await make.client(app)

    response = await client.get(path)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert "Bastion task service" not in response.text


@pytest.mark.parametrize("role", ["viewer", "member"])
@pytest.mark.parametrize("path", DOCS_ROUTES, ids=DOCS_ROUTES)
async def test_admin_docs_refuse_a_signed_in_non_admin(make: Any, path: str, role: str) -> None:
    app = await make.app(docs_access="admin")
    client = await make.client(app)
    caller = await user(client, app, f"{role}@example.com", role)

    response = await client.get(path, headers=caller["auth"])

    assert response.status_code == 403
    assert "Bastion task service" not in response.text


@pytest.mark.parametrize("path", DOCS_ROUTES, ids=DOCS_ROUTES)
async def test_admin_docs_serve_an_admin(make: Any, path: str) -> None:
    app = await make.app(docs_access="admin")
    client = await make.client(app)
    admin = await user(client, app, "admin@example.com", "admin")

    response = await client.get(path, headers=admin["auth"])

    assert response.status_code == 200


async def test_admin_docs_assets_are_kept_by_private_caches_only(make: Any) -> None:
    app = await make.app(docs_access="admin")
    client = await make.client(app)
    admin = await user(client, app, "admin@example.com", "admin")

    response = await client.get("/docs/assets/swagger-ui.css", headers=admin["auth"])

    assert response.headers["cache-control"] == "private, max-age=86400"


@pytest.mark.parametrize("path", PAGES, ids=PAGES)
async def test_docs_pages_are_not_stored(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)

    assert response.headers["cache-control"] == "no-store"


async def _cookie_login(client: httpx.AsyncClient, app: Any, email: str, role: str) -> None:
    """Sign ``client`` in with the cookie mode, as a browser does."""
    await add_user(app, email, role)
    csrf = (await client.get("/auth/csrf")).json()["csrf_token"]
    login = await client.post(
        "/auth/login",
        json={"email": email, "password": STRONG_PASSWORD},
        headers={"X-CSRF-Token": csrf},
    )
    assert login.status_code == 200, login.text


@pytest.mark.parametrize(("role", "status"), [("admin", 200), ("member", 403)])
async def test_admin_docs_open_in_a_browser_cookie_session(
    make: Any, role: str, status: int
) -> None:
    app = await make.app(docs_access="admin")
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("1.2.3.4", 1))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as browser:
        await _cookie_login(browser, app, f"{role}@example.com", role)

        page = await browser.get("/docs")
        script = await browser.get("/docs/assets/swagger-init.js")

    assert (page.status_code, script.status_code) == (status, status)
