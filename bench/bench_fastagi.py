"""FastAGI under load: many concurrent Asterisk calls against `ivr serve fastagi`, and in
the same run the same dialog against the floor (a minimal raw asyncio AGI loop that
sends the same commands without running a flow), against the same server as plain
Python when its hot path is compiled (`ivr native build`), and against classic AGI
(`ivr agi`, a process per call).

The load generator is a process of its own. It plays Asterisk: sends the `agi_*`
header, answers every command as Asterisk would (the caller presses 1 during the
menu, keys 1, 2, 3 and # for the number, 2 at the second menu) and counts a call
done when the server closes the socket. Saturated: it answers at once and keeps N
calls going. Paced: it answers each command after about 2 s (±20 %), as a caller
would, with N calls open at once.

Every configuration gets fresh servers, which first serve calls for 0.3 s unmeasured
(a server in service has its caches filled). Saturated, each server then gets three
4 s windows, in turns, and the window with the least CPU counts. Paced, all servers
serve their calls in the same five windows (10 s; 30 s for one paced call, so that it
holds ~15 commands) and the median window counts: the ratio to the floor is taken
window by window, so that how slowly this machine wakes a sleeping process at that
minute (most of what a paced command costs) weighs on both sides alike. Figures:
calls/s; the server's CPU per AGI command (the time the server process's threads ran
over the window, in ns from /proc/PID/task/*/schedstat); p50/p99 of the time from the
generator writing a reply to reading the server's next command (the window with the
worst p99); and KB per open call (the server's RSS with N paced calls open, less its
RSS before them, in its first window).

    python bench/bench_fastagi.py [--quick] [--repeats N] [--paced-repeats N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import random
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ivr.native import Status

ROOT = Path(__file__).resolve().parent.parent
FLOW = ROOT / "bench" / "fastagi" / "flow.yaml"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") / 1024
WAIT_KEYS = "23#"  # after the 1 that stops the prompt


def raise_fd_limit() -> None:
    """As many sockets as this process may have (1,000 calls need more than 1,024)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def header(n: int, port: int) -> bytes:
    lines = [("agi_network", "yes"), ("agi_network_script", "benchline"),
             ("agi_request", f"agi://127.0.0.1:{port}/benchline"), ("agi_channel", f"PJSIP/t-{n:08x}"),
             ("agi_language", "en"), ("agi_type", "PJSIP"), ("agi_uniqueid", f"1795870864.{n}"),
             ("agi_version", "22.10.1"), ("agi_callerid", f"138{n % 10**8:08d}"),
             ("agi_calleridname", "Bench"), ("agi_callingpres", "0"), ("agi_callingani2", "0"),
             ("agi_callington", "0"), ("agi_callingtns", "0"), ("agi_dnid", "unknown"),
             ("agi_rdnis", "unknown"), ("agi_context", "hotline"), ("agi_extension", "95558"),
             ("agi_priority", "4"), ("agi_enhanced", "0.0"), ("agi_accountcode", ""),
             ("agi_threadid", str(139769069123264 + n))]
    return "".join(f"{k}: {v}\n" for k, v in lines).encode() + b"\n"


def answer(command: bytes, waits: list[int]) -> bytes:
    """What Asterisk answers, for the benchmark's caller."""
    if command.startswith(b"STREAM FILE"):
        name = command.split(b" ")[2].rsplit(b"/", 1)[-1]
        if name in (b"main_menu", b"enter_number"):
            return b"200 result=49 endpos=8000\n"  # 1 stops the prompt
        if name == b"second_menu":
            return b"200 result=50 endpos=8000\n"
        return b"200 result=0 endpos=16000\n"
    if command.startswith(b"WAIT FOR DIGIT"):
        key = WAIT_KEYS[waits[0] % len(WAIT_KEYS)]
        waits[0] += 1
        return f"200 result={ord(key)}\n".encode()
    if command.startswith((b"SET VARIABLE", b"HANGUP")):
        return b"200 result=1\n"
    if command.startswith(b"CHANNEL STATUS"):
        return b"200 result=6\n"
    return b"200 result=0\n"


# --- the load generator (a process of its own) ------------------------------------------


class Stats:
    def __init__(self) -> None:
        self.calls = 0
        self.commands = 0
        self.errors = 0
        self.latencies: list[float] = []
        self.open = 0
        self.measuring = False
        self.dialog: list[bytes] = []


