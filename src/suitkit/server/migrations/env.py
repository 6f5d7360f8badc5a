"""Alembic environment: the connection comes from :func:`suitkit.server.migrate.upgrade`."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from suitkit.server.models import Base

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # ALTER TABLE on SQLite
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - alembic's own CLI is not used
    raise RuntimeError("run migrations through suitkit.server.migrate.upgrade()")
_run(connection)
