"""Database engine and sessions: SQLite (WAL, foreign keys on) or PostgreSQL (psycopg 3).

SQLite allows one writer at a time. A transaction that starts reading and later writes can
fail with "database is locked" without waiting, so writing transactions start with
``BEGIN IMMEDIATE`` (they wait for the write lock up to ``busy_timeout`` instead); read-only
transactions stay deferred and, under WAL, never block or wait for writers.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from suitkit.server.config import Settings


class UTCDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC datetime in Python, a naive UTC timestamp in the database (both backends)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # pragma: no cover - raw SQLite text
            value = dt.datetime.fromisoformat(value)
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, synchronous: str = "NORMAL", pool_size: int = 16) -> Engine:
    """An engine for ``url`` with the pragmas and pool this server needs."""
    if is_sqlite(url):
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see "begin" below)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute(f"PRAGMA synchronous={synchronous}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            if mode != "NONE":  # NONE: each statement is its own (read) transaction
                conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    # No pre-ping (a round trip per checkout): a connection the server dropped fails one
    # request and is discarded with the whole pool (SQLAlchemy's disconnect handling).
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)


class _WriterLock:
    """SQLite has one writer at a time, and a writer that finds the database locked polls
    with sleeps (``busy_timeout``), which under load costs far more than the writes. Writers
    of one process queue on a thread lock, writers of several processes (``--workers``) on an
    ``flock`` of ``<database>.writer-lock``: both wake the next writer as soon as the lock is
    free. A killed process's ``flock`` is released by the kernel."""

    def __init__(self, database_path: str | None) -> None:
        self._thread_lock = threading.Lock()
        self._fd: int | None = None
        if database_path and database_path != ":memory:":
            self._fd = os.open(f"{database_path}.writer-lock", os.O_RDWR | os.O_CREAT, 0o600)

    @contextmanager
    def hold(self) -> Iterator[None]:
        with self._thread_lock:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Database:
    """The engine and two session factories: ``read()`` and ``write()`` (see module doc)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._read = sessionmaker(engine, expire_on_commit=False)
        writer = engine.execution_options(sqlite_begin="IMMEDIATE") if self.sqlite else engine
        self._writer_engine = writer
        self._write = sessionmaker(writer, expire_on_commit=False)
        self._lock = _WriterLock(engine.url.database) if self.sqlite else None
        # Quick reads need no transaction around them (no BEGIN/ROLLBACK round trips)
        self._reader_engine = (
            engine.execution_options(sqlite_begin="NONE")
            if self.sqlite
            else engine.execution_options(isolation_level="AUTOCOMMIT")
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        return cls(
            make_engine(
                settings.db_url,
                synchronous=settings.sqlite_synchronous,
                pool_size=settings.db_pool_size,
            )
        )

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading; closing it ends the transaction, and the objects it loaded
        stay readable (detached)."""
        with self._read() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction committed when the block ends normally, rolled back otherwise."""
        if self._lock is None:
            with self._write() as session, session.begin():
                yield session
            return
        with self._lock.hold(), self._write() as session, session.begin():
            yield session

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A Core connection for quick reads (the device API's hot paths): no transaction
        around the statements, each reads a consistent snapshot of its own."""
        with self._reader_engine.connect() as conn:
            yield conn

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A Core connection in a write transaction (committed at the end)."""
        if self._lock is None:
            with self._writer_engine.begin() as conn:
                yield conn
            return
        with self._lock.hold(), self._writer_engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()
        if self._lock is not None:
            self._lock.close()
