"""The KPI report's covering index on seat_events (issue 17).

Revision ID: 0003_seat_events_report_index
Revises: 0002_pg_unbounded_text

The report's one LEAD pass over the seat events wants them by (seat, id): this index gives
that order without a sort and every column the pass reads without a table lookup (2.2 s ->
0.25 s per 344 k events on SQLite). Created only when missing: a database that ran the
report branch's create-on-open before migrations existed may have it already.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_seat_events_report_index"
down_revision = "0002_pg_unbounded_text"
branch_labels = None
depends_on = None

_NAME = "ix_seat_events_report"
_COLUMNS = ["seat", "id", "at", "status", "reason", "call_id"]


def upgrade() -> None:
    have = {i["name"] for i in sa.inspect(op.get_bind()).get_indexes("seat_events")}
    if _NAME not in have:
        op.create_index(_NAME, "seat_events", _COLUMNS)


def downgrade() -> None:
    op.drop_index(_NAME, table_name="seat_events")
