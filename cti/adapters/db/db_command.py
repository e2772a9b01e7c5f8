"""``cti db upgrade|status``: the schema's revision, and its upgrade, from the command line
(the daemon upgrades at start unless ``database.migrate: false``)."""

from __future__ import annotations

from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from cti.adapters.db import migrate
from cti.adapters.db.store import Store

__all__ = ["EXIT_BEHIND", "EXIT_DATABASE", "db_command"]

EXIT_BEHIND = 1  # `status`: the schema is not at this version's revision
EXIT_DATABASE = 4  # as `cti run`: the database cannot be opened


async def db_command(url: str, action: str, out: TextIO, err: TextIO) -> int:
    store = Store(url)
    try:
        async with store.engine.begin() as conn:
            if action == "upgrade":
                was = await conn.run_sync(migrate.upgrade)
                out.write(f"database at {migrate.head()} (was {was})\n")
                return 0
            have = await conn.run_sync(migrate.current)
    except (SQLAlchemyError, OSError, migrate.SchemaNotCurrentError) as exc:
        err.write(f"cti db {action}: {exc}\n")
        return EXIT_DATABASE
    finally:
        await store.close()
    want = migrate.head()
    out.write(f"database at {have or '(none)'}, this version needs {want}\n")
    return 0 if have == want else EXIT_BEHIND
