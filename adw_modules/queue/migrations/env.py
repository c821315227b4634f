"""Alembic environment for the store: online only, on a connection the caller already holds.

``adw_modules.queue.store.migrate`` opens a transaction, takes the migration lock inside it
(``pg_advisory_xact_lock`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) and passes the
connection in ``config.attributes["connection"]``; Alembic then runs every revision in
that same transaction, so a second process starting at the same moment waits for the
lock and finds the schema already at head.

To write a new revision against a scratch database::

    python -c "from alembic import command; from adw_modules.queue.store import alembic_config; \
command.revision(alembic_config('sqlite:////tmp/scratch.db'), 'what changed', autogenerate=True)"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection

from adw_modules.queue.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    # Only for `alembic revision --autogenerate` against a scratch database.
    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations are not supported; Store.open migrates online")
run_migrations_online()
