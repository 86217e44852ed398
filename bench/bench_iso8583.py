"""Round trips per second over one ISO 8583 connection, with 1, 16 and 64 in flight.

The switch server runs as a separate process. Two servers:
- protocol: the switch server in front of a ledger that answers at once, so the
  figures are the client, the server and the wire (framing, pyiso8583, matching by STAN);
- ledger: `ivr switch serve` on the demo bank in SQLite (WAL, every commit durable),
  and on PostgreSQL when DATABASE_URL points at it, doing real transfers; beside it,
  the same transfers on the embedded ledger without the wire.

Latency is each request's round trip as the client sees it. Server CPU is read
from /proc for the server process.

    python bench/bench_iso8583.py [--requests 3000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench_ledger import NOON, SETTINGS, _prepare  # bench/ is on the path when run as a script
from sqlalchemy import text

from ivr.bank.db import make_engine
from ivr.clock import FixedClock
from ivr.switch import api
from ivr.switch.iso8583.client import Iso8583Switch
from ivr.switch.iso8583.server import SwitchServer
from ivr.switch.ledger import LedgerSwitch, Reversal

ROOT = Path(__file__).resolve().parent.parent
IN_FLIGHT = (1, 16, 64)
TICKS = os.sysconf("SC_CLK_TCK")


class InstantLedger:
    """Answers every request at once: the switch server with no database behind it."""

    async def execute(self, request: api.Request) -> api.Result:
        return api.Balances((api.AccountBalance("************0001", "current", "CNY", 1_234_567,
                                                1_234_567),))

    async def reverse(self, idempotency_key: str) -> Reversal:
        return Reversal.not_seen


async def _serve_instant() -> None:
    server = SwitchServer(InstantLedger())
    host, port = await server.start("127.0.0.1", 0)
    print(f"switch listening on {host}:{port}", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


class Server:
    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
        assert self.process.stderr is not None
        line = self.process.stderr.readline()
        found = re.search(r"listening on [\d.]+:(\d+)", line)
        if not found:
            raise SystemExit(f"the switch server did not start: {line}{self.process.stderr.read()}")
        self.port = int(found.group(1))

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def _drive(execute: Callable[[int], Awaitable[api.Result]], in_flight: int,
                 total: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for n in counter:
            started = time.perf_counter()
            result = await execute(n)
            latencies.append(time.perf_counter() - started)
            if isinstance(result, api.Declined):
                raise SystemExit(f"request {n} was declined: {result.reason}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return time.perf_counter() - started, latencies


def _figures(elapsed: float, latencies: list[float], cpu: float | None) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    text = (f"{len(latencies) / elapsed:>8,.0f}/s  p50 {cuts[49] * 1000:6.2f} ms  "
            f"p99 {cuts[98] * 1000:6.2f} ms")
    if cpu is not None:
        text += f"  server CPU {cpu / len(latencies) * 1e6:5.0f} us/request"
    return text


async def _over_wire(server: Server, make: Callable[[int], api.Request], in_flight: int,
                     total: int) -> str:
    client = Iso8583Switch("127.0.0.1", server.port, timeout=30)
    try:
        assert await client.connect()
        await _drive(lambda n: client.execute(make(n)), in_flight, min(total, 200))  # warm up
        cpu_before = server.cpu_seconds()
        elapsed, latencies = await _drive(lambda n: client.execute(make(n)), in_flight, total)
        return _figures(elapsed, latencies, server.cpu_seconds() - cpu_before)
    finally:
        await client.close()


async def _embedded(url: str, make: Callable[[int], api.Request], in_flight: int, total: int) -> str:
    engine = make_engine(url, **({"pool_size": in_flight, "max_overflow": 0}
                                 if url.startswith("postgresql") else {}))
    ledger = LedgerSwitch(engine, SETTINGS, FixedClock(NOON))
    try:
        elapsed, latencies = await _drive(lambda n: ledger.execute(make(n)), in_flight, total)
        return _figures(elapsed, latencies, None)
    finally:
        ledger.close()
        await engine.dispose()


async def _customer(url: str) -> int:
    engine = make_engine(url)
    async with engine.connect() as conn:
        found = await conn.execute(text(
            "SELECT customer_id FROM accounts WHERE number = '6217000000000003'"))
        customer = int(found.scalar_one())
    await engine.dispose()
    return customer


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="round trips per measurement")
    parser.add_argument("--quick", action="store_true", help="a short run (300 round trips)")
    parser.add_argument("--serve-instant", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_instant:
        await _serve_instant()
        return
    total = 300 if args.quick else args.requests
    python = sys.executable
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    print(f"ISO 8583 round trips over one connection ({total} per line), server in its own process")

    instant = Server([python, str(Path(__file__).resolve()), "--serve-instant"], env)
    try:
        for k in IN_FLIGHT:
            line = await _over_wire(instant, lambda n: api.BalanceInquiry(1), k, total)
            print(f"{'protocol':<22} {k:>3} in flight  {line}")
    finally:
        instant.stop()

    urls = {}
    folder = Path(tempfile.mkdtemp(prefix="bench-iso8583-"))
    urls["SQLite"] = f"sqlite:///{folder / 'bank.db'}"
    server_url = os.environ.get("DATABASE_URL", "")
    if server_url.startswith("postgresql"):
        urls["PostgreSQL"] = server_url
    for name, url in urls.items():
        await _prepare(url)
        customer = await _customer(url)
        run = uuid.uuid4().hex[:8]

        def transfer(n: int, tag: str, customer: int = customer, run: str = run) -> api.Request:
            return api.TransferToPayee(customer, f"bench-{run}-{tag}-{n}", 1, 100)

        server = Server([python, "-m", "ivr.cli", "switch", "serve", "--port", "0"],
                        dict(env, DATABASE_URL=url))
        try:
            for k in IN_FLIGHT:
                wire = await _over_wire(server, lambda n, k=k: transfer(n, f"w{k}"), k, total)
                print(f"{name + ' transfers':<22} {k:>3} in flight  {wire}")
        finally:
            server.stop()
        for k in IN_FLIGHT:
            plain = await _embedded(url, lambda n, k=k: transfer(n, f"e{k}"), k, total)
            print(f"{name + ' no wire':<22} {k:>3} in flight  {plain}")


if __name__ == "__main__":
    asyncio.run(main())
