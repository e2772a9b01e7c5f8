"""The supervisors' audit log (issue 13, docs/supervision.md).

Revision ID: 0004_supervision_audit
Revises: 0003_seat_events_report_index

One row per supervisor action (listen, whisper, barge, stop, forced states), accepted or
refused: who, what, whom, when. Text columns are unbounded on PostgreSQL as since 0002
(PostgreSQL refuses a longer value where SQLite stores it; one long value must not fail the
audit write). Created only when missing: a database opened by a daemon of the supervision
branch before this migration existed may have it already.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_supervision_audit"
down_revision = "0003_seat_events_report_index"
branch_labels = None
depends_on = None

_TABLE = "supervision_audit"


def upgrade() -> None:
    bind = op.get_bind()
    if sa.inspect(bind).has_table(_TABLE):
        return
    pg = bind.dialect.name == "postgresql"

    def text(length: int) -> sa.String:
        return sa.String() if pg else sa.String(length=length)

    op.create_table(
        _TABLE,
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("supervisor", text(64), nullable=False),
        sa.Column("action", text(16), nullable=False),
        sa.Column("seat", text(32), nullable=False),
        sa.Column("call_id", text(128), nullable=True),
        sa.Column("result", text(16), nullable=False),
        sa.Column("code", text(32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("request_id", text(64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_supervision_audit_at", _TABLE, ["at"])
    op.create_index("ix_supervision_audit_supervisor", _TABLE, ["supervisor"])
    op.create_index("ix_supervision_audit_seat", _TABLE, ["seat"])


def downgrade() -> None:
    op.drop_table(_TABLE)
