"""Database work done as whole units: one call runs one transaction, start to commit.

The ledger writes its transactions as plain synchronous SQLAlchemy Core code on a
`Connection`; this module runs such a unit for the event loop:

- on SQLite, in a worker thread on the stdlib driver: one thread hop for the whole
  transaction (aiosqlite would hop several times for every statement, which costs
  more than the statements themselves);
- on PostgreSQL, on the async engine through `run_sync` (asyncpg underneath).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine

R = TypeVar("R")


class Units:
    """Runs units of work against the database behind an async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._threaded = engine.dialect.name == "sqlite"
        self._conn: Connection | None = None
        if self._threaded:
            url = engine.url.set(drivername="sqlite+pysqlite")
            self._sync = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            tune_sqlite(self._sync)
            # Writers queue on SQLite's lock anyway: one thread, one warm connection.
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ledger")

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def dialect_for_units(self) -> Dialect:
        """The dialect of the connections units receive (to compile statements for them)."""
        return self._sync.dialect if self._threaded else self.engine.dialect

    async def transaction(self, unit: Callable[[Connection], R]) -> R:
        """Run `unit` in one transaction: committed if it returns, rolled back if it raises."""
        if self._threaded:
            return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, unit)
        async with self.engine.begin() as conn:
            return await conn.run_sync(unit)

    def _run(self, unit: Callable[[Connection], R]) -> R:
        # The one worker thread keeps one connection (and its page cache) open.
        conn = self._conn
        if conn is None or conn.closed or conn.invalidated:
            conn = self._conn = self._sync.connect()
        try:
            with conn.begin():
                return unit(conn)
        except Exception:
            if conn.invalidated:
                self._conn = None
            raise

    def close(self) -> None:
        if self._threaded:
            self._pool.submit(self._close_connection).result()
            self._pool.shutdown(wait=True)
            self._sync.dispose()

    def _close_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def tune_sqlite(engine: Any) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")
