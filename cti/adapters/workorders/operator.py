"""`cti outbox`: what an operator needs when tickets do not reach the backend.

`list` shows the backlog and every parked row (an operation the backend refused: a wrong
token, a field it does not accept ...). After fixing the cause, `requeue KEY ...` or
`requeue --all` puts parked rows back in their place; a running daemon picks them up at its
next poll (`OutboxDeliverer`'s `poll_s`), so it need not be restarted. It works on the
database of the configuration, like the daemon, and may run beside it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TextIO

from cti.adapters.db.store import Store
from cti.adapters.workorders.outbox import parked_rows, pending_count, requeue_parked

__all__ = ["outbox_list", "outbox_requeue"]

# exit statuses
OK = 0
SOME_UNKNOWN = 1  # a key given to `requeue` was not a parked row


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


async def outbox_list(store: Store, out: TextIO) -> int:
    """Print the backlog and the parked rows, oldest first."""
    pending = await pending_count(store)
    parked = await parked_rows(store)
    out.write(f"pending (being delivered or retried): {pending}\nparked: {len(parked)}\n")
    for row in parked:
        error = " ".join(str(row["last_error"] or "").split())[:160]
        out.write(
            f"  {row['key']}  written {_when(row['created_at'])}  attempts {row['attempts']}"
            f"\n    {error}\n"
        )
    if parked:
        out.write("fix the cause, then: cti outbox requeue KEY ... | cti outbox requeue --all\n")
    return OK


async def outbox_requeue(store: Store, keys: Sequence[str], out: TextIO) -> int:
    """Requeue the given parked rows (all of them when `keys` is empty), in id order: a
    call's create before its update."""
    if not keys:
        keys = [str(row["key"]) for row in await parked_rows(store)]
    unknown = 0
    for key in keys:
        if await requeue_parked(store, key):
            out.write(f"requeued {key}\n")
        else:
            out.write(f"not a parked row: {key}\n")
            unknown += 1
    return SOME_UNKNOWN if unknown else OK
