"""The schema's versions: Alembic migrations (cti/adapters/db/migrations/) on SQLite and
PostgreSQL alike, run on the Store's own connection.

Three kinds of database meet :func:`upgrade`: an empty one (every migration runs), one at an
older revision (the missing ones run), and one of the version before migrations, made by
``create_all``: tables but no ``alembic_version``. The baseline creates only what is missing,
so that one is adopted with its rows (logged as ``database_adopted``). A database at a
revision this code does not know (a newer version ran on it) is refused, never touched.
"""

from __future__ import annotations

from typing import Final

import structlog
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import Connection, inspect, text

__all__ = ["SCRIPTS", "SchemaNotCurrentError", "check", "current", "head", "upgrade"]

SCRIPTS: Final = "cti.adapters.db:migrations"
_log = structlog.get_logger("cti.store")
_LOCK_KEY: Final = 0x12345_0001  # the advisory lock of schema upgrades (any fixed bigint)


class SchemaNotCurrentError(RuntimeError):
    """The database is not at the revision this version needs (``cti db upgrade``)."""

    def __init__(self, have: str | None, want: str) -> None:
        self.have = have
        self.want = want
        super().__init__(
            f"database schema at revision {have or '(none)'}, this version needs {want}: "
            "run `cti db upgrade` (or set database.migrate: true)"
        )


def _config(conn: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPTS)
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def head() -> str:
    """The newest revision of this code."""
    rev = ScriptDirectory.from_config(_config()).get_current_head()
    if rev is None:  # pragma: no cover - the baseline is always there
        msg = "no migrations found"
        raise RuntimeError(msg)
    return rev


def current(conn: Connection) -> str | None:
    """The database's revision; None when it has none (empty, or made before migrations)."""
    return MigrationContext.configure(conn).get_current_revision()


def _known(rev: str) -> bool:
    try:
        return ScriptDirectory.from_config(_config()).get_revision(rev) is not None
    except (ResolutionError, CommandError):  # an id this code has never seen
        return False


def upgrade(conn: Connection) -> str:
    """Bring the database to :func:`head` (idempotent); returns the revision it was at."""
    if conn.dialect.name == "postgresql":
        # two daemons starting on one database (active/standby) upgrade one after the
        # other: the second waits here, then finds the schema current. Held until commit.
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    have = current(conn)
    if have is not None and not _known(have):
        raise SchemaNotCurrentError(have, head())
    if have is None and inspect(conn).has_table("call_records"):
        _log.warning("database_adopted", hint="made before migrations; stamped at the baseline")
    command.upgrade(_config(conn), "head")
    now = current(conn)
    if now != have:
        _log.info("database_upgraded", revision_from=have, revision_to=now)
    return have or "(none)"


def check(conn: Connection) -> None:
    """Refuse a database not at :func:`head` (``database.migrate: false``)."""
    have = current(conn)
    if have != head():
        raise SchemaNotCurrentError(have, head())
