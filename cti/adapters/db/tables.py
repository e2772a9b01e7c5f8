"""Every table of the daemon's database, on one ``METADATA``.

One module so that the schema is whole whatever was imported: ``Store.open()`` creates all
of it (before, a table existed only if the module defining it happened to be imported
first, e.g. the embedded tickets). The queries stay with the code that owns them (the
store, the outbox, the 110 store, the embedded backend, the restart reader); the columns
are described here.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

__all__ = [
    "CALLBACKS",
    "CALL_RECORDS",
    "CTI_LEADER",
    "FEEDBACK110",
    "HEARTBEATS",
    "KPI_ROLLUP",
    "METADATA",
    "OUTBOX",
    "QUEUE_ENTRIES",
    "SEAT_EVENTS",
    "SUPERVISION_AUDIT",
    "TICKETS",
    "TICKET_DAYS",
    "TRANSFERS110",
]

METADATA: Final = MetaData()

# one row per finished call, upserted on call_id (db/records.py writes them)
CALL_RECORDS: Final = Table(
    "call_records",
    METADATA,
    # "<node>:<linkedid>": a Linkedid is only unique per Asterisk node
    Column("call_id", String(128), primary_key=True),
    Column("node", String(32), nullable=False),
    Column("linkedid", String(64), nullable=False),
    Column("caller", String(64), nullable=False, index=True),
    Column("caller_name", String(128), nullable=False),
    # the caller's rating from the survey after the call (满意度评价), when given
    Column("satisfaction", String(16)),
    Column("dialed", String(64), nullable=False),
    Column("line", String(64), nullable=False, index=True),
    Column("started_at", Float, nullable=False, index=True),
    Column("answered_at", Float),
    Column("ended_at", Float, nullable=False),
    Column("answered_by", String(128), index=True),
    Column("rang", JSON, nullable=False),
    Column("outcome", String(16), nullable=False, index=True),
    Column("hangup_by", String(16), nullable=False),
    Column("cause", Integer),
    Column("transfers", JSON, nullable=False),
    Column("wait_s", Float),
    Column("talk_s", Float),
    Column("history_complete", Boolean, nullable=False),
    Column("stored_at", Float, nullable=False),
    # the pop's history lookup (a caller's last calls, newest first): the index answers it
    # in a few rows however many calls a frequent caller has made (issue 12)
    Index("ix_call_records_caller_started", "caller", "started_at"),
)


# one row per queue entry (docs/kpis.md: cti.kpis.QueueEntry), written in its call record's
# transaction; (call_id, entry_seq) is the key, so a retried batch or a restart writes it once
QUEUE_ENTRIES: Final = Table(
    "queue_entries",
    METADATA,
    Column("call_id", String(128), primary_key=True),  # "<node>:<linkedid>", as call_records
    Column("entry_seq", Integer, primary_key=True),  # 1, then 2.. after a transfer
    Column("node", String(32), nullable=False),
    Column("linkedid", String(64), nullable=False),
    Column("line", String(64), nullable=False),
    Column("department", String(128)),
    Column("origin", String(16), nullable=False),
    Column("priority", String(32), nullable=False),
    Column("entered_at", Float, nullable=False),
    Column("first_offered_at", Float),
    Column("connected_at", Float),
    Column("left_at", Float, nullable=False),
    Column("outcome", String(24), nullable=False),
    Column("seat", String(32)),
    Column("wait_s", Float, nullable=False),
    Column("ring_s", Float, nullable=False),
    Column("talk_s", Float, nullable=False),
    Column("wrapup_s", Float, nullable=False),
    Column("offers", Integer, nullable=False),
    Column("transferred_to", String(128)),
    # reports select a time range, grouped by line / department / seat (cti report)
    Index("ix_queue_entries_entered", "entered_at"),
    Index("ix_queue_entries_line_entered", "line", "entered_at"),
    Index("ix_queue_entries_department_entered", "department", "entered_at"),
    Index("ix_queue_entries_seat_entered", "seat", "entered_at"),
    # the roll-up's cut checks (kpi_rollup.py): a call's entries on both sides of midnight
    Index("ix_queue_entries_linkedid", "linkedid"),
)


# every seat state change, appended (the seat history, restart recovery)
SEAT_EVENTS: Final = Table(
    "seat_events",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seat", String(32), nullable=False, index=True),
    Column("at", Float, nullable=False, index=True),
    Column("status", String(16), nullable=False),
    Column("reason", String(32)),
    Column("previous", String(16), nullable=False),
    Column("cause", String(64), nullable=False),
    Column("call_id", String(128)),
    # the report's seat intervals (each event lasting until the seat's next, LEAD over
    # seat then id): this covering index gives that order without a sort, and every column
    # the report reads without a table lookup (2.2 s -> 0.25 s per 344 k events, issue 17)
    Index("ix_seat_events_report", "seat", "id", "at", "status", "reason", "call_id"),
    # the roll-up's cut checks (kpi_rollup.py): a call's wrap-up events far from its day
    Index("ix_seat_events_call", "call_id", "seat"),
)


# the KPI report's per-day roll-up (docs/kpis.md, "The roll-up"): per local day of a zone
# and grain (the report's keys but the day), the raw report of that day as additive
# counters (JSON: cti/adapters/db/kpi_rollup.py), with the day's two cut checks; a fact
# written late for a rolled day sets `dirty` (Store), and the day is rolled again
KPI_ROLLUP: Final = Table(
    "kpi_rollup",
    METADATA,
    Column("tz", Text, primary_key=True),
    Column("day", Text, primary_key=True),  # YYYY-MM-DD, local in tz
    Column("grain", Text, primary_key=True),  # "", "line", "department", "seat", "hour"
    Column("thresholds", Text, nullable=False),  # what the counters were made with
    Column("day_start", Float, nullable=False),
    Column("day_end", Float, nullable=False),
    Column("clean_start", Boolean, nullable=False),
    Column("clean_end", Boolean, nullable=False),
    Column("dirty", Boolean, nullable=False),
    Column("rolled_at", Float, nullable=False),
    Column("data", Text, nullable=False),
    Index("ix_kpi_rollup_end", "day_end"),
)


# every supervisor action and its result (docs/supervision.md): who, what, whom, when
SUPERVISION_AUDIT: Final = Table(
    "supervision_audit",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Float, nullable=False, index=True),
    Column("supervisor", String(64), nullable=False, index=True),
    Column("action", String(16), nullable=False),
    Column("seat", String(32), nullable=False, index=True),
    Column("call_id", String(128)),
    Column("result", String(16), nullable=False),  # ok | refused
    Column("code", String(32)),  # why refused
    Column("detail", Text, nullable=False),
    Column("request_id", String(64)),
)


# the missed-call callback list (docs/callbacks.md), filled in the records' transaction
CALLBACKS: Final = Table(
    "callbacks",
    METADATA,
    Column("call_id", String(128), primary_key=True),  # the missed call, "<node>:<linkedid>"
    Column("node", String(32), nullable=False),
    Column("caller", String(64), nullable=False, index=True),
    Column("caller_name", String(128), nullable=False),
    Column("line", String(64), nullable=False),
    Column("abandoned_at", Float, nullable=False, index=True),
    Column("waited_s", Float),
    Column("status", String(16), nullable=False, index=True),  # open | calling | done
    Column("attempts", Integer, nullable=False),
    Column("last_seat", String(32)),
    Column("last_at", Float),
    Column("last_outcome", String(32)),
    Column("callback_call_id", String(128)),  # the last callback's own call id
)


# ticket operations waiting for the backend (cti/adapters/workorders/outbox.py)
OUTBOX: Final = Table(
    "outbox",
    METADATA,
    # the delivery order; AUTOINCREMENT so SQLite never reuses an id
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, unique=True),  # the idempotency key
    Column("call_id", String(128), nullable=False, index=True),
    Column("kind", String(8), nullable=False),  # create | update | rate
    Column("payload", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", Float),
    Column("delivered_at", Float),
    Column("ticket_number", String(64)),  # a city system's own numbers, UUIDs included
    Column("last_error", Text),
    Column("parked", Boolean, nullable=False, default=False),
    Index("ix_outbox_pending", "delivered_at", "parked", "id"),
    sqlite_autoincrement=True,
)


# the embedded work-order backend's tickets (cti/adapters/workorders/embedded.py)
TICKETS: Final = Table(
    "tickets",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", String(32), nullable=False, unique=True),
    # the idempotency key of the create (``<call_id>:create``): one ticket per key
    Column("create_key", String(200), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("caller", String(64), nullable=False),
    Column("caller_name", String(128), nullable=False),
    Column("line", String(64), nullable=False),
    Column("line_name", String(64), nullable=False),
    Column("department", String(128), nullable=False),
    Column("origin", String(32), nullable=False),
    Column("skill", String(64), nullable=False),
    Column("call_ids", JSON, nullable=False),  # [call_id, ...], the first is the creating call
    # call_id -> TicketCallFacts JSON: an update overwrites its call's entry (idempotent)
    Column("call_facts", JSON, nullable=False),
    Column("seat", String(64)),
    Column("recording", String(512)),
    Column("request_type", String(8)),
    Column("content", Text, nullable=False),
    Column("address", String(512), nullable=False),
    Column("urgency", String(16)),
    Column("deadline", Float),
    Column("satisfaction", String(16)),
    # another system's id of the case: 110's incident number for a transfer from 110
    Column("external_ref", String(64), index=True),
    Column("flagged", Boolean, nullable=False, default=False),  # unsatisfied: 回访 owed
    Index("ix_tickets_caller_created", "caller", "created_at"),
)


# the embedded backend's per-day ticket sequence
TICKET_DAYS: Final = Table(
    "ticket_days",
    METADATA,
    Column("day", String(8), primary_key=True),  # YYYYMMDD
    Column("last", Integer, nullable=False),
)


# the 110 transfers' state (cti/adapters/dispatch110.py)
TRANSFERS110: Final = Table(
    "transfers110",
    METADATA,
    Column("transfer_id", String(64), primary_key=True),
    Column("received_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("status", JSON, nullable=False),  # TransferBook's status JSON
)


# the 110 feedback webhook's outbox, in delivery order
FEEDBACK110: Final = Table(
    "feedback110",
    METADATA,
    Column("id", Integer, primary_key=True, autoincrement=True),  # the delivery order
    Column("event_id", String(100), nullable=False, unique=True),
    Column("transfer_id", String(64), nullable=False, index=True),
    Column("payload", JSON, nullable=False),
    Column("created_at", Float, nullable=False),
    Column("delivered_at", Float),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("parked", Boolean, nullable=False, default=False),
    # where to POST it; none = dispatch110.feedback.url (escalations carry their target's)
    Column("url", String(512)),
)


# the daemon's last sign of life per Asterisk node (cti/adapters/restart.py)
HEARTBEATS: Final = Table(
    "heartbeats",
    METADATA,
    Column("node", String(32), primary_key=True),  # the Asterisk node served
    Column("at", Float, nullable=False),  # epoch s of the last write
)


# the active/standby lease (cti/adapters/db/leader.py, docs/high-availability.md): one row;
# `epoch` is the fencing token, unique so that changing it (a takeover) conflicts with the
# FOR KEY SHARE lock every fenced write takes on the row, while a renewal (expires_at only)
# does not. Times are the database's clock, epoch seconds.
CTI_LEADER: Final = Table(
    "cti_leader",
    METADATA,
    Column("name", String(32), primary_key=True),
    Column("epoch", BigInteger, nullable=False, unique=True),
    Column("holder", String(64), nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("acquired_at", Float, nullable=False),
)


# PostgreSQL: every bounded text column unbounded, as SQLite has them (it ignores VARCHAR's
# length): a value longer than expected (a hostile caller id) is stored on both instead of
# failing its whole batch on PostgreSQL only (migration 0002_pg_unbounded_text). Applied to
# every table above, and to any table added later.
for _table in METADATA.tables.values():
    for _column in _table.columns:
        if type(_column.type) is String and _column.type.length:
            _column.type = _column.type.with_variant(String(), "postgresql")
