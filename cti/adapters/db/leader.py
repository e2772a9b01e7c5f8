"""The active/standby lease in PostgreSQL, on a dedicated connection, and the write fence.

:class:`LeaseConnection` is one asyncpg connection of its own (not the pool's): a renewal
never queues behind the record writer's batches, and the session is the lease's life — a
leader whose lease session is gone (terminated, a network cut, a database restart) steps
down at once rather than renew from another one (docs/high-availability.md). Its statements
stamp the row with the **database's** clock (``clock_timestamp()``), so the two daemons
never compare their own clocks with each other; see cti/core/leadership.py for the margins.

:func:`install_fence` makes every transaction of the Store's engine set ``cti.epoch`` (the
epoch this daemon acts under, -1 when it does not), which the trigger of migration
0005 checks on every leader-only table: a stale leader's write is refused by the database
itself (:func:`is_fenced` recognises the refusal).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import asyncpg
from sqlalchemy import event
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

__all__ = [
    "LEASE_NAME",
    "LeaseConnection",
    "LeaseRow",
    "LeaseSessionLost",
    "install_fence",
    "is_fenced",
    "pg_connect_args",
]

LEASE_NAME: Final = "cti"
STALE_EPOCH_SQLSTATE: Final = "CTI01"  # migration 0005's cti_fence()
# The database's clock (clock_timestamp(): now, not the transaction's start), spelt out in
# each statement so each is one constant string (what bandit's SQL check can see).
_ENSURE: Final = (
    "INSERT INTO cti_leader (name, epoch, holder, expires_at, acquired_at) "
    "VALUES ($1, 0, '', 0, 0) ON CONFLICT (name) DO NOTHING"
)
# the lease is free when the database's clock is past its expiry; the epoch goes up by one
_ACQUIRE: Final = (
    "UPDATE cti_leader SET epoch = epoch + 1, holder = $2, "
    "expires_at = extract(epoch from clock_timestamp()) + $3, "
    "acquired_at = extract(epoch from clock_timestamp()) "
    "WHERE name = $1 AND expires_at < extract(epoch from clock_timestamp()) RETURNING epoch"
)
_RENEW: Final = (
    "UPDATE cti_leader SET expires_at = extract(epoch from clock_timestamp()) + $4 "
    "WHERE name = $1 AND holder = $2 AND epoch = $3 "
    "AND expires_at >= extract(epoch from clock_timestamp()) RETURNING epoch"
)
_READ: Final = (
    "SELECT holder, epoch, expires_at - extract(epoch from clock_timestamp()) AS left_s "
    "FROM cti_leader WHERE name = $1"
)


class LeaseSessionLost(Exception):  # noqa: N818 - a state, as the daemon logs it
    """The lease's connection is gone (terminated, cut, the server restarted)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseRow:
    holder: str
    epoch: int
    left_s: float  # until it expires, by the database's clock (negative: expired)


def _asyncpg_kwargs(url: URL) -> dict[str, Any]:
    return {
        "host": url.host,
        "port": url.port or 5432,
        "user": url.username,
        "password": url.password,
        "database": url.database,
    }


def pg_connect_args(node_id: str, idle_in_transaction_s: float) -> dict[str, Any]:
    """The engine's asyncpg arguments for a daemon of a pair: its sessions are named (the
    operator sees whose they are in pg_stat_activity), and PostgreSQL ends one left idle in a
    transaction (a frozen leader's open write holds FOR KEY SHARE on the lease row, which
    would hold the takeover back)."""
    return {
        "server_settings": {
            "application_name": f"cti:{node_id}"[:63],
            "idle_in_transaction_session_timeout": str(int(idle_in_transaction_s * 1000)),
        }
    }


class LeaseConnection:
    """The lease row's statements on one dedicated connection (see the module doc)."""

    def __init__(self, url: URL, node_id: str, *, timeout_s: float) -> None:
        self._url = url
        self.node_id = node_id
        self._timeout = timeout_s
        self._conn: Any = None  # asyncpg.Connection

    @property
    def open(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def connect(self) -> None:
        await self.close()
        conn = await asyncpg.connect(
            **_asyncpg_kwargs(self._url),
            timeout=self._timeout,
            server_settings={
                "application_name": f"cti-lease:{self.node_id}"[:63],
                # an acquisition waits for fenced writes in flight (their FOR KEY SHARE) at
                # most this long, then is tried again at the next look
                "lock_timeout": str(int(self._timeout * 1000)),
            },
        )
        self._conn = conn
        await self._run("execute", _ENSURE, LEASE_NAME)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close(timeout=1)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()

    async def backend_pid(self) -> int:
        return int(await self._run("fetchval", "SELECT pg_backend_pid()"))

    async def acquire(self, lease_s: float) -> int | None:
        """Take the lease if it is free; the new epoch, or None (someone holds it)."""
        got = await self._run("fetchval", _ACQUIRE, LEASE_NAME, self.node_id, lease_s)
        return None if got is None else int(got)

    async def renew(self, epoch: int, lease_s: float) -> bool:
        """Extend our lease; False when it is no longer ours (expired, taken over)."""
        got = await self._run("fetchval", _RENEW, LEASE_NAME, self.node_id, epoch, lease_s)
        return got is not None

    async def read(self) -> LeaseRow | None:
        row = await self._run("fetchrow", _READ, LEASE_NAME)
        if row is None:
            return None
        return LeaseRow(holder=str(row["holder"]), epoch=int(row["epoch"]), left_s=row["left_s"])

    async def _run(self, method: str, *args: Any) -> Any:
        """One statement; a dead session becomes :class:`LeaseSessionLost` (a slow one is a
        TimeoutError: the caller's clock decides what that means)."""
        if self._conn is None or self._conn.is_closed():
            raise LeaseSessionLost
        try:
            return await getattr(self._conn, method)(*args, timeout=self._timeout)
        except (
            asyncpg.ConnectionDoesNotExistError,
            asyncpg.InterfaceError,
            asyncpg.AdminShutdownError,
            asyncpg.CannotConnectNowError,
            ConnectionError,
            OSError,
        ) as exc:
            self._conn = None
            raise LeaseSessionLost(str(exc)) from exc


def install_fence(engine: AsyncEngine, epoch: Callable[[], int]) -> None:
    """Every transaction of `engine` carries ``cti.epoch = epoch()`` (its first statement):
    the database refuses its writes unless that is the lease's epoch (migration 0005)."""

    @event.listens_for(engine.sync_engine, "begin")
    def _carry_epoch(conn: Any) -> None:
        # an int of ours, never outside input: safe as a literal (no parameter round trip)
        conn.exec_driver_sql(f"SELECT set_config('cti.epoch', '{int(epoch())}', true)")


def is_fenced(exc: BaseException) -> bool:
    """Was this error the database refusing a write of a stale epoch?"""
    seen: BaseException | None = exc
    for _ in range(5):  # SQLAlchemy's error -> the adapted driver error -> asyncpg's
        if seen is None:
            return False
        if getattr(seen, "sqlstate", None) == STALE_EPOCH_SQLSTATE:
            return True
        if "cti_stale_epoch" in str(seen):
            return True
        seen = getattr(seen, "orig", None) or seen.__cause__
    return False
