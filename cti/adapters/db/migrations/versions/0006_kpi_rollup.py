"""The KPI report's per-day roll-up (issue 17): the table ``kpi_rollup`` and the two indexes
its cut checks read (a call's entries by linkedid, its seat events by call).

Revision ID: 0006_kpi_rollup
Revises: 0005_ha_leader_lease

Not fenced (0005's NOT_FENCED says why). Each object is created only when missing (a
database that ran the roll-up branch's own chain already has them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_kpi_rollup"
down_revision = "0005_ha_leader_lease"
branch_labels = None
depends_on = None

_INDEXES = (
    ("ix_queue_entries_linkedid", "queue_entries", ["linkedid"]),
    ("ix_seat_events_call", "seat_events", ["call_id", "seat"]),
)


def upgrade() -> None:
    insp = sa.inspect(op.get_bind())
    if not insp.has_table("kpi_rollup"):
        op.create_table(
            "kpi_rollup",
            sa.Column("tz", sa.Text, primary_key=True),
            sa.Column("day", sa.Text, primary_key=True),
            sa.Column("grain", sa.Text, primary_key=True),
            sa.Column("thresholds", sa.Text, nullable=False),
            sa.Column("day_start", sa.Float, nullable=False),
            sa.Column("day_end", sa.Float, nullable=False),
            sa.Column("clean_start", sa.Boolean, nullable=False),
            sa.Column("clean_end", sa.Boolean, nullable=False),
            sa.Column("dirty", sa.Boolean, nullable=False),
            sa.Column("rolled_at", sa.Float, nullable=False),
            sa.Column("data", sa.Text, nullable=False),
        )
        op.create_index("ix_kpi_rollup_end", "kpi_rollup", ["day_end"])
    for name, table, cols in _INDEXES:
        if name not in {i["name"] for i in insp.get_indexes(table)}:
            op.create_index(name, table, cols)


def downgrade() -> None:
    for name, table, _ in _INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("kpi_rollup")
