"""Alembic's environment: always run from :mod:`cti.adapters.db.migrate`, on the connection
it passes (the Store's engine, SQLite or PostgreSQL); there is no alembic.ini."""

from __future__ import annotations

from alembic import context

from cti.adapters.db.tables import METADATA

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=METADATA,
    # SQLite cannot ALTER most things: later migrations use batch mode (copy and move)
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
