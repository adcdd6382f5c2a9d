"""Alembic environment: pixseek passes its own connection in ``config.attributes``."""

from alembic import context
from sqlalchemy import create_engine

from pixseek.store.models import Base

connection = context.config.attributes.get("connection")


def _run(conn) -> None:
    # render_as_batch lets SQLite alter tables (it has no ALTER COLUMN).
    context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///pixseek-dev.db"
    with create_engine(url).connect() as conn:
        _run(conn)
