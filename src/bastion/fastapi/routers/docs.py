"""The OpenAPI schema and its documentation pages, served offline, as declared routes.

Swagger UI and ReDoc come from the installed ``fastapi_offline`` package (its
``static/`` files only) and the pages and their start-up script are our own files, so
the docs load nothing from another origin and run no inline script: their CSP
(RequestContextMiddleware) is ``script-src 'self'`` with no ``'unsafe-inline'``
(OWASP CSP Cheat Sheet; ASVS 3.4.3). The assets are an explicit allowlist of file
names under ``/docs/assets/``: no folder is served, so no path reaches another file.

``access`` (BASTION_DOCS_ACCESS) decides who may read every one of these routes:
``public``, or ``admin``: a signed-in account whose role holds ADMIN, through the
guard like any other route (OWASP API9:2023: restrict the docs in production).
"""

# No ``from __future__ import annotations`` here (FastAPI resolves signatures at runtime).

import functools
import html
from importlib import resources
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse

from bastion.authz import Permission
from bastion.fastapi.dependencies import Guard

__all__ = ["DOCS_ASSETS", "DocsAccess", "docs_router"]

DocsAccess = Literal["public", "admin"]
_JS = "text/javascript; charset=utf-8"
_CSS = "text/css; charset=utf-8"
# Every file /docs/assets/ serves: its package, its folder and its media type.
DOCS_ASSETS: dict[str, tuple[str, str, str]] = {
    "swagger-ui-bundle.js": ("fastapi_offline", "static", _JS),
    "swagger-ui.css": ("fastapi_offline", "static", _CSS),
    "redoc.standalone.js": ("fastapi_offline", "static", _JS),
    "favicon.png": ("fastapi_offline", "static", "image/png"),
    "swagger-init.js": ("bastion.fastapi", "assets", _JS),
    "oauth2-redirect.js": ("bastion.fastapi", "assets", _JS),
    "docs.css": ("bastion.fastapi", "assets", _CSS),
}
# The assets change only with an upgrade of the package or of this service.
_ASSET_MAX_AGE = 86_400


# The one remote load in the vendored bundles: the Redocly logo in ReDoc's menu footer.
# It is served as an empty inline image, so the page loads nothing from another origin
# (and the CSP reports nothing); should a new ReDoc move it, the CSP still blocks it.
_REMOTE_LOADS: dict[str, tuple[bytes, bytes]] = {
    "redoc.standalone.js": (
        b"https://cdn.redoc.ly/redoc/logo-mini.svg",
        b"data:image/svg+xml,%3Csvg%20xmlns='http://www.w3.org/2000/svg'/%3E",
    ),
}


@functools.cache
def _read(package: str, folder: str, name: str) -> bytes:
    content = resources.files(package).joinpath(folder, name).read_bytes()
    if name in _REMOTE_LOADS:
        remote, local = _REMOTE_LOADS[name]
        content = content.replace(remote, local)
    return content


def _page(name: str, title: str) -> HTMLResponse:
    text = _read("bastion.fastapi", "assets", name).decode("utf-8")
    # The pages hold no data, but behind ``admin`` no shared cache may keep them.
    return HTMLResponse(
        text.replace("{{title}}", html.escape(title)), headers={"Cache-Control": "no-store"}
    )


def docs_router(guard: Guard, *, title: str, access: DocsAccess = "public") -> APIRouter:
    router = APIRouter(include_in_schema=False)
    if access == "public":
        declared = [guard.public("API documentation (BASTION_DOCS_ACCESS=public)")]
    else:
        declared = [guard.require(Permission.ADMIN)]
    cache = f"{'public' if access == 'public' else 'private'}, max-age={_ASSET_MAX_AGE}"

    @router.get("/openapi.json", dependencies=declared)
    async def openapi(request: Request) -> Any:
        return JSONResponse(request.app.openapi())

    @router.get("/docs", dependencies=declared)
    async def swagger() -> HTMLResponse:
        return _page("docs-swagger.html", title)

    @router.get("/docs/oauth2-redirect", dependencies=declared)
    async def swagger_redirect() -> HTMLResponse:
        return _page("docs-oauth2-redirect.html", title)

    @router.get("/redoc", dependencies=declared)
    async def redoc() -> HTMLResponse:
        return _page("docs-redoc.html", title)

    @router.get("/docs/assets/{name}", dependencies=declared)
    async def asset(name: str) -> Response:
        if name not in DOCS_ASSETS:
            raise HTTPException(404, "No such documentation asset.")
        package, folder, media_type = DOCS_ASSETS[name]
        return Response(
            _read(package, folder, name), media_type=media_type, headers={"Cache-Control": cache}
        )

    return router
