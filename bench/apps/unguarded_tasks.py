"""(5) The baseline of the task service's ``GET /tasks/{id}``: the same read with no guard.

The handler reads the task through the service's own ``TaskService.find`` (the one
statement the service's resolver runs: the task and the caller's share of it), on an
engine made by the same ``create_engine`` as the service's stores (``pool_pre_ping``,
connect timeout), and answers with the same response model, ``TaskOut``; 404 for no
such task. What it leaves out is everything the guard does: the caller is fixed
(``BENCH_USER_ID``, the owner of the tasks the harness seeds) instead of read from a
token. Database: ``BENCH_DATABASE_URL``, the service's PostgreSQL database.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from uuid import UUID

from fastapi import FastAPI, HTTPException

from bastion.stores.sql import create_engine
from bastion_tasks.schemas import TaskOut
from bastion_tasks.services import TaskService


def create() -> FastAPI:
    engine = create_engine(os.environ["BENCH_DATABASE_URL"])
    tasks = TaskService(engine)
    caller = UUID(os.environ["BENCH_USER_ID"])

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/tasks/{task_id}", response_model=TaskOut)
    async def get_task(task_id: UUID) -> TaskOut:
        found = await tasks.find(task_id, caller)
        if found is None:
            raise HTTPException(status_code=404)
        return found[0]

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
