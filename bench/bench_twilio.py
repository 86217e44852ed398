"""Twilio webhook requests per second, and p50/p99 latency, at concurrency 1, 8 and 64.

The app (`ivr serve twilio`, one worker, uvloop when installed) runs in its own
process with the call state in SQLite, and in PostgreSQL when DATABASE_URL points
at it. Beside it, in the same run, the floor: a minimal Starlette app under the
same server that checks the signature and returns a fixed TwiML document. The load
generator (this process) plays whole calls: the incoming-call webhook, then keys
for the language menu, the main menu, the FX menu (a quote from the switch) and
goodbye: five signed webhooks per call, each a new step.

    python bench/bench_twilio.py [--seconds 3] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

from bench_ledger import _prepare as prepare_bank  # bench/ is on the path when run as a script

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-auth-token"
CONCURRENCY = (1, 8, 64)
KEYS = ["1", "3", "1", "2"]  # Mandarin, FX rates, US dollars, goodbye


def sign(url: str, params: dict[str, str]) -> str:
    data = url + "".join(k + params[k] for k in sorted(params))
    return base64.b64encode(hmac.new(TOKEN.encode(), data.encode(), hashlib.sha1).digest()).decode()


def _floor_app() -> object:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route
    from twilio.request_validator import RequestValidator

    validator = RequestValidator(TOKEN)
    document = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather action="/twilio/gather'
                '?step=1" input="dtmf" numDigits="1"><Say>Press 1.</Say></Gather></Response>')

    async def webhook(request: Request) -> Response:
        form = await request.form()
        params = {k: str(v) for k, v in form.multi_items()}
        if not validator.validate(str(request.url), params,
                                  request.headers.get("X-Twilio-Signature", "")):
            return Response("forbidden", status_code=403)
        return Response(document, media_type="application/xml")

    return Starlette(routes=[Route("/twilio/voice", webhook, methods=["POST"]),
                             Route("/twilio/gather", webhook, methods=["POST"])])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, args: list[str], env: dict[str, str], port: int) -> None:
        self.process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"the server did not start: {self.process.stderr.read()}")  # type: ignore[union-attr]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the server did not start in 60 s")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class Connection:
    """HTTP/1.1 with keep-alive over one socket: a load generator cheap enough not to be
    the thing measured."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes, signature: str) -> tuple[int, bytes]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\nX-Twilio-Signature: {signature}\r\n\r\n")
        self.writer.write(head.encode() + body)
        status_line = await self.reader.readline()
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode().partition(":")
            if name.lower() == "content-length":
                length = int(value)
        data = await self.reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def _load(base: str, concurrency: int, seconds: float, fixed: bool) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds
    host, port = base.removeprefix("http://").split(":")

    async def post(conn: Connection, path: str, params: dict[str, str]) -> None:
        nonlocal errors
        body = urllib.parse.urlencode(params).encode()
        signature = sign(base + path, params)
        started = time.perf_counter()
        status, _ = await conn.post(path, body, signature)
        latencies.append(time.perf_counter() - started)
        if status != 200:
            errors += 1

    async def caller() -> None:
        conn = Connection(host, int(port))
        try:
            while time.perf_counter() < stop:
                sid = "CA" + uuid.uuid4().hex
                params = {"CallSid": sid, "AccountSid": "AC" + "0" * 32, "From": "+8613900000000",
                          "To": "+864008888888", "CallStatus": "in-progress", "Direction": "inbound"}
                await post(conn, "/twilio/voice", params)
                for step, key in enumerate(KEYS, start=1):
                    path = "/twilio/gather?step=1" if fixed else f"/twilio/gather?step={step}"
                    await post(conn, path, {**params, "Digits": key})
        finally:
            conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return int(len(latencies) / elapsed), latencies, errors


def _line(name: str, concurrency: int, rate: int, latencies: list[float], errors: int,
          floor: int | None = None) -> str:
    cuts = statistics.quantiles(latencies, n=100)
    share = f"  {rate / floor:4.2f} of the floor" if floor else ""
    return (f"{name:<26} {concurrency:>3}  {rate:>6,}/s  p50 {cuts[49] * 1000:6.1f} ms  "
            f"p99 {cuts[98] * 1000:6.1f} ms  errors {errors}{share}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="per window")
    parser.add_argument("--repeats", type=int, default=3,
                        help="windows per configuration and concurrency, taken in turns")
    parser.add_argument("--quick", action="store_true", help="one 1 s window each")
    parser.add_argument("--serve-floor", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_floor:
        import uvicorn

        uvicorn.run(_floor_app(), host="127.0.0.1", port=args.serve_floor, log_level="warning")  # type: ignore[arg-type]
        return
    asyncio.run(run(args))


async def run(args: argparse.Namespace) -> None:
    seconds, repeats = (1.0, 1) if args.quick else (args.seconds, args.repeats)
    env = dict(os.environ, TWILIO_AUTH_TOKEN=TOKEN, IVR_PIN_HASH_COST="10", PYTHONPATH=str(ROOT))
    print(f"Twilio webhooks: 5 webhooks per call, each server in its own process; {repeats} "
          f"window(s) of {seconds:g} s per line, taken in turns with the other servers. The "
          "best window's rate is shown (the shared machine's slow spells only lower it); "
          "p50 and p99 are over all windows.")
    print(f"{'configuration':<26} {'con':>3}  {'requests':>8}")
    servers: dict[str, tuple[Server, bool]] = {}
    try:
        port = free_port()
        servers["floor (fixed TwiML)"] = (Server([sys.executable, str(Path(__file__).resolve()),
                                                  "--serve-floor", str(port)], env, port), True)
        urls = {"SQLite": f"sqlite:///{Path(tempfile.mkdtemp(prefix='bench-twilio-')) / 'bank.db'}"}
        if os.environ.get("DATABASE_URL", "").startswith("postgresql"):
            urls["PostgreSQL"] = os.environ["DATABASE_URL"]
        for name, url in urls.items():
            await prepare_bank(url)
            port = free_port()
            servers[f"ivr, state in {name}"] = (Server(
                [sys.executable, "-m", "ivr.cli", "serve", "twilio", "--port", str(port)],
                dict(env, DATABASE_URL=url), port), False)
        for server, fixed in servers.values():
            await _load(server.base, 1, 0.5, fixed)  # warm: imports, caches, first connections
        for c in CONCURRENCY:
            windows: dict[str, list[tuple[int, list[float], int]]] = {name: [] for name in servers}
            for _ in range(repeats):
                for name, (server, fixed) in servers.items():
                    windows[name].append(await _load(server.base, c, seconds, fixed))
            floor = 0
            for name, measured in windows.items():
                rate = max(window[0] for window in measured)
                latencies = [value for window in measured for value in window[1]]
                errors = sum(window[2] for window in measured)
                print(_line(name, c, rate, latencies, errors, floor or None))
                floor = floor or rate
    finally:
        for server, _ in servers.values():
            server.stop()


if __name__ == "__main__":
    main()
