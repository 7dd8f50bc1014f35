"""``create_app(settings)``: the Bastion task service, assembled from the public security API."""

from __future__ import annotations

from fastapi import FastAPI

from bastion import __version__
from bastion.clock import Clock
from bastion.fastapi import install
from bastion_tasks.attachment_service import attachment_service, upload_policy
from bastion_tasks.attachments import attachment_body_limits, attachments_router
from bastion_tasks.routes import tasks_router
from bastion_tasks.services import TaskService
from bastion_tasks.settings import TaskSettings

__all__ = ["create_app", "create_app_from_env"]


def create_app(settings: TaskSettings | None = None, *, clock: Clock | None = None) -> FastAPI:
    """Build the service; raises ConfigurationError on an insecure production setting."""
    settings = settings or TaskSettings()
    app = FastAPI(title="Bastion task service", version=__version__, debug=False)
    # The service's database is migrated by ``bastion migrate`` (``serve`` does it on SQLite).
    bastion = install(
        app,
        settings,
        clock=clock,
        migrate=False,
        body_limits=attachment_body_limits(upload_policy(settings)),  # the upload route only
    )
    engine = bastion.security.stores.engine
    if engine is None:
        raise ValueError("the task service needs a SQL database (BASTION_DATABASE_URL)")
    guard = bastion.guard
    tasks = TaskService(engine, clock=clock)
    # A share with an address that had no account waits until the address is verified.
    bastion.security.lifecycle.on_email_verified(tasks.activate_pending_shares)
    bastions_routes = len(app.router.routes)
    app.include_router(tasks_router(guard, tasks))
    attachments = attachment_service(settings, engine, clock=clock)
    tasks.on_delete(attachments.on_task_delete)  # a deleted task's files go with it
    app.state.attachments = attachments
    app.include_router(attachments_router(guard, tasks, attachments))
    # The task routes carry the service's traffic and FastAPI tries routes in order, so
    # they go first (no path of theirs is one of Bastion's: the order decides nothing else).
    routes = app.router.routes
    routes[:] = routes[bastions_routes:] + routes[:bastions_routes]
    return app


def create_app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory``: settings from the environment."""
    return create_app(TaskSettings())
