"""The OpenAPI schema and the documentation pages, as declared public routes.

FastAPI's own docs routes are plain Starlette routes that declare nothing; serving
them from here puts them in the route table like every other route.
"""

# No ``from __future__ import annotations`` here (FastAPI resolves signatures at runtime).

from typing import Any

from fastapi import APIRouter, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse, JSONResponse

from bastion.fastapi.dependencies import Guard

__all__ = ["docs_router"]


def docs_router(guard: Guard, *, title: str) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    public = [guard.public("API documentation (only when BASTION_DOCS_ENABLED)")]

    @router.get("/openapi.json", dependencies=public)
    async def openapi(request: Request) -> Any:
        return JSONResponse(request.app.openapi())

    @router.get("/docs", dependencies=public)
    async def swagger() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url="/docs/oauth2-redirect",
            swagger_ui_parameters={"persistAuthorization": False},
        )

    @router.get("/docs/oauth2-redirect", dependencies=public)
    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @router.get("/redoc", dependencies=public)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{title} - ReDoc")

    return router
