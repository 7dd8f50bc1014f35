"""Security event indexes for reading the log newest first, filtered and paged.

``GET /admin/security/events`` and ``bastion events tail`` read in (timestamp, id) order,
alone or with one equality filter (event type, user, IP address). Each index is the filter
column followed by (timestamp, id), so a page is one range scan from its cursor, with no
sort. The single-column indexes of 0001 are prefixes of the new ones and go, as does the
(event_type, timestamp) index that lacked the id: an event log is written far more often
than it is read, and every index costs each write.

Revision ID: 0006
Revises: 0005
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_NEW = {
    "ix_security_events_time_id": ["timestamp", "id"],
    "ix_security_events_type_time_id": ["event_type", "timestamp", "id"],
    "ix_security_events_user_time_id": ["user_id", "timestamp", "id"],
    "ix_security_events_ip_time_id": ["ip_address", "timestamp", "id"],
}
_OLD = {
    "ix_security_events_timestamp": ["timestamp"],
    "ix_security_events_type_time": ["event_type", "timestamp"],
    "ix_security_events_user_id": ["user_id"],
    "ix_security_events_ip_address": ["ip_address"],
}


def upgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        for name in _OLD:
            batch_op.drop_index(name)
        for name, columns in _NEW.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("security_events", schema=None) as batch_op:
        for name in _NEW:
            batch_op.drop_index(name)
        for name, columns in _OLD.items():
            batch_op.create_index(name, columns, unique=False)