async def one_call(n: int, port: int, stats: Stats, pace: float, expected: int) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        stats.errors += 1
        return
    stats.open += 1
    writer.write(header(n, port))
    waits = [0]
    commands = 0
    replied = 0.0
    try:
        while True:
            line = await reader.readline()
            now = time.perf_counter()
            if not line:
                break
            if replied and stats.measuring:
                stats.latencies.append(now - replied)
            commands += 1
            if stats.measuring:
                stats.commands += 1
            if n == 0 and not stats.dialog:
                stats.dialog_draft = [*getattr(stats, "dialog_draft", []), line]  # type: ignore[attr-defined]
            if pace:
                await asyncio.sleep(pace * random.uniform(0.8, 1.2))
            writer.write(answer(line, waits))
            replied = time.perf_counter()
    except (ConnectionError, asyncio.IncompleteReadError):
        stats.errors += 1
    finally:
        stats.open -= 1
        writer.close()
    if expected and commands != expected:
        stats.errors += 1
    if stats.measuring:
        stats.calls += 1


def generate(targets: list[tuple[int, int]], concurrency: int, pace: float, seconds: float,
             expected: int, ramp: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    """Keep `concurrency` calls going to each of `targets` (port, server pid) at once;
    measure `seconds` after `ramp`, every server over the same window."""
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    raise_fd_limit()

    async def main() -> list[dict[str, object]]:
        stats = [Stats() for _ in targets]
        counter = iter(range(10**9))
        stop = False

        async def lane(port: int, mine: Stats, delay: float) -> None:
            await asyncio.sleep(delay)
            while not stop:
                await one_call(next(counter), port, mine, pace, expected)

        pids = [pid for _port, pid in targets]
        before_rss = [rss_kb(pid) for pid in pids]
        # Each server's calls a little apart from the others', so that their commands
        # do not all fall due at the same instant.
        ports = [port for port, _pid in targets]
        lanes = [asyncio.create_task(lane(ports[k], stats[k], ramp * i / concurrency + 0.05 * k))
                 for i in range(concurrency) for k in range(len(targets))]
        await asyncio.sleep(ramp + (0.5 if pace else 0.2))
        open_calls = [mine.open for mine in stats]
        rss_open = [rss_kb(pid) for pid in pids]
        cpu0 = [cpu_ns(pid) for pid in pids]
        t0 = time.perf_counter()
        for mine in stats:
            mine.measuring = True
        await asyncio.sleep(seconds)
        for mine in stats:
            mine.measuring = False
        elapsed = time.perf_counter() - t0
        cpu = [(cpu_ns(pid) - c0) / 1e9 for pid, c0 in zip(pids, cpu0, strict=True)]
        stop = True
        for task in lanes:
            task.cancel()
        await asyncio.gather(*lanes, return_exceptions=True)
        results: list[dict[str, object]] = []
        for k, mine in enumerate(stats):
            latencies = sorted(mine.latencies) or [0.0]
            results.append({
                "calls_s": mine.calls / elapsed, "commands": mine.commands,
                "cpu_us": cpu[k] / max(1, mine.commands) * 1e6, "errors": mine.errors,
                "p50": statistics.median(latencies) * 1000,
                "p99": latencies[int(len(latencies) * 0.99) - 1 if len(latencies) > 1 else 0] * 1000,
                "kb_open": (rss_open[k] - before_rss[k]) / max(1, open_calls[k]), "open": open_calls[k],
                "dialog": getattr(mine, "dialog_draft", [])})
        return results

    out.put(asyncio.run(main()))


def cpu_ns(pid: int) -> int:
    """The CPU time the process's threads have run, in ns (/proc's schedstat: the tick
    counts in /proc/PID/stat are 10 ms coarse, too coarse for a few paced calls)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            total += int(stat.read_text().split()[0])
    return total


def rss_kb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return float(line.split()[1])
    return 0.0


def run_load(targets: list[tuple[int, int]], concurrency: int, pace: float, seconds: float,
             expected: int, ramp: float) -> list[dict[str, object]]:
    """`generate` in a process of its own; one result per target."""
    out: mp.Queue = mp.Queue()  # type: ignore[type-arg]
    worker = mp.Process(target=generate, args=(targets, concurrency, pace, seconds, expected, ramp, out))
    worker.start()
    result = out.get()
    worker.join()
    return result  # type: ignore[no-any-return]


# --- the floor: a raw asyncio AGI loop sending the same commands -------------------------


def floor_server(port: int, dialog: list[bytes], loop_kind: str) -> None:
    if loop_kind == "uvloop":
        import uvloop
        uvloop.install()
    raise_fd_limit()

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""
            self.header = True
            self.step = 0

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if self.header:
                    if line == b"":
                        self.header = False
                        self.send()
                    continue
                if not line.startswith(b"200"):
                    continue
                self.send()

        def send(self) -> None:
            if self.step == len(dialog):
                self.transport.close()
                return
            self.transport.write(dialog[self.step])  # type: ignore[attr-defined]
            self.step += 1

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Floor, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    asyncio.run(main())


def coroutine_floor(port: int, dialog: list[bytes], loop_kind: str) -> None:
    """The floor with a coroutine per call awaiting a future per reply, as the server runs
    its calls: what that shape costs by itself."""
    import uvloop
    uvloop.install()

    class Link(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport = transport
            self.buffer = b""
            self.header = True
            self.future: asyncio.Future[bytes] | None = None

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while b"\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\n", 1)
                if self.header:
                    if line == b"":
                        self.header = False
                        asyncio.get_running_loop().create_task(self.run())
                elif self.future is not None and not self.future.done():
                    self.future.set_result(line)

        def connection_lost(self, exc: Exception | None) -> None:
            if self.future is not None and not self.future.done():
                self.future.cancel()  # a call the generator dropped half-way

        async def run(self) -> None:
            for command in dialog:
                self.future = asyncio.get_running_loop().create_future()
                self.transport.write(command)  # type: ignore[attr-defined]
                try:
                    await self.future
                except asyncio.CancelledError:
                    return
            self.transport.close()

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(Link, "127.0.0.1", port, backlog=4096)
        await server.serve_forever()

    asyncio.run(main())


def protocol_layer(port: int, dialog: list[bytes], loop_kind: str) -> None:
    """The project's FastAGI server with the flow taken out: its protocol layer sends the
    same commands, one call a task that hands the link one exchange of them all."""
    import uvloop
    uvloop.install()
    from ivr.channels.asterisk.call import PromptAudio
    from ivr.channels.asterisk.fastagi import FastAgiLink, FastAgiServer

    lines = [command.decode().rstrip("\n") for command in dialog]

    class Layer(FastAgiServer):
        def start_call(self, link: FastAgiLink, header: dict[str, str]) -> None:
            self.calls[link] = asyncio.get_running_loop().create_task(self.replay(link))

        async def replay(self, link: FastAgiLink) -> None:
            async def commands() -> None:
                for line in lines:
                    await link.command(line, 10)

            await link.exchange(commands())
            self.calls.pop(link, None)
            link.close()

    async def main() -> None:
        server = Layer({"x": None}, "x", PromptAudio(None))  # type: ignore[dict-item]
        await server.start("127.0.0.1", port)
        await asyncio.Event().wait()

    asyncio.run(main())


# --- the servers ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, process: subprocess.Popen[bytes] | mp.Process) -> None:
    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"the server on {port} did not start")


def prompts_folder(tmp: Path) -> Path:
    folder = tmp / "prompts"
    (folder / "build" / "en-US").mkdir(parents=True)
    (folder / "en-US.yaml").write_text((FLOW.parent / "en-US.yaml").read_text())
    for line in (FLOW.parent / "en-US.yaml").read_text().splitlines():
        if line and not line.startswith("#"):
            with wave.open(str(folder / "build" / "en-US" / f"{line.split(':')[0]}.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(b"\0\1" * 8000)
    return folder


def start_ivr(prompts: Path, plain: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """`ivr serve fastagi` on the bench flow; `plain`: without the compiled hot path."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": "sqlite:///:memory:", **({"IVR_NATIVE": "0"} if plain else {})}
    process = subprocess.Popen(
        [sys.executable, "-c", "import resource; resource.setrlimit(resource.RLIMIT_NOFILE, "
         "(resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2);"
         "from ivr.cli import main; main()", "serve", "fastagi", "--port", str(port), "--flow", str(FLOW),
         "--prompts", str(prompts), "--max-calls", "5000"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port, process)
    return process, port


servers_to_stop: list[Callable[[], None]] = []


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


def start_servers(prompts: Path, dialog: list[bytes], shapes: bool) -> list[tuple[str, str, int, int]]:
    """The floor (uvloop) and `ivr serve fastagi`, each a new process; with `shapes` (the
    saturated runs), also the floor on asyncio's own loop, the coroutine floor and the
    protocol layer alone (uvloop). Paced windows serve all at once: there, only what the
    server is compared with, so that the load generator stays light."""
    servers = []
    Target = tuple[str, str, Callable[[int, list[bytes], str], None]]
    targets: list[Target] = [("floor", "uvloop", floor_server)]
    if shapes:
        targets = [("floor", "asyncio", floor_server), *targets,
                   ("coroutine floor", "uvloop", coroutine_floor),
                   ("protocol layer only", "uvloop", protocol_layer)]
    for name, kind, target in targets:
        port = free_port()
        process = mp.Process(target=target, args=(port, dialog, kind), daemon=True)
        process.start()
        wait_port(port, process)
        servers_to_stop.append(process.terminate)
        assert process.pid is not None
        servers.append((name, kind, process.pid, port))
    ivr, port = start_ivr(prompts)
    servers_to_stop.append(lambda: stop(ivr))
    servers.append(("ivr serve fastagi", "uvloop", ivr.pid, port))
    if hot_path().usable:  # and what the same server costs where nothing is compiled
        plain, plain_port = start_ivr(prompts, plain=True)
        servers_to_stop.append(lambda: stop(plain))
        servers.append(("ivr, plain Python", "uvloop", plain.pid, plain_port))
    return servers


def hot_path() -> Status:
    """Whether `ivr serve fastagi`, started now, runs the compiled hot path, and why not."""
    from ivr import native
    return native.check(native.default_folder())


def classic(prompts: Path, concurrency: int, calls: int) -> dict[str, float]:
    """`ivr agi` per call: its stdin and stdout are Asterisk's pipes."""
    def one(n: int) -> tuple[float, bool]:
        began = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "ivr.cli", "agi", str(FLOW), "--prompts",
                                    str(prompts)], cwd=ROOT, stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert process.stdin and process.stdout
        process.stdin.write(header(n, 0))
        process.stdin.flush()
        waits = [0]
        commands = 0
        while line := process.stdout.readline():
            commands += 1
            process.stdin.write(answer(line, waits))
            process.stdin.flush()
        process.stdin.close()
        ok = process.wait() == 0
        return time.perf_counter() - began, ok

    from concurrent.futures import ThreadPoolExecutor
    began = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(calls)))
    elapsed = time.perf_counter() - began
    return {"calls_s": calls / elapsed, "ms_per_call": statistics.median(r[0] for r in results) * 1000,
            "errors": sum(not r[1] for r in results)}


