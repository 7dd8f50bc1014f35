"""(2) The same handler behind the guard as a library user gets it: a plain FastAPI app,
``install(app, routers=())`` (the guard and its middleware, none of Bastion's routes), and
``GET /item`` needing the READ permission. Settings come from ``BASTION_*``; the harness
runs it on the embedded default, on guard-memory's SQLite file and keys, so that
guard-memory's token (this app has no login route) is valid here.

Beside ``guarded``, it shows what the task service's own routes and settings add.
"""

from typing import Annotated, Any

from fastapi import FastAPI
from item import ITEM

from bastion import Principal
from bastion.authz import Permission
from bastion.fastapi import install


def create() -> FastAPI:
    app = FastAPI()
    # The file is migrated already, with the task service's history (a start-up setting:
    # requests take the same path either way).
    bastion = install(app, routers=(), migrate=False)
    reader = Annotated[Principal, bastion.require(Permission.READ)]

    @app.get("/item")
    async def item(principal: reader) -> dict[str, Any]:
        return ITEM

    # No ``operations`` router here, so the probe the harness waits for is the app's own.
    @app.get("/healthz", dependencies=[bastion.public("the benchmark waits for it")])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
