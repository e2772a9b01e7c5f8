"""The active/standby lease row and, on PostgreSQL, the fence on every leader-only table.

Revision ID: 0005_ha_leader_lease
Revises: 0004_supervision_audit

``cti_leader`` holds the lease of the active/standby pair (cti/adapters/db/leader.py). On
PostgreSQL a statement-level trigger on each table the leader writes calls ``cti_fence()``:
a session that set ``cti.epoch`` (every transaction of a daemon with ``ha.enabled`` sets
it, cti/adapters/db/leader.py ``install_fence``) may write only while that epoch is the
lease row's. The check takes ``FOR KEY SHARE`` on the row, held to the commit, so a takeover
(which changes the unique ``epoch``) waits for a write already checked, and every write
checked after the takeover is refused: no stale write commits after the new leader began.
A session that never set ``cti.epoch`` (a single daemon, ``cti db``, the tests) is not
checked. SQLite: the table only (a single daemon; ha is refused there).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_ha_leader_lease"
down_revision = "0004_supervision_audit"
branch_labels = None
depends_on = None

# every table the leader writes (a table added later needs its trigger in its migration;
# tests/adapters/test_ha_lease.py checks that each table but NOT_FENCED has one)
FENCED = (
    "call_records",
    "queue_entries",
    "seat_events",
    "callbacks",
    "outbox",
    "tickets",
    "ticket_days",
    "transfers110",
    "feedback110",
    "heartbeats",
    "supervision_audit",
)
# kpi_rollup (0006): a cache of the raw facts, not a leader's decision. Any daemon serving a
# report (the standby's HTTP too) or `cti report` rolls a closed day from the facts and gets
# the same rows, so a stale writer can write nothing the leader would not.
NOT_FENCED = ("cti_leader", "alembic_version", "kpi_rollup")
STALE_EPOCH_SQLSTATE = "CTI01"

_FUNCTION = f"""
CREATE OR REPLACE FUNCTION cti_fence() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    e text := current_setting('cti.epoch', true);
BEGIN
    IF e IS NULL OR e = '' THEN
        RETURN NULL;  -- not a daemon of an active/standby pair
    END IF;
    PERFORM 1 FROM cti_leader WHERE epoch = e::bigint FOR KEY SHARE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'cti_stale_epoch: epoch % is not the leader''s; write refused', e
            USING ERRCODE = '{STALE_EPOCH_SQLSTATE}';
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    # idempotent (as 0003): a database stamped back to an older revision runs this again
    if not sa.inspect(op.get_bind()).has_table("cti_leader"):
        _create_table()
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(_FUNCTION)
    for table in FENCED:
        op.execute(f"DROP TRIGGER IF EXISTS cti_fence ON {table}")
        op.execute(
            f"CREATE TRIGGER cti_fence BEFORE INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION cti_fence()"
        )


def _create_table() -> None:
    op.create_table(
        "cti_leader",
        sa.Column("name", sa.String(length=32).with_variant(sa.String(), "postgresql")),
        sa.Column("epoch", sa.BigInteger(), nullable=False),
        sa.Column(
            "holder", sa.String(length=64).with_variant(sa.String(), "postgresql"), nullable=False
        ),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("acquired_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
        sa.UniqueConstraint("epoch"),
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in FENCED:
            op.execute(f"DROP TRIGGER IF EXISTS cti_fence ON {table}")
        op.execute("DROP FUNCTION IF EXISTS cti_fence()")
    op.drop_table("cti_leader")
