"""Baseline: the schema of hotline-cti 0.1 (before migrations, ``Store.open`` ran create_all).

Revision ID: 0001_baseline
Revises: (none)

A database of the previous version has these tables without an ``alembic_version``: every
table and index here is created only when missing, so upgrading such a database adopts it
(and adds what that version's create_all had not made yet, e.g. an index added later) and
keeps its rows. An existing table that lacks a column of the baseline is refused with the
table and columns named: that database is not one this project made.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0001_baseline"
down_revision = None
branch_labels = None
depends_on = None


def _table(name: str, *elements: Any, **kw: Any) -> None:
    insp = sa.inspect(op.get_bind())
    if not insp.has_table(name):
        op.create_table(name, *elements, **kw)
        return
    have = {c["name"] for c in insp.get_columns(name)}
    missing = sorted(e.name for e in elements if isinstance(e, sa.Column) and e.name not in have)
    if missing:
        msg = (
            f"table {name} exists but lacks the columns {', '.join(missing)}: "
            "not a hotline-cti database of a known version"
        )
        raise RuntimeError(msg)


def _index(name: str, table: str, columns: list[str], *, unique: bool = False) -> None:
    if name not in {i["name"] for i in sa.inspect(op.get_bind()).get_indexes(table)}:
        op.create_index(name, table, columns, unique=unique)


def upgrade() -> None:
    _table(
        "call_records",
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("caller_name", sa.String(length=128), nullable=False),
        sa.Column("satisfaction", sa.String(length=16), nullable=True),
        sa.Column("dialed", sa.String(length=64), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("answered_by", sa.String(length=128), nullable=True),
        sa.Column("rang", sa.JSON(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("hangup_by", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.Integer(), nullable=True),
        sa.Column("transfers", sa.JSON(), nullable=False),
        sa.Column("wait_s", sa.Float(), nullable=True),
        sa.Column("talk_s", sa.Float(), nullable=True),
        sa.Column("history_complete", sa.Boolean(), nullable=False),
        sa.Column("stored_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("call_id"),
    )
    _index("ix_call_records_answered_by", "call_records", ["answered_by"])
    _index("ix_call_records_caller", "call_records", ["caller"])
    _index("ix_call_records_caller_started", "call_records", ["caller", "started_at"])
    _index("ix_call_records_line", "call_records", ["line"])
    _index("ix_call_records_outcome", "call_records", ["outcome"])
    _index("ix_call_records_started_at", "call_records", ["started_at"])
    _table(
        "callbacks",
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("caller_name", sa.String(length=128), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("abandoned_at", sa.Float(), nullable=False),
        sa.Column("waited_s", sa.Float(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_seat", sa.String(length=32), nullable=True),
        sa.Column("last_at", sa.Float(), nullable=True),
        sa.Column("last_outcome", sa.String(length=32), nullable=True),
        sa.Column("callback_call_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("call_id"),
    )
    _index("ix_callbacks_abandoned_at", "callbacks", ["abandoned_at"])
    _index("ix_callbacks_caller", "callbacks", ["caller"])
    _index("ix_callbacks_status", "callbacks", ["status"])
    _table(
        "feedback110",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("transfer_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("parked", sa.Boolean(), nullable=False),
        sa.Column("url", sa.String(length=512), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("event_id"),
    )
    _index("ix_feedback110_transfer_id", "feedback110", ["transfer_id"])
    _table(
        "heartbeats",
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("node"),
    )
    _table(
        "outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.Float(), nullable=True),
        sa.Column("delivered_at", sa.Float(), nullable=True),
        sa.Column("ticket_number", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("parked", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key"),
        sqlite_autoincrement=True,
    )
    _index("ix_outbox_call_id", "outbox", ["call_id"])
    _index("ix_outbox_pending", "outbox", ["delivered_at", "parked", "id"])
    _table(
        "queue_entries",
        sa.Column("call_id", sa.String(length=128), nullable=False),
        sa.Column("entry_seq", sa.Integer(), nullable=False),
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("linkedid", sa.String(length=64), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=128), nullable=True),
        sa.Column("origin", sa.String(length=16), nullable=False),
        sa.Column("priority", sa.String(length=32), nullable=False),
        sa.Column("entered_at", sa.Float(), nullable=False),
        sa.Column("first_offered_at", sa.Float(), nullable=True),
        sa.Column("connected_at", sa.Float(), nullable=True),
        sa.Column("left_at", sa.Float(), nullable=False),
        sa.Column("outcome", sa.String(length=24), nullable=False),
        sa.Column("seat", sa.String(length=32), nullable=True),
        sa.Column("wait_s", sa.Float(), nullable=False),
        sa.Column("ring_s", sa.Float(), nullable=False),
        sa.Column("talk_s", sa.Float(), nullable=False),
        sa.Column("wrapup_s", sa.Float(), nullable=False),
        sa.Column("offers", sa.Integer(), nullable=False),
        sa.Column("transferred_to", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("call_id", "entry_seq"),
    )
    _index("ix_queue_entries_department_entered", "queue_entries", ["department", "entered_at"])
    _index("ix_queue_entries_entered", "queue_entries", ["entered_at"])
    _index("ix_queue_entries_line_entered", "queue_entries", ["line", "entered_at"])
    _index("ix_queue_entries_seat_entered", "queue_entries", ["seat", "entered_at"])
    _table(
        "seat_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("seat", sa.String(length=32), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=True),
        sa.Column("previous", sa.String(length=16), nullable=False),
        sa.Column("cause", sa.String(length=64), nullable=False),
        sa.Column("call_id", sa.String(length=128), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    _index("ix_seat_events_at", "seat_events", ["at"])
    _index("ix_seat_events_seat", "seat_events", ["seat"])
    _table(
        "ticket_days",
        sa.Column("day", sa.String(length=8), nullable=False),
        sa.Column("last", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day"),
    )
    _table(
        "tickets",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("create_key", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("caller_name", sa.String(length=128), nullable=False),
        sa.Column("line", sa.String(length=64), nullable=False),
        sa.Column("line_name", sa.String(length=64), nullable=False),
        sa.Column("department", sa.String(length=128), nullable=False),
        sa.Column("origin", sa.String(length=32), nullable=False),
        sa.Column("skill", sa.String(length=64), nullable=False),
        sa.Column("call_ids", sa.JSON(), nullable=False),
        sa.Column("call_facts", sa.JSON(), nullable=False),
        sa.Column("seat", sa.String(length=64), nullable=True),
        sa.Column("recording", sa.String(length=512), nullable=True),
        sa.Column("request_type", sa.String(length=8), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("address", sa.String(length=512), nullable=False),
        sa.Column("urgency", sa.String(length=16), nullable=True),
        sa.Column("deadline", sa.Float(), nullable=True),
        sa.Column("satisfaction", sa.String(length=16), nullable=True),
        sa.Column("external_ref", sa.String(length=64), nullable=True),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("create_key"),
        sa.UniqueConstraint("number"),
    )
    _index("ix_tickets_caller_created", "tickets", ["caller", "created_at"])
    _index("ix_tickets_external_ref", "tickets", ["external_ref"])
    _table(
        "transfers110",
        sa.Column("transfer_id", sa.String(length=64), nullable=False),
        sa.Column("received_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.Column("status", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("transfer_id"),
    )


def downgrade() -> None:
    # the baseline is the floor: dropping every table is not a migration
    msg = "no downgrade below the baseline"
    raise NotImplementedError(msg)
