"""Transfers per second through the embedded ledger, beside a plain-driver floor.

For SQLite (a file, WAL, synchronous=FULL: every commit is durable) and, when
DATABASE_URL points at PostgreSQL, for PostgreSQL: the ledger (SQLAlchemy Core on
aiosqlite/asyncpg) with one connection and with 16 concurrent transfers, and in
the same run a floor that sends the same statements through the plain driver
(stdlib sqlite3; asyncpg). Each transfer is idempotent, limit-checked and
double-entry, exactly as the hotline makes it.

    python bench/bench_ledger.py [--seconds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from ivr.bank.db import make_engine
from ivr.bank.migrate import upgrade_engine
from ivr.bank.seed import seed
from ivr.clock import FixedClock
from ivr.config import Settings
from ivr.switch import api
from ivr.switch.ledger import LedgerSwitch

NOON = dt.datetime(2026, 11, 28, 4, 0, tzinfo=dt.UTC)
SETTINGS = Settings(pin_hash_cost=10, transfer_limit_daily=10**9,  # type: ignore[call-arg]
                    transfer_limit_per_transaction=10**9)
PAYER = "6217000000000003"  # private banking customer with plenty of money


async def _prepare(url: str) -> None:
    engine = make_engine(url)
    await upgrade_engine(engine)
    await seed(engine, SETTINGS, reset=True)
    # Lift the payer's limits so the run measures the ledger, not the limit.
    async with engine.begin() as conn:
        from sqlalchemy import text

        await conn.execute(text("UPDATE limits SET per_transaction = 1000000000000, daily = 1000000000000"))
    await engine.dispose()


async def _ledger_run(url: str, concurrency: int, seconds: float) -> float:
    engine = make_engine(url, **({"pool_size": concurrency, "max_overflow": 0}
                                 if url.startswith("postgresql") else {}))
    switch = LedgerSwitch(engine, SETTINGS, FixedClock(NOON))
    customer = await _customer_id(engine)
    done = 0
    stop = time.perf_counter() + seconds
    run_id = uuid.uuid4().hex[:8]

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            result = await switch.execute(api.TransferToPayee(customer, f"b-{run_id}-{w}-{i}", 1, 1))
            assert isinstance(result, api.Transferred), result
            i += 1
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - start
    await engine.dispose()
    return done / elapsed


async def _customer_id(engine: object) -> int:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncEngine

    assert isinstance(engine, AsyncEngine)
    async with engine.connect() as conn:
        return int((await conn.execute(
            text("SELECT customer_id FROM accounts WHERE number = :n"), {"n": PAYER})).scalar_one())


# --- the floor: the same statements through the plain driver ------------------------

SQL = {
    "stored": "SELECT result, status FROM transactions WHERE idempotency_key = ?",
    "claim": "INSERT INTO transactions (idempotency_key, kind, customer_id, amount, currency, "
             "status, reference, result, created_at) VALUES (?, 'transfer', ?, ?, 'CNY', 'pending', "
             "'', '{}', ?) RETURNING id",
    "payee": "SELECT name, account_id, account_masked FROM payees WHERE customer_id = ? AND position = ?",
    "source": "SELECT id FROM accounts WHERE customer_id = ? AND kind = 'current' AND currency = 'CNY' "
              "ORDER BY id LIMIT 1",
    "limits": "SELECT per_transaction, daily FROM limits WHERE customer_id = ?",
    "usage": "INSERT INTO daily_usage (customer_id, day, used) VALUES (?, ?, ?) ON CONFLICT "
             "(customer_id, day) DO UPDATE SET used = daily_usage.used + ? "
             "WHERE daily_usage.used + ? <= ? RETURNING used",
    "debit": "UPDATE accounts SET balance = balance - ? WHERE id = ? AND status = 'active' "
             "AND balance - ? >= -overdraft RETURNING balance",
    "credit": "UPDATE accounts SET balance = balance + ? WHERE id = ? AND status = 'active' "
              "RETURNING balance",
    "journal": "INSERT INTO journal_lines (transaction_id, account_id, amount, balance_after, memo, "
               "created_at) VALUES (?, ?, ?, ?, ?, ?)",
    "finish": "UPDATE transactions SET status = 'approved', reference = ?, result = ? WHERE id = ?",
}


def _sqlite_floor(path: str, seconds: float) -> float:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    customer = conn.execute("SELECT customer_id FROM accounts WHERE number = ?", (PAYER,)).fetchone()[0]
    day = "2026-11-28"
    done = 0
    run_id = uuid.uuid4().hex[:8]
    stop = time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < stop:
        key = f"f-{run_id}-{done}"
        now = "2026-11-28 04:00:00"
        assert conn.execute(SQL["stored"], (key,)).fetchone() is None
        conn.execute("BEGIN IMMEDIATE")
        tx = conn.execute(SQL["claim"], (key, customer, 1, now)).fetchone()[0]
        payee = conn.execute(SQL["payee"], (customer, 1)).fetchone()
        source = conn.execute(SQL["source"], (customer,)).fetchone()[0]
        _, daily = conn.execute(SQL["limits"], (customer,)).fetchone()
        assert conn.execute(SQL["usage"], (customer, day, 1, 1, 1, daily)).fetchone()
        first, second = sorted((source, payee[1]))
        after = {}
        for account in (first, second):
            if account == source:
                after[account] = conn.execute(SQL["debit"], (1, account, 1)).fetchone()[0]
            else:
                after[account] = conn.execute(SQL["credit"], (1, account)).fetchone()[0]
        conn.executemany(SQL["journal"], [(tx, source, -1, after[source], "m", now),
                                           (tx, payee[1], 1, after[payee[1]], "m", now)])
        conn.execute(SQL["finish"], (f"{tx:012d}", "{}", tx))
        conn.execute("COMMIT")
        done += 1
    return done / (time.perf_counter() - start)


def _pg(sql: str) -> str:
    out, n = [], 0
    for ch in sql:
        if ch == "?":
            n += 1
            out.append(f"${n}")
        else:
            out.append(ch)
    return "".join(out)


async def _pg_floor(url: str, concurrency: int, seconds: float) -> float:
    import asyncpg

    u = make_url(url)
    pool = await asyncpg.create_pool(host=u.host, port=u.port or 5432, user=u.username,
                                     password=u.password, database=u.database,
                                     min_size=concurrency, max_size=concurrency)
    sql = {k: _pg(v) for k, v in SQL.items()}
    async with pool.acquire() as c:
        customer = await c.fetchval("SELECT customer_id FROM accounts WHERE number = $1", PAYER)
    day = dt.date(2026, 11, 28)
    now = dt.datetime(2026, 11, 28, 4, 0)
    done = 0
    run_id = uuid.uuid4().hex[:8]
    stop = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal done
        i = 0
        while time.perf_counter() < stop:
            key = f"p-{run_id}-{w}-{i}"
            i += 1
            async with pool.acquire() as c:
                assert await c.fetchrow(sql["stored"], key) is None
                async with c.transaction():
                    tx = await c.fetchval(sql["claim"], key, customer, 1, now)
                    payee = await c.fetchrow(sql["payee"], customer, 1)
                    source = await c.fetchval(sql["source"], customer)
                    limits = await c.fetchrow(sql["limits"], customer)
                    assert await c.fetchval(sql["usage"], customer, day, 1, 1, 1, limits["daily"])
                    after = {}
                    for account in sorted((source, payee["account_id"])):
                        if account == source:
                            after[account] = await c.fetchval(sql["debit"], 1, account, 1)
                        else:
                            after[account] = await c.fetchval(sql["credit"], 1, account)
                    await c.executemany(sql["journal"], [
                        (tx, source, -1, after[source], "m", now),
                        (tx, payee["account_id"], 1, after[payee["account_id"]], "m", now)])
                    await c.execute(sql["finish"], f"{tx:012d}", "{}", tx)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    elapsed = time.perf_counter() - start
    await pool.close()
    return done / elapsed


def _best(runs: list[float]) -> str:
    return f"{max(runs):7.0f}/s (median {statistics.median(runs):.0f})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each timed run")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one short run of each")
    args = parser.parse_args()
    seconds, repeat = (1.0, 1) if args.quick else (args.seconds, args.repeat)
    rows: list[tuple[str, str, str, str]] = []

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        url = f"sqlite:///{path}"
        await _prepare(url)
        for concurrency in (1, 16):
            ledger = [await _ledger_run(url, concurrency, seconds) for _ in range(repeat)]
            floor = [_sqlite_floor(str(path), seconds) for _ in range(repeat)]
            ratio = max(ledger) / max(floor)
            rows.append(("sqlite", str(concurrency), _best(ledger),
                         f"{_best(floor)}  ledger/floor {ratio:.2f}"))

    server = os.environ.get("DATABASE_URL", "")
    if server.startswith("postgresql"):
        name = f"ivr_bench_{uuid.uuid4().hex[:6]}"
        import asyncpg

        u = make_url(server)
        admin = await asyncpg.connect(host=u.host, port=u.port or 5432, user=u.username,
                                      password=u.password, database=u.database)
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = u.set(database=name).render_as_string(hide_password=False)
            await _prepare(url)
            for concurrency in (1, 16):
                ledger = [await _ledger_run(url, concurrency, seconds) for _ in range(repeat)]
                floor = [await _pg_floor(url, concurrency, seconds) for _ in range(repeat)]
                ratio = max(ledger) / max(floor)
                rows.append(("postgresql", str(concurrency), _best(ledger),
                             f"{_best(floor)}  ledger/floor {ratio:.2f}"))
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
    else:
        rows.append(("postgresql", "-", "skipped: DATABASE_URL is not postgresql://", ""))

    print(f"{'database':<11} {'conc':>4}  {'ledger transfers':<28} floor (plain driver)")
    for db, conc, ledger_text, floor_text in rows:
        print(f"{db:<11} {conc:>4}  {ledger_text:<28} {floor_text}")
    print("targets: >= 1,000 durable transfers/s on SQLite; ledger >= 0.5 x floor")


if __name__ == "__main__":
    asyncio.run(main())
