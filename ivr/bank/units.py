"""Database work done as whole units: one call runs one transaction, start to commit.

The ledger writes its transactions as plain synchronous SQLAlchemy Core code on a
`Connection`; this module runs such a unit for the event loop:

- on SQLite, in one worker thread on the stdlib driver: one thread hop for the
  whole transaction (aiosqlite would hop several times for every statement, which
  costs more than the statements themselves). Units that arrive while another is
  being written are committed together (group commit): each runs in its own
  savepoint, so one that fails is rolled back alone, and all are answered only
  after the shared commit, so every answer is still durable. SQLite has one
  writer at a time anyway; this pays its fsync once per group instead of once
  per transfer.
- on PostgreSQL, on the async engine through `run_sync` (asyncpg underneath).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

R = TypeVar("R")

#: most units committed together; bounds the latency one group adds
MAX_GROUP = 64

#: (unit, loop, future, durable)
_Job = tuple[Callable[[Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]", bool]


class Units:
    """Runs units of work against the database behind an async engine."""

    _shared: ClassVar[dict[str, tuple[Units, int]]] = {}

    @classmethod
    def shared(cls, engine: AsyncEngine) -> Units:
        """The process's one `Units` for the database at `engine`'s URL: on SQLite, every
        writer (the ledger, the call store) queues on the same thread, instead of
        fighting for the file's write lock. Each `shared` needs its own `close`."""
        if engine.dialect.name != "sqlite":
            return cls(engine)  # PostgreSQL takes many writers; nothing to share
        key = engine.url.render_as_string(hide_password=False)
        found = cls._shared.get(key)
        units = found[0] if found is not None else cls(engine)
        units._key = key
        cls._shared[key] = (units, (found[1] if found is not None else 0) + 1)
        return units

    def __init__(self, engine: AsyncEngine) -> None:
        self._key: str | None = None
        self.engine = engine
        self._threaded = engine.dialect.name == "sqlite"
        self._conn: Connection | None = None
        self._synced = True
        if self._threaded:
            url = engine.url.set(drivername="sqlite+pysqlite")
            self._sync = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            tune_sqlite(self._sync, begin_immediate=False)  # the writer thread begins itself
            self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
            self._worker = threading.Thread(target=self._work, name="ledger-writer", daemon=True)
            self._worker.start()

    @property
    def dialect_for_units(self) -> Dialect:
        """The dialect of the connections units receive (to compile statements for them)."""
        return self._sync.dialect if self._threaded else self.engine.dialect

    async def transaction(self, unit: Callable[[Connection], R], durable: bool = True) -> R:
        """Run `unit` in a transaction: committed if it returns, rolled back if it raises.

        `durable=False` (on SQLite) lets a group of such units commit without syncing
        to disk (synchronous=NORMAL: a power cut may lose the last of them, never
        corrupt the file); a group with any durable unit is synced, as by default.
        """
        if self._threaded:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[R] = loop.create_future()
            self._jobs.put((unit, loop, future, durable))
            return await future
        async with self.engine.begin() as conn:
            return await conn.run_sync(unit)

    def close(self) -> None:
        if self._key is not None:
            units, users = self._shared[self._key]
            if users > 1:
                self._shared[self._key] = (units, users - 1)
                return
            del self._shared[self._key]
        if self._threaded and self._worker.is_alive():
            self._jobs.put(None)
            self._worker.join()
            self._sync.dispose()

    # --- the SQLite writer thread ------------------------------------------------

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                break
            group = [job]
            while len(group) < MAX_GROUP:
                try:
                    more = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    self._jobs.put(None)  # stop after this group
                    break
                group.append(more)
            self._commit_group(group)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _commit_group(self, group: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        single = len(group) == 1
        try:
            conn = self._connection()
            self._sync_to_disk(conn, any(job[3] for job in group))
            # Transaction control goes to the driver directly: through SQLAlchemy it
            # costs more than a small unit's statements. SQLAlchemy's own begin issues
            # nothing on SQLite, and its commit or rollback ends what BEGIN started.
            raw = conn.connection.dbapi_connection
            assert raw is not None
            with conn.begin():
                raw.execute("BEGIN IMMEDIATE")
                for job in group:
                    if single:
                        outcomes.append((job, job[0](conn), None))
                        continue
                    raw.execute("SAVEPOINT unit")  # a failure undoes this unit only
                    try:
                        outcomes.append((job, job[0](conn), None))
                    except BaseException as exc:
                        raw.execute("ROLLBACK TO unit")
                        outcomes.append((job, None, exc))
                    raw.execute("RELEASE unit")
        except BaseException as exc:
            # The lone unit failed, or the group's commit did: nothing of it was written.
            if self._conn is not None and self._conn.invalidated:
                self._conn = None
            outcomes = [(job, None, exc) for job in group]
        for (_, loop, future, _), result, error in outcomes:
            # A caller whose event loop has closed has nobody left to answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)

    def _connection(self) -> Connection:
        # The one writer thread keeps one connection (and its page cache) open.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._sync.connect()
            self._synced = True  # tune_sqlite set synchronous=FULL
        return self._conn

    def _sync_to_disk(self, conn: Connection, durable: bool) -> None:
        if durable != self._synced:
            # On the driver's connection, outside any transaction (the pragma asks so).
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cursor.close()
            self._synced = durable


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def tune_sqlite(engine: Any, begin_immediate: bool = True) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    if not begin_immediate:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
