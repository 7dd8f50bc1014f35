"""Who may do what to a task: the object rules the task routes declare.

A caller's *relation* to a task is ``owner``, or the permission of a share with it
(``edit`` or ``read``), or none. Each rule names the permission the caller's role must
hold and the relations that may act; a role holding ADMIN may act on every task.

========================  ==========  ======================
action                    permission  relations
========================  ==========  ======================
read a task               READ        owner, edit, read
change a task             UPDATE      owner, edit
delete a task             DELETE      owner
see a task's shares       READ        owner
share or unshare a task   UPDATE      owner
========================  ==========  ======================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from bastion.authz import ObjectRule, Permission, Subject
from bastion.fastapi import Resolved
from bastion_tasks.schemas import TaskOut

if TYPE_CHECKING:
    from bastion_tasks.services import TaskService

__all__ = ["DELETE", "EDIT", "MANAGE_SHARES", "VIEW", "VIEW_SHARES", "TaskResolver"]

OWNER, EDITOR, READER = "owner", "edit", "read"

VIEW = ObjectRule("read", Permission.READ, frozenset({OWNER, EDITOR, READER}))
EDIT = ObjectRule("change", Permission.UPDATE, frozenset({OWNER, EDITOR}))
DELETE = ObjectRule("delete", Permission.DELETE, frozenset({OWNER}))
VIEW_SHARES = ObjectRule("see the shares of", Permission.READ, frozenset({OWNER}))
MANAGE_SHARES = ObjectRule("share", Permission.UPDATE, frozenset({OWNER}))


class TaskResolver:
    """Loads the task of the path and the caller's relation to it, in one query."""

    what = "task"

    def __init__(self, tasks: TaskService) -> None:
        self._tasks = tasks

    async def __call__(self, subject: Subject, path_params: Mapping[str, Any]) -> Resolved[TaskOut]:
        try:
            task_id = UUID(str(path_params.get("task_id")))
        except ValueError:
            return Resolved(exists=False)
        found = await self._tasks.find(task_id, subject.user_id)
        if found is None:
            return Resolved(exists=False)
        task, relation = found
        return Resolved(exists=True, relation=relation, resource=task)
