"""Database sessions that turn every driver error into one-line DatabaseUnavailable.

It stands apart from the queries because it is the one place the translation happens: each
:class:`pixseek.store.repository.Store` method opens its session here and needs no handling of its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pixseek.store.database import database_errors


class Sessions:
    """``sessionmaker``'s two entry points, with a driver error anywhere in the block (a lost
    connection, a restarted server, a full disk) raised as one-line DatabaseUnavailable: every
    Store method gets that by opening its session, so none of them needs its own handling."""

    def __init__(self, engine: Engine):
        self._engine = engine
        self._maker = sessionmaker(engine, expire_on_commit=False)

    @contextlib.contextmanager
    def __call__(self) -> Iterator[Session]:
        with database_errors(self._engine), self._maker() as session:
            yield session

    @contextlib.contextmanager
    def begin(self) -> Iterator[Session]:
        with database_errors(self._engine), self._maker.begin() as session:
            yield session
