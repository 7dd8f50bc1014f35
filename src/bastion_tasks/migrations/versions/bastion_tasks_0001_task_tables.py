"""The task service's tables: tasks, their shares and their attachments.

The base of the task service's history (branch ``bastion_tasks``), on top of the core's
(``bastion_0001``, whose ``accounts`` the tasks belong to). It creates the task part of
the schema the former single history built at its revision 0010, so that a database
migrated by that history is stamped here without a change.

Revision ID: bastion_tasks_0001
Revises:
Depends on: bastion_0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bastion.stores.sql import UTCDateTime

revision: str = "bastion_tasks_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = ("bastion_tasks",)
depends_on: str | Sequence[str] | None = "bastion_0001"


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("due_date", UTCDateTime(timezone=True), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["accounts.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_tasks_owner_created", "tasks", ["owner_id", "created_at", "id"])

    op.create_table(
        "task_shares",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("permission", sa.String(length=8), nullable=False),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", "user_id"),
    )
    op.create_index("ix_task_shares_user_task", "task_shares", ["user_id", "task_id"])

    op.create_table(
        "task_attachments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("storage_key", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.Uuid(), nullable=False),
        sa.Column("created_at", UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_task_attachments_task_created", "task_attachments", ["task_id", "created_at", "id"]
    )


def downgrade() -> None:
    for table in ("task_attachments", "task_shares", "tasks"):
        op.drop_table(table)  # a table's indexes go with it
