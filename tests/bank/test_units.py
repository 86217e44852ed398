"""Units of work on SQLite: which thread runs them, that nothing waits on the event
loop, and that the write-ahead log is checkpointed off the callers' path."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import Connection

from ivr.bank.db import make_engine
from ivr.bank.units import CHECKPOINT_EVERY, Units

WRITER = "ledger-writer"


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "units.db"
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
    return path


@pytest.fixture
async def units(database: Path) -> AsyncIterator[Units]:
    engine = make_engine(f"sqlite:///{database}")
    made = Units(engine)
    yield made
    made.close()
    await engine.dispose()


def note(text: str) -> Callable[[Connection], str]:
    """A unit that writes a note and says which thread ran it."""
    def unit(conn: Connection) -> str:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        raw.execute("INSERT INTO notes (text) VALUES (?)", (text,))
        return threading.current_thread().name
    return unit


def notes(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        return [row[0] for row in conn.execute("SELECT text FROM notes ORDER BY id")]


async def test_an_unsynced_unit_runs_at_once_when_the_writer_is_idle(units: Units, database: Path) -> None:
    here = threading.current_thread().name
    assert await units.transaction(note("read or step"), durable=False) == here
    # Money is synced to disk: always on the writer thread, whose groups share the fsync.
    assert await units.transaction(note("transfer")) == WRITER
    assert notes(database) == ["read or step", "transfer"]  # both committed


async def test_a_failing_unit_run_at_once_writes_nothing(units: Units, database: Path) -> None:
    def fails(conn: Connection) -> None:
        note("half")(conn)
        raise ValueError("the unit's own error")

    with pytest.raises(ValueError, match="the unit's own error"):
        await units.transaction(fails, durable=False)
    await units.transaction(note("after"), durable=False)
    assert notes(database) == ["after"]


async def busy_writer(units: Units, text: str) -> tuple[asyncio.Task[str], threading.Event]:
    """The writer thread inside a unit writing `text`, until the event is set."""
    inside, release = threading.Event(), threading.Event()

    def slow(conn: Connection) -> str:
        inside.set()
        assert release.wait(5)
        return note(text)(conn)

    first = asyncio.create_task(units.transaction(slow))
    assert await asyncio.to_thread(inside.wait, 5)
    return first, release


async def test_a_unit_waits_its_turn_while_the_writer_is_busy(units: Units, database: Path) -> None:
    first, release = await busy_writer(units, "slow")
    quick = asyncio.create_task(units.transaction(note("quick"), durable=False))
    await asyncio.sleep(0.05)
    assert not quick.done()  # it did not cut in on the writer's connection
    release.set()
    assert await first == WRITER and await quick == WRITER
    assert notes(database) == ["slow", "quick"]


async def test_units_committed_together_each_get_their_own_answer(units: Units, database: Path) -> None:
    def fails(conn: Connection) -> None:
        note("undone")(conn)
        raise ValueError("this unit's own error")

    first, release = await busy_writer(units, "first")
    # These three queue while the writer is busy, and are committed as one group.
    group = [asyncio.create_task(units.transaction(unit, durable=False))
             for unit in (note("a"), fails, note("b"))]
    await asyncio.sleep(0.05)
    release.set()
    assert await first == WRITER
    results = await asyncio.gather(*group, return_exceptions=True)
    assert results[0] == WRITER and results[2] == WRITER
    assert isinstance(results[1], ValueError) and str(results[1]) == "this unit's own error"
    assert notes(database) == ["first", "a", "b"]  # the failed unit alone was rolled back


async def test_another_process_holding_the_write_lock_does_not_stall_the_loop(
        units: Units, database: Path) -> None:
    other = sqlite3.connect(database, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # as another worker process mid-transaction
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    beat = asyncio.create_task(ticker())
    try:
        unit = asyncio.create_task(units.transaction(note("waited"), durable=False))
        await asyncio.sleep(0.3)
        assert not unit.done()
        assert ticks >= 10  # the loop went on (blocked, it would have ticked once)
        other.execute("COMMIT")
        assert await asyncio.wait_for(unit, 10) == WRITER
    finally:
        beat.cancel()
        other.close()
    assert notes(database) == ["waited"]


async def test_a_busy_loop_leaves_units_to_the_writer(units: Units) -> None:
    async def hog() -> None:  # another request's work: 3 ms of it at every turn of the loop
        while True:
            time.sleep(0.003)
            await asyncio.sleep(0)

    busy = asyncio.create_task(hog())
    try:
        threads = [await units.transaction(note(f"busy {i}"), durable=False)
                   for i in range(40)]
    finally:
        busy.cancel()
    assert threads[-10:] == [WRITER] * 10
    # The loop is free again (between requests it waits for the network): once the
    # average has caught up, units run at once again.
    here = threading.current_thread().name
    threads = []
    for i in range(80):
        threads.append(await units.transaction(note(f"free {i}"), durable=False))
        await asyncio.sleep(0)
    # A moment this shared machine is preempted, or a cold cache after the writer slept,
    # sends one or another off to the writer: most of the last ones run here.
    assert threads[-20:].count(here) >= 15, threads


async def test_checkpoints_keep_the_log_short(units: Units, database: Path) -> None:
    wal = database.with_name(database.name + "-wal")
    half = CHECKPOINT_EVERY // 2
    for i in range(half):
        await units.transaction(note(f"{i}"), durable=False)
    per_unit = wal.stat().st_size / half  # no checkpoint yet: the log holds every commit
    # Steady writing, as under load: a checkpoint running beside the writes would never
    # catch up with them, and the log would never start afresh.
    for i in range(half, 6 * CHECKPOINT_EVERY):
        await units.transaction(note(f"{i}"), durable=i % 3 == 0)
    # Without checkpoints the log would hold all six periods' commits; with them it
    # starts afresh after each, and its file never grows much beyond one period.
    assert wal.stat().st_size < 2 * CHECKPOINT_EVERY * per_unit
    assert notes(database) == [f"{i}" for i in range(6 * CHECKPOINT_EVERY)]
