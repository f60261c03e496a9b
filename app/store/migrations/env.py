"""Alembic environment: always run from `treadle.store` with a connection handed in."""

from __future__ import annotations

from alembic import context

from treadle.store._tables import VERSION_TABLE, metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only reachable by running alembic by hand
    raise RuntimeError("run migrations through the store's migrate(), not the alembic CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs by copying
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