def measure(servers: list[tuple[str, str, int, int]], concurrency: int, pace: float, expected: int,
            repeats: int, seconds: float) -> dict[tuple[str, str], list[dict[str, object]]]:
    """`repeats` windows of every server under `concurrency` calls.

    Saturated, each server has the machine to itself, in turns (floor, ..., ivr, floor,
    ...), so that a slow spell of this shared machine does not land on one server alone.
    Paced, every server serves its own calls in the same windows: paced calls take a few
    per cent of a core, so the servers hardly meet, and what this machine does to a
    process that wakes from sleep (which is most of what a paced command costs, and
    changes from one minute to the next) falls on all of them alike."""
    windows: dict[tuple[str, str], list[dict[str, object]]] = {}
    ramp = min(4.0, concurrency / 250) if pace else 0.0
    for _round in range(repeats):
        if pace:
            results = run_load([(port, pid) for _name, _kind, pid, port in servers], concurrency, pace,
                               seconds, expected, ramp)
            for (name, kind, _pid, _port), result in zip(servers, results, strict=True):
                windows.setdefault((name, kind), []).append(result)
            continue
        for name, kind, pid, port in servers:
            windows.setdefault((name, kind), []).append(
                run_load([(port, pid)], concurrency, pace, seconds, expected, ramp)[0])
    return windows


