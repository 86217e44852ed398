"""Databases for the bank's tests: a fresh SQLite file per test, and PostgreSQL too
when DATABASE_URL points at a server (a database of its own is created there)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from ivr.bank.db import make_engine
from ivr.bank.migrate import upgrade_engine
from ivr.bank.models import Base
from ivr.bank.seed import DemoCustomer, seed
from ivr.config import Settings

SERVER_URL = os.environ.get("DATABASE_URL", "")
BACKENDS = ["sqlite"] + (["postgresql"] if SERVER_URL.startswith("postgresql") else [])


async def _admin(sql: str) -> None:
    import asyncpg

    url = make_url(SERVER_URL)
    conn = await asyncpg.connect(host=url.host or "127.0.0.1", port=url.port or 5432,
                                 user=url.username or "postgres", password=url.password,
                                 database=url.database or "postgres")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _run(coro: Any) -> Any:
    """Run a coroutine to completion on a loop of its own (fixtures may be set up
    while a test's loop is running)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if not SERVER_URL.startswith("postgresql"):
        pytest.skip("DATABASE_URL does not point at PostgreSQL")
    name = f"ivr_test_{uuid.uuid4().hex[:8]}"
    _run(_admin(f'CREATE DATABASE "{name}"'))
    url = make_url(SERVER_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    _run(_migrate_and_dispose(engine))
    yield url
    _run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _migrate_and_dispose(engine: AsyncEngine) -> None:
    await upgrade_engine(engine)
    await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'bank.db'}")
        await upgrade_engine(engine)
    else:
        engine = make_engine(request.getfixturevalue("postgres_url"))
        tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
        async with engine.begin() as conn:
            await conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    yield engine
    await engine.dispose()


@pytest.fixture
def settings() -> Settings:
    return Settings(pin_hash_cost=10, lookup_key="test-lookup-key")  # type: ignore[arg-type]


@pytest.fixture
async def demo(engine: AsyncEngine, settings: Settings) -> dict[str, DemoCustomer]:
    return {c.number: c for c in await seed(engine, settings)}
