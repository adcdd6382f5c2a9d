"""Engine creation and schema migrations.

SQLite (the embedded default) runs in WAL mode so searches keep reading while an indexer writes;
any other SQLAlchemy URL (PostgreSQL in production) works through the same code. Migrations run on
open, and a database written by a newer pixseek is refused rather than misread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

try:
    import fcntl
except ImportError:  # Windows: no advisory file locks; concurrent first starts are not serialised
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from pixseek.errors import PixseekError

if TYPE_CHECKING:
    from alembic.config import Config


class DatabaseError(PixseekError):
    """The database cannot be used (unreachable, or written by a newer pixseek)."""


class DatabaseUnavailable(DatabaseError):
    """The database failed in the middle of a run (connection lost, server restarted, disk full):
    nothing for pixseek to fix, and nothing lost but the batch in flight, so the user gets one line
    saying so, and a watcher (which can tell it from other failures) retries once it answers again."""

    def __init__(self, url: str, reason: str):
        self.url = url  # without the password: it ends up in logs and /status
        self.reason = reason
        super().__init__(
            f"the database {url} failed: {reason}; check that it is running, then run the same command "
            "again: finished batches are saved"
        )


CONNECT_TIMEOUT_SECONDS = 10  # PostgreSQL: the longest wait for a connection (and for a probe)

# What the driver raises (lost connection, restart, full disk, a conflicting writer) and a pool that
# waited too long for a connection. SQLAlchemy's other errors are pixseek bugs and keep their traceback.
_DRIVER_ERRORS = (DBAPIError, PoolTimeoutError)


def display_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _reason(error: Exception) -> str:
    """The driver's own first line, without SQLAlchemy's '(psycopg.OperationalError)' and SQL."""
    cause = getattr(error, "orig", None) or error
    text = str(cause).strip() or type(cause).__name__
    return text.splitlines()[0][:300]


@contextlib.contextmanager
def database_errors(engine: Engine) -> Iterator[None]:
    """Raise a driver error from the block as :class:`DatabaseUnavailable`, which the CLI prints as
    one line (exit 2) and the API answers with 503, instead of a 100-line traceback."""
    try:
        yield
    except _DRIVER_ERRORS as error:
        raise DatabaseUnavailable(display_url(engine), _reason(error)) from error


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints, safe against corruption in WAL
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


_VERSIONS = Path(__file__).parent / "migrations" / "versions"


def head_revision() -> str:
    """The newest schema revision: migrations form one chain numbered in their file names
    ("0002_folders_and_copy_metadata.py"), so the head is the largest number."""
    return max(path.name.split("_", 1)[0] for path in _VERSIONS.glob("[0-9]*_*.py"))


def _at_head(engine: Engine) -> bool:
    """A cheap look before Alembic, whose import alone costs ~0.3 s: nearly every open finds the
    schema current, and commands like ``status`` should not pay for migrating nothing."""
    try:
        with engine.connect() as connection:
            versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    except Exception:  # no table yet, or a database that needs the full path (and its messages)
        return False
    return list(versions) == [head_revision()]


def _alembic_config() -> Config:
    from alembic.config import Config

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
        engine = create_engine(url, pool_pre_ping=True, connect_args=_connect_timeout(parsed))
    return engine


def _connect_timeout(parsed: URL) -> dict[str, int]:
    """libpq waits for a connection as long as the kernel does (~2 min for a host that drops packets):
    bound it, so that an unreachable server is one line within seconds and a watcher's probe stays
    cheap. A connect_timeout in the URL wins."""
    if parsed.get_driver_name() in ("psycopg", "psycopg2") and "connect_timeout" not in parsed.query:
        return {"connect_timeout": CONNECT_TIMEOUT_SECONDS}
    return {}


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
    if _at_head(engine):
        return
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

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