def table_row(name: str, kind: str, concurrency: int, mode: str, runs: list[dict[str, object]],
        floor_runs: list[dict[str, object]], paired: bool) -> tuple[str, ...]:
    """One line of the table. CPU: saturated, the window with the least CPU against the
    floor's least; paired (paced) windows, the median window, and the median of each
    window's ratio to the floor's CPU in that same window. Latencies: the window with the
    worst p99. Memory per open call: the first window (later ones start from the memory
    the first one's peak left)."""
    cpus = [float(w["cpu_us"]) for w in runs]  # type: ignore[arg-type]
    floors = [float(w["cpu_us"]) for w in floor_runs]  # type: ignore[arg-type]
    if paired:
        cpu = statistics.median(cpus)
        ratio = statistics.median(c / f if f else 0.0 for c, f in zip(cpus, floors, strict=True))
    else:
        cpu = min(cpus)
        ratio = cpu / min(floors) if min(floors) else 0.0
    best = runs[cpus.index(min(cpus))]
    worst = max(runs, key=lambda w: float(w["p99"]))  # type: ignore[arg-type]
    errors = sum(int(w["errors"]) for w in runs)  # type: ignore[call-overload]
    kb_open = float(runs[0]["kb_open"])  # type: ignore[arg-type]
    # A paced call lasts ~24 s, longer than the window: no calls/s then.
    return (name, kind, str(concurrency), mode, "-" if paired else f"{float(best['calls_s']):.1f}",  # type: ignore[arg-type]
            f"{cpu:.0f}", f"{ratio:.2f}", f"{float(worst['p50']):.2f}", f"{float(worst['p99']):.2f}",  # type: ignore[arg-type]
            f"{kb_open:.1f}" if paired else "-", str(errors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short windows, 1 and 100 calls, one each")
    parser.add_argument("--repeats", type=int, default=3,
                        help="saturated windows per server and configuration; the least CPU counts "
                             "(default 3)")
    parser.add_argument("--paced-repeats", type=int, default=5,
                        help="paced windows per configuration, all servers in each; the median counts "
                             "(default 5)")
    args = parser.parse_args()
    raise_fd_limit()
    concurrencies = (1, 100) if args.quick else (1, 100, 1000)
    repeats = 1 if args.quick else args.repeats
    paced_repeats = 1 if args.quick else args.paced_repeats
    saturated_s = 2.0 if args.quick else 4.0
    paced_s = 4.0 if args.quick else 10.0
    # One paced call sends a command every ~2 s: a 10 s window would hold five, too few
    # for the CPU a command costs to show through one slow moment of this machine.
    lone_paced_s = 8.0 if args.quick else 30.0
    rows: list[tuple[str, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        prompts = prompts_folder(Path(tmp))
        # One call to learn the dialog, which the floor then replays.
        ivr, ivr_port = start_ivr(prompts)
        probe = run_load([(ivr_port, ivr.pid)], 1, 0.0, 0.5, 0, 0.0)[0]
        stop(ivr)
        dialog = list(probe["dialog"])  # type: ignore[call-overload]
        expected = len(dialog)
        for mode, pace in (("saturated", 0.0), ("paced", 2.0)):
            for concurrency in concurrencies:
                # Fresh servers for every run, so memory per open call starts from the same
                # place (a process keeps the memory its last peak took).
                servers = start_servers(prompts, dialog, shapes=not pace)
                try:
                    # Steady state: a server that has served calls before (its caches filled,
                    # its files opened); a paced window holds too few commands to hide that.
                    for _name, _kind, pid, port in servers:
                        run_load([(port, pid)], 4, 0.0, 0.3, expected, 0.0)
                    windows = measure(servers, concurrency, pace, expected,
                                      repeats if not pace else paced_repeats,
                                      saturated_s if not pace else paced_s if concurrency > 1
                                      else lone_paced_s)
                    for name, kind, _pid, _port in servers:
                        rows.append(table_row(name, kind, concurrency, mode, windows[(name, kind)],
                                              windows[("floor", kind)], paired=bool(pace)))
                        print(" | ".join(rows[-1]), flush=True)
                finally:
                    for stopper in servers_to_stop:
                        stopper()
                    servers_to_stop.clear()
        for concurrency in (1, 4):
            c = classic(prompts, concurrency, 4 if args.quick else 12)
            rows.append(("ivr agi (classic)", "-", str(concurrency), "saturated", f"{c['calls_s']:.1f}",
                         f"{c['ms_per_call']:.0f} ms/call", "-", "-", "-", "-", str(int(c["errors"]))))
            print(" | ".join(rows[-1]), flush=True)
    hotpath = hot_path()
    which = ("`ivr serve fastagi` runs the compiled hot path (`ivr, plain Python`: IVR_NATIVE=0)"
             if hotpath.usable else f"the hot path is plain Python: {hotpath.reason}")
    print(f"\nFastAGI: {expected} AGI commands a call; this machine has {os.cpu_count()} cores; {which}")
    print("| server | loop | calls | mode | calls/s | CPU µs/command | × floor | p50 ms | p99 ms "
          "| KB/open call | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("Classic AGI runs at most 4 processes at once: 1,000 Python processes (about 40 MB each) "
          "do not fit this machine.")


if __name__ == "__main__":
    main()
