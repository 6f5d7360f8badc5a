"""Database engine and sessions: SQLite (WAL, foreign keys on) or PostgreSQL (psycopg 3).

SQLite allows one writer at a time. A transaction that starts reading and later writes can
fail with "database is locked" without waiting, so writing transactions start with
``BEGIN IMMEDIATE`` (they wait for the write lock up to ``busy_timeout`` instead); read-only
transactions stay deferred and, under WAL, never block or wait for writers.

The device API's hot paths (check-in, download, report) run plain SQL (:class:`Sql`) on the
DBAPI cursor of a pooled connection (:meth:`Database.raw_read` for autocommit reads, or a
write transaction's), and their blocking work in this database's own worker threads, as many
as the pool holds connections (:meth:`Database.run`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from suitkit.server.config import Settings

T = TypeVar("T")


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
                # on the DBAPI connection: SQLAlchemy has nothing to track for it
                conn.connection.dbapi_connection.execute(f"BEGIN {mode}")

        return engine
    # No pre-ping (a round trip per checkout): a connection the server dropped fails one
    # request and is discarded with the whole pool (SQLAlchemy's disconnect handling).
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_recycle=3600)


def _sqlite_time(value: dt.datetime) -> str:
    """A datetime as SQLAlchemy stores it in SQLite (text, naive UTC, microseconds)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _pg_time(value: dt.datetime) -> dt.datetime:
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _aware(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value.replace(tzinfo=dt.UTC)


class Sql:
    """A statement of the device API's hot paths in plain SQL, run on the DBAPI cursor of
    a connection: without SQLAlchemy's per-execution work (parameter processing, result
    metadata), which costs more than running the statement itself (a third of a check-in's
    CPU on PostgreSQL). Parameters are written ``:name``; datetimes go in and come out aware
    (UTC), stored as :class:`UTCDateTime` stores them; ``times``: the indexes of the result
    columns that are datetimes. The same SQL must hold on SQLite and PostgreSQL."""

    def __init__(self, text: str, times: Sequence[int] = ()) -> None:
        if "%" in text or any(":" in lit for lit in re.findall(r"'[^']*'", text)):
            # keeps the conversion to psycopg's style below trivially right
            raise ValueError("Sql: no '%', and no ':' inside string literals")
        self.text = " ".join(text.split())
        self.pg_text = re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", self.text)
        self.times = tuple(times)

    def _params(self, sqlite: bool, params: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(params)
        for k, v in out.items():
            if isinstance(v, dt.datetime):
                out[k] = _sqlite_time(v) if sqlite else _pg_time(v)
        return out

    def execute(self, conn: Any, params: Mapping[str, Any]) -> Any:
        """Run on ``conn`` (a pooled connection from :meth:`Database.raw_read`, or a
        SQLAlchemy ``Connection`` in its transaction); returns the DBAPI cursor (``rowcount``,
        ``fetch*``), one per connection, kept with it (a cursor costs more to make than to
        use, with psycopg)."""
        fairy = conn.connection if isinstance(conn, Connection) else conn
        got = fairy.info.get("suitkit.cursor")
        if got is None:
            raw: Any = fairy.dbapi_connection
            got = fairy.info["suitkit.cursor"] = (raw.cursor(), isinstance(raw, sqlite3.Connection))
        cur, sqlite = got
        cur.execute(self.text if sqlite else self.pg_text, self._params(sqlite, params))
        return cur

    def rowcount(self, conn: Any, params: Mapping[str, Any]) -> int:
        n: int = self.execute(conn, params).rowcount
        return n

    def _row(self, row: Any) -> tuple[Any, ...]:
        if not self.times:
            return tuple(row)
        out = list(row)
        for i in self.times:
            out[i] = _aware(out[i])
        return tuple(out)

    def all(self, conn: Any, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        return [self._row(r) for r in self.execute(conn, params).fetchall()]

    def first(self, conn: Any, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        rows = self.execute(conn, params).fetchall()  # all: the cursor is left clean
        return self._row(rows[0]) if rows else None


class WriterBusy(Exception):
    """Another writer holds SQLite's write lock (``write_connection(wait=False)``)."""


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
    def hold(self, wait: bool = True) -> Iterator[None]:
        """The lock; with ``wait`` false, :class:`WriterBusy` at once if another writer
        holds it."""
        if not self._thread_lock.acquire(blocking=wait):
            raise WriterBusy
        try:
            if self._fd is not None:
                try:
                    fcntl.flock(self._fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise WriterBusy from None
            try:
                yield
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class Database:
    """The engine and two session factories: ``read()`` and ``write()`` (see module doc)."""

    def __init__(self, engine: Engine, concurrency: int | None = None) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        size = getattr(engine.pool, "size", None)
        self.concurrency = concurrency or (size() if callable(size) else 16)
        self._executor: ThreadPoolExecutor | None = None
        # per-process caches of what never changes once written (a release's files, the
        # JSON of a campaign's offer), kept here so that they go with this very database
        self.memo: dict[Any, Any] = {}
        # a unique key broken, raised through SQLAlchemy or by the DBAPI (:class:`Sql`)
        self.integrity_errors: tuple[type[Exception], ...] = (
            IntegrityError,
            engine.dialect.loaded_dbapi.IntegrityError,
        )
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

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, blocking database work, in a worker thread of this database's own:
        at most as many at a time as the pool holds connections. More would open overflow
        connections, each closed again when returned: on PostgreSQL a new server process,
        its login, cold caches and no prepared statements, on every request under load;
        and more threads only contend for the GIL. (A plain executor: the hop costs a
        fraction of Starlette's ``run_in_threadpool``, a noticeable part of a check-in.)"""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.concurrency, thread_name_prefix="suitkit-db")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, fn, *args)

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
    def raw_read(self) -> Iterator[Any]:
        """A pooled DBAPI connection for :class:`Sql` reads, each its own snapshot
        (autocommit): lighter than :meth:`connect`. Given back to the pool as it was."""
        fairy = self.engine.raw_connection()
        try:
            if self.sqlite:
                yield fairy
            else:
                raw: Any = fairy.dbapi_connection
                raw.autocommit = True
                try:
                    yield fairy
                except BaseException:
                    if raw.broken or raw.closed:  # the server dropped it: not back to the pool
                        fairy.invalidate()
                    else:  # e.g. an HTTPException (401) raised with the connection open
                        raw.autocommit = False
                    raise
                raw.autocommit = False
        finally:
            fairy.close()

    @contextmanager
    def write_connection(self, wait: bool = True) -> Iterator[Connection]:
        """A Core connection in a write transaction (committed at the end). ``wait`` false
        (SQLite): :class:`WriterBusy`, before anything is done, if another writer holds the
        lock, rather than wait for it: a caller on the event loop then hands the write to a
        worker thread, and does it at once, without a thread, when the lock is free."""
        if self._lock is None:
            with self._writer_engine.begin() as conn:
                yield conn
            return
        with self._lock.hold(wait), self._writer_engine.begin() as conn:
            yield conn

    def dispose(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
        self.engine.dispose()
        if self._lock is not None:
            self._lock.close()
