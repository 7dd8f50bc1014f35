"""The ``/tasks/{task_id}/attachments`` routes: upload, list, download, delete.

Each route declares its rule of :mod:`bastion_tasks.policies` like the task routes:
changing the files of a task (upload, delete) needs EDIT, reading them VIEW; a task
the caller may not see is 404. An attachment id that is not a UUID, or that belongs
to another task, is 404 too; the stored file is found by the key in its row, never by
anything in the request (OWASP File Upload Cheat Sheet; OWASP API1:2023).

Downloads are always ``attachment`` with the type detected at upload and
``X-Content-Type-Options: nosniff``, so a browser saves the file and never renders
it as a page of this origin (RFC 6266; OWASP "Unrestricted File Upload").
"""

# No ``from __future__ import annotations`` here: FastAPI must resolve the local
# aliases of the factory at definition time.

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Path, Request, Response
from starlette.responses import JSONResponse, StreamingResponse

from bastion.errors import NotFoundError
from bastion.fastapi import Authorized, Guard, problem, validation_problem
from bastion.uploads import (
    InsufficientStorageError,
    UnsupportedMediaTypeError,
    UploadError,
    UploadPolicy,
    UploadTooLargeError,
    content_disposition,
    served_type,
)
from bastion_tasks.attachment_service import (
    AttachmentOut,
    AttachmentService,
    TooManyAttachmentsError,
)
from bastion_tasks.policies import EDIT, VIEW, TaskResolver
from bastion_tasks.schemas import TaskOut
from bastion_tasks.services import TaskService

__all__ = ["UPLOAD_PATH", "attachment_body_limits", "attachments_router"]

UPLOAD_PATH = "/tasks/{task_id}/attachments"

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Invalid token"},
    403: {"description": "The caller may see the task but not change it"},
    404: {"description": "No such task or attachment, or a task the caller may not see"},
}
_UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "The file is larger than BASTION_ATTACHMENT_MAX_BYTES"},
    415: {"description": "The content (or the declared type) is not an allowed type"},
    422: {
        "description": (
            "Not exactly one part named file, an empty file, a declared type that "
            "disagrees with the content, or the task has its maximum of attachments"
        )
    },
    507: {
        "description": (
            "The file would take the task owner's attachments past "
            "BASTION_ATTACHMENT_QUOTA_BYTES (`insufficient-storage`)"
        )
    },
}
_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def attachment_body_limits(policy: UploadPolicy) -> dict[tuple[str, str], int]:
    """The body cap of the upload route, for ``BodyLimitMiddleware(overrides=...)``: the
    file cap plus room for the multipart framing; every other route keeps the default."""
    return {("POST", UPLOAD_PATH): policy.max_body_bytes}


def _attachment_id(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise NotFoundError("not found") from None


def _refused(request: Request, guard: Guard, exc: UploadError, user_id: UUID) -> JSONResponse:
    # A quota, like the size cap, is reached by honest use as well: no security event.
    over_a_limit = isinstance(exc, UploadTooLargeError | InsufficientStorageError)
    if not over_a_limit:
        # A file that is not what it claims to be, or a body built to confuse the parser,
        # is worth a line in the security log (the size cap has its own 413 trail).
        guard.events.emit_soon(
            "upload_refused",
            context=guard.context(request),
            user_id=str(user_id),
            details=exc.reason,
            severity="low",
        )
    if over_a_limit or isinstance(exc, UnsupportedMediaTypeError):
        # Refused before the body was read to its end: the rest is not worth reading.
        headers = {"Connection": "close"} if over_a_limit else None
        return problem(request, exc.status, exc.code, exc.title, exc.reason, headers=headers)
    return validation_problem(request, [{"loc": ["body", "file"], "msg": exc.reason}])


def attachments_router(
    guard: Guard, tasks: TaskService, attachments: AttachmentService
) -> APIRouter:
    router = APIRouter(prefix=UPLOAD_PATH, tags=["attachments"], responses=_ERRORS)
    resolver = TaskResolver(tasks)
    CanView = Annotated[Authorized[TaskOut], guard.require_object(VIEW, resolver)]  # noqa: N806
    CanEdit = Annotated[Authorized[TaskOut], guard.require_object(EDIT, resolver)]  # noqa: N806
    AttachmentId = Annotated[str, Path(description="The attachment's id (a UUID)")]  # noqa: N806
    policy = attachments.policy
    served = {t: {"schema": {"type": "string", "format": "binary"}} for t in sorted(policy.types)}

    @router.post(
        "",
        status_code=201,
        response_model=AttachmentOut,
        summary="Attach a file to the task (multipart field file)",
        description=(
            f"One part named `file`, at most {policy.max_bytes} bytes; its type is decided "
            f"from its bytes and must be one of {', '.join(sorted(policy.types))}. A declared "
            f"part type other than that (or application/octet-stream) is refused. At most "
            f"{attachments.max_per_task} attachments per task, and at most "
            f"{attachments.quota_bytes} bytes of attachments on the tasks of one owner "
            f"(the task's owner is charged, whoever uploads)."
        ),
        responses=_UPLOAD_ERRORS,
        openapi_extra=_UPLOAD_BODY,
    )
    async def upload_attachment(task_id: UUID, request: Request, access: CanEdit) -> Any:
        user_id = access.principal.user_id
        try:
            return await attachments.receive(
                task_id, user_id, request.stream(), request.headers.get("content-type")
            )
        except TooManyAttachmentsError as exc:
            return validation_problem(request, [{"loc": ["body", "file"], "msg": str(exc)}])
        except UploadError as exc:
            return _refused(request, guard, exc, user_id)

    @router.get(
        "",
        response_model=list[AttachmentOut],
        summary="The files attached to the task, oldest first",
    )
    async def list_attachments(task_id: UUID, access: CanView) -> list[AttachmentOut]:
        return await attachments.for_task(task_id)

    @router.get(
        "/{attachment_id}",
        response_class=Response,
        summary="Download an attachment (always as a file to save, never inline)",
        responses={
            200: {"description": "The file's bytes, with its detected type", "content": served}
        },
    )
    async def download_attachment(
        task_id: UUID, attachment_id: AttachmentId, access: CanView
    ) -> Response:
        stored = await attachments.find(task_id, _attachment_id(attachment_id))
        chunks = await attachments.open(stored)
        info = stored.attachment
        return StreamingResponse(
            chunks,
            media_type=served_type(info.content_type),
            headers={
                "Content-Disposition": content_disposition(info.filename),
                "Content-Length": str(info.size),
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "no-store",
            },
        )

    @router.delete("/{attachment_id}", status_code=204, summary="Delete an attachment")
    async def delete_attachment(
        task_id: UUID, attachment_id: AttachmentId, access: CanEdit
    ) -> Response:
        await attachments.remove(task_id, _attachment_id(attachment_id))
        return Response(status_code=204)

    return router
