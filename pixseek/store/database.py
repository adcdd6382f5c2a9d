"""Engine creation and schema migrations.

SQLite (the embedded default) runs in WAL mode so searches keep reading while an indexer writes;
any other SQLAlchemy URL (PostgreSQL in production) works through the same code. Migrations run on
open, and a database written by a newer pixseek is refused rather than misread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory file locks; concurrent first starts are not serialised
    fcntl = None

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

from pixseek.errors import PixseekError


class DatabaseError(PixseekError):
    """The database cannot be used (unreachable, or written by a newer pixseek)."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints, safe against corruption in WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", "pixseek.store:migrations")
    return config


def create_store_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
    else:
        engine = create_engine(url, pool_pre_ping=True)
    return engine


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    """Serialise migrations between processes (an indexer and a server starting together on a new
    database would otherwise both create the tables). PostgreSQL: an advisory lock; SQLite: a lock file."""
    database = engine.url.database
    if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:" and fcntl:
        with open(f"{database}.migrate-lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; refuse a database from a newer pixseek."""
    config = _alembic_config()
    known = {script.revision for script in ScriptDirectory.from_config(config).walk_revisions()}
    try:
        with _migration_lock(engine), engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(7041751)"))  # held until commit
            current = set(MigrationContext.configure(connection).get_current_heads())
            unknown = current - known
            if unknown:
                raise DatabaseError(
                    f"the database at {engine.url.render_as_string(hide_password=True)} was written by a "
                    f"newer pixseek (schema revision {', '.join(sorted(unknown))}); upgrade pixseek"
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DatabaseError:
        raise
    except Exception as error:  # driver errors differ per backend; the user needs the one line
        raise DatabaseError(
            f"cannot open the database {engine.url.render_as_string(hide_password=True)}: "
            f"{str(error).strip().splitlines()[0]}"
        ) from error


def open_database(url: str) -> Engine:
    engine = create_store_engine(url)
    migrate(engine)
    return engine
