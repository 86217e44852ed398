"""Database work done as whole units: one call runs one transaction, start to commit.

The ledger writes its transactions as plain synchronous SQLAlchemy Core code on a
`Connection`; this module runs such a unit for the event loop:

- on SQLite, on one connection of the stdlib driver, kept by one writer thread:
  one thread hop for the whole transaction (aiosqlite would hop several times for
  every statement, which costs more than the statements themselves). Units that
  arrive while another is being written are committed together (group commit):
  each runs in its own savepoint, so one that fails is rolled back alone, and all
  are answered only after the shared commit, so every answer is still durable.
  SQLite has one writer at a time anyway; this pays its fsync once per group
  instead of once per transfer.

  A unit that needs no sync to disk (a read, a call's step) and finds the writer
  idle runs at once on the caller's thread, on the same connection: the two
  thread switches of a hop cost more than such a unit. It never waits there: if
  the writer is busy, or another process holds the database's write lock, the unit
  goes to the writer thread as any other.

  The write-ahead log is copied back into the database (a checkpoint, with its
  syncs to disk) by the writer thread every `CHECKPOINT_EVERY` units, never by
  a commit on the caller's thread.
- on PostgreSQL, on the async engine through `run_sync` (asyncpg underneath).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar, cast

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

R = TypeVar("R")

log = logging.getLogger("ivr.units")

#: most units committed together; bounds the latency one group adds
MAX_GROUP = 64

#: how long the writer thread waits for another process's write lock (ms)
BUSY_TIMEOUT_MS = 30_000

#: a unit runs on the caller's thread only while callbacks the event loop is asked to
#: run come due within this many seconds, on average (it has little else to do); a
#: busier loop leaves units to the writer thread, whose work then overlaps its own
INLINE_LAG = 0.0005
#: a probe of the loop not run after this long is taken as lost (its loop closed)
PROBE_LOST = 1.0

#: units committed between two checkpoints: the pages a call's steps keep rewriting
#: are copied back once per checkpoint, so a longer log costs less (at 200, with about
#: one checkpoint a second under load, they took a fifth of the writer's time)
CHECKPOINT_EVERY = 1000
#: pages left in the log after a checkpoint (other processes' writers kept it from
#: being copied whole) beyond which the writer waits for them to restart it
RESTART_PAGES = 20_000

#: (unit, loop, future, durable)
_Job = tuple[Callable[[Connection], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]", bool]
#: (future, result, error): a unit's answer to its caller
_Answer = tuple["asyncio.Future[Any]", Any, BaseException | None]
#: asks the writer thread for a checkpoint
_CHECKPOINT = "checkpoint"


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
        #: held by whoever uses the connection: the writer thread, or a caller running
        #: a unit at once
        self._using = threading.Lock()
        #: the writer thread has units in hand (set before it takes `_using`)
        self._writing = False
        #: units committed since the last checkpoint (counted holding `_using`)
        self._commits = 0
        #: how late the event loop runs a callback, on average, and when the one still
        #: due was asked for
        self._lag = 0.0
        self._probe_at: float | None = None
        if self._threaded:
            url = engine.url.set(drivername="sqlite+pysqlite")
            self._sync = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000,
                                                          "check_same_thread": False})
            tune_sqlite(self._sync, begin_immediate=False)  # the writer thread begins itself
            self._jobs: queue.SimpleQueue[_Job | str | None] = queue.SimpleQueue()
            self._worker = threading.Thread(target=self._work, name="ledger-writer", daemon=True)
            self._worker.start()
        else:
            #: the same pool, each statement its own transaction
            self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")

    @property
    def dialect_for_units(self) -> Dialect:
        """The dialect of the connections units receive (to compile statements for them)."""
        return self._sync.dialect if self._threaded else self.engine.dialect

    async def transaction(self, unit: Callable[[Connection], R], durable: bool = True,
                          one_statement: bool = False) -> R:
        """Run `unit` in a transaction: committed if it returns, rolled back if it raises.

        `durable=False` (on SQLite) lets a group of such units commit without syncing
        to disk (synchronous=NORMAL: a power cut may lose the last of them, never
        corrupt the file); a group with any durable unit is synced, as by default.
        Such a unit runs at once on this thread when the writer is idle and the event
        loop has little else to do. On PostgreSQL its transaction is committed
        without waiting for the flush to disk (synchronous_commit off).

        `one_statement`: the unit runs a single statement, atomic by itself. On
        PostgreSQL it then runs without BEGIN and COMMIT around it (one round trip to
        the server instead of three or four), committed as the server's settings say.
        """
        if self._threaded:
            if not durable and not self._writing and self._jobs.empty() \
                    and self._loop_is_free() and self._using.acquire(blocking=False):
                try:
                    ran, result = self._run_here(unit)
                finally:
                    self._using.release()
                if ran:
                    return cast(R, result)
            loop = asyncio.get_running_loop()
            future: asyncio.Future[R] = loop.create_future()
            self._jobs.put((unit, loop, future, durable))
            return await future
        if one_statement:
            async with self._autocommit.connect() as conn:
                return await conn.run_sync(unit)
        async with self.engine.begin() as conn:
            if not durable:
                await conn.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            return await conn.run_sync(unit)

    def _loop_is_free(self) -> bool:
        """Whether the event loop has little else to do, judged by how late a callback
        asked for now runs: averaged over recent units, or the wait of one still due."""
        now = time.perf_counter()
        if self._probe_at is None or now - self._probe_at > PROBE_LOST:
            self._probe_at = now
            asyncio.get_running_loop().call_soon(self._probed, now)
            return self._lag < INLINE_LAG
        return max(self._lag, now - self._probe_at) < INLINE_LAG

    def _probed(self, asked: float) -> None:
        if asked == self._probe_at:
            self._lag += (time.perf_counter() - asked - self._lag) * 0.25
            self._probe_at = None

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
            self._writing = True
            group: list[_Job] = []
            checkpoint = False
            while True:
                if job is None:
                    self._jobs.put(None)  # stop after this group
                    break
                if isinstance(job, str):
                    checkpoint = True
                else:
                    group.append(job)
                if len(group) == MAX_GROUP:
                    break
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
            with self._using:
                outcomes = self._commit_group(group) if group else []
                if checkpoint:
                    self._checkpoint()
            self._writing = False  # before any answer: a caller may go on at once
            # One wake-up of each caller's event loop for the whole group.
            answers: dict[asyncio.AbstractEventLoop, list[_Answer]] = {}
            for (_, loop, future, _), result, error in outcomes:
                answers.setdefault(loop, []).append((future, result, error))
            for loop, settled in answers.items():
                # A caller whose event loop has closed has nobody left to answer.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(_settle, settled)
        with self._using:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _run_here(self, unit: Callable[[Connection], R]) -> tuple[bool, R | None]:
        """Run an unsynced unit on this thread, holding `_using`: (True, its result),
        or (False, None) when another process holds the write lock (nothing ran)."""
        conn = self._connection()
        self._sync_to_disk(conn, False)
        raw = conn.connection.dbapi_connection
        assert raw is not None
        with conn.begin():
            # Not a moment's wait for another process here: the writer thread waits.
            raw.execute("PRAGMA busy_timeout=0")
            try:
                raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY:
                    raise
                return False, None  # nothing began; the empty commit on leaving is a no-op
            finally:
                raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            result = unit(conn)
        self._committed()
        return True, result

    def _committed(self, units: int = 1) -> None:
        due = self._commits < CHECKPOINT_EVERY
        self._commits += units
        if due and self._commits >= CHECKPOINT_EVERY:
            self._jobs.put(_CHECKPOINT)

    def _checkpoint(self) -> None:
        """Copy the log back into the database, on the writer thread between groups;
        the next commit then starts the log afresh (no other writer appended meanwhile)."""
        self._commits = 0
        try:
            raw = self._connection().connection.dbapi_connection
            assert raw is not None
            row = raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if row is not None and row[1] - row[2] > RESTART_PAGES:
                raw.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        except sqlite3.Error as exc:
            log.warning("checkpoint of the database failed (the next one tries again): %s", exc)

    def _commit_group(self, group: list[_Job]) -> list[tuple[_Job, Any, BaseException | None]]:
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
            self._committed(len(group))
        except BaseException as exc:
            # The lone unit failed, or the group's commit did: nothing of it was written.
            if self._conn is not None and self._conn.invalidated:
                self._conn = None
            outcomes = [(job, None, exc) for job in group]
        return outcomes

    def _connection(self) -> Connection:
        # The one writer thread keeps one connection (and its page cache) open.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._sync.connect()
            self._synced = True  # tune_sqlite set synchronous=FULL
            # The writer thread checkpoints (`_checkpoint`); a commit never does.
            cursor = self._conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()
        return self._conn

    def _sync_to_disk(self, conn: Connection, durable: bool) -> None:
        if durable != self._synced:
            # On the driver's connection, outside any transaction (the pragma asks so).
            cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
            cursor.close()
            self._synced = durable


def _settle(answers: list[_Answer]) -> None:
    for future, result, error in answers:
        if future.cancelled():
            continue
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
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.close()

    if not begin_immediate:
        return

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
