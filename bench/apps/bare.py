"""(1) The ceiling: the handler in a bare FastAPI app, nothing in front of it."""

from typing import Any

from fastapi import FastAPI
from item import ITEM

app = FastAPI()


@app.get("/item")
async def item() -> dict[str, Any]:
    return ITEM


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
