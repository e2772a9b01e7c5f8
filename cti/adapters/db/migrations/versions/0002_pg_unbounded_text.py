"""PostgreSQL: the text columns unbounded (VARCHAR without a length), as on SQLite.

Revision ID: 0002_pg_unbounded_text
Revises: 0001_baseline

SQLite ignores VARCHAR(n); PostgreSQL refuses a longer value, and the call records go in
batches: one caller id of 65 characters from a hostile trunk failed the whole batch on
PostgreSQL, retried for ever, while SQLite stored it. The lengths stay in tables.py as what
the values are expected to be; PostgreSQL now stores what SQLite stores. Dropping a
VARCHAR's length is a catalogue change on PostgreSQL (no table rewrite). SQLite: nothing.
"""

from __future__ import annotations

from typing import Final

import sqlalchemy as sa
from alembic import op

revision = "0002_pg_unbounded_text"
down_revision = "0001_baseline"
branch_labels = None
depends_on = None

# the baseline's bounded text columns: table -> [(column, length)]
_BOUNDED: Final[dict[str, list[tuple[str, int]]]] = {
    "call_records": [
        ("call_id", 128),
        ("node", 32),
        ("linkedid", 64),
        ("caller", 64),
        ("caller_name", 128),
        ("satisfaction", 16),
        ("dialed", 64),
        ("line", 64),
        ("answered_by", 128),
        ("outcome", 16),
        ("hangup_by", 16),
    ],
    "callbacks": [
        ("call_id", 128),
        ("node", 32),
        ("caller", 64),
        ("caller_name", 128),
        ("line", 64),
        ("status", 16),
        ("last_seat", 32),
        ("last_outcome", 32),
        ("callback_call_id", 128),
    ],
    "feedback110": [("event_id", 100), ("transfer_id", 64), ("url", 512)],
    "heartbeats": [("node", 32)],
    "outbox": [("key", 200), ("call_id", 128), ("kind", 8), ("ticket_number", 64)],
    "queue_entries": [
        ("call_id", 128),
        ("node", 32),
        ("linkedid", 64),
        ("line", 64),
        ("department", 128),
        ("origin", 16),
        ("priority", 32),
        ("outcome", 24),
        ("seat", 32),
        ("transferred_to", 128),
    ],
    "seat_events": [
        ("seat", 32),
        ("status", 16),
        ("reason", 32),
        ("previous", 16),
        ("cause", 64),
        ("call_id", 128),
    ],
    "ticket_days": [("day", 8)],
    "tickets": [
        ("number", 32),
        ("create_key", 200),
        ("status", 16),
        ("caller", 64),
        ("caller_name", 128),
        ("line", 64),
        ("line_name", 64),
        ("department", 128),
        ("origin", 32),
        ("skill", 64),
        ("seat", 64),
        ("recording", 512),
        ("request_type", 8),
        ("address", 512),
        ("urgency", 16),
        ("satisfaction", 16),
        ("external_ref", 64),
    ],
    "transfers110": [("transfer_id", 64)],
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in _BOUNDED.items():
        for column, length in columns:
            op.alter_column(table, column, type_=sa.String(), existing_type=sa.String(length))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table, columns in _BOUNDED.items():
        for column, length in columns:
            op.alter_column(table, column, type_=sa.String(length), existing_type=sa.String())
