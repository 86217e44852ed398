"""Database engines from a plain SQLAlchemy URL, with the async driver picked for it.

`sqlite:///ivr.db` runs on aiosqlite in WAL mode with full fsync (a committed
transfer survives a power cut) and `BEGIN IMMEDIATE` so concurrent writers queue
instead of failing; `postgresql://...` runs on asyncpg.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from ivr.bank.units import tune_sqlite

ASYNC_DRIVERS = {"sqlite": "aiosqlite", "postgresql": "asyncpg"}


class DatabaseUrlError(ValueError):
    pass


def async_url(url: str | URL) -> URL:
    """`sqlite:///x.db` -> `sqlite+aiosqlite:///x.db`; a URL naming a driver is kept."""
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise DatabaseUrlError(f"DATABASE_URL is not a database URL: {exc}") from None
    backend = parsed.get_backend_name()
    driver = ASYNC_DRIVERS.get(backend)
    if driver is None:
        raise DatabaseUrlError(f"DATABASE_URL names '{backend}'; use sqlite or postgresql")
    if parsed.drivername in (backend, f"{backend}+psycopg2", f"{backend}+pysqlite"):
        parsed = parsed.set(drivername=f"{backend}+{driver}")
    return parsed


def make_engine(url: str | URL, **kwargs: Any) -> AsyncEngine:
    parsed = async_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, connect_args={"timeout": 30}, **kwargs)
        tune_sqlite(engine.sync_engine)
        return engine
    kwargs.setdefault("pool_size", 20)
    kwargs.setdefault("max_overflow", 20)
    return create_async_engine(parsed, **kwargs)
