"""(4) A peer: the handler behind slowapi's limit with Redis storage (the ``limits``
library's fixed window, through the synchronous redis client). Runs in the peers'
virtualenv (bench/peers); keys under ``BENCH_REDIS_PREFIX``.
"""

import os
from typing import Any

from fastapi import FastAPI, Request
from item import ITEM
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.util import get_remote_address

limiter = Limiter(
    key_func=get_remote_address,
    storage_uri=os.environ["BENCH_REDIS_URL"],
    key_prefix=os.environ["BENCH_REDIS_PREFIX"],
)
app = FastAPI()
app.state.limiter = limiter
app.add_exception_handler(RateLimitExceeded, _rate_limit_exceeded_handler)  # type: ignore[arg-type]


@app.get("/item")
@limiter.limit("1000000000/minute")
async def item(request: Request) -> dict[str, Any]:
    return ITEM


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
