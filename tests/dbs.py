"""The databases the store tests run on: SQLite (a file per test) and PostgreSQL (a database
per test, on the testbed's cluster, scripts/testbed).

`pytest --db sqlite --db postgresql` (or ``CTI_TEST_DB=sqlite,postgresql``) runs every test
that takes the ``db_url`` fixture once per database; the default is SQLite only, so a unit
run needs no server. `scripts/dev test` asks for both. PostgreSQL never skips: when asked
for and not up, the test fails and says so.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import asyncpg
from sqlalchemy.engine import make_url

__all__ = ["DATABASES", "PG_URL", "create_pg_database", "drop_pg_database"]

DATABASES: Final = ("sqlite", "postgresql")
# the testbed's cluster (scripts/testbed start_postgres): loopback, its own port and login
PG_URL: Final = os.environ.get(
    "CTI_TEST_PG_URL", "postgresql+asyncpg://cti_test:ctitest@127.0.0.1:55432/cti_test"
)


def _run(coro: Coroutine[Any, Any, None]) -> None:
    # a loop of its own in a thread: callers may be inside a running loop (async tests)
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, coro).result()


async def _admin(sql: str) -> None:
    url = make_url(PG_URL)
    try:
        conn = await asyncpg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database,
            timeout=5,
        )
    except (OSError, asyncpg.PostgresError) as exc:
        msg = (
            f"PostgreSQL of the testbed is not reachable at {url.host}:{url.port} ({exc}): "
            "run scripts/testbed up"
        )
        raise RuntimeError(msg) from exc
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def create_pg_database() -> str:
    """A new empty database on the testbed's cluster; its SQLAlchemy URL."""
    name = f"cti_t_{uuid.uuid4().hex[:16]}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str) -> None:
    name = make_url(url).database
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
