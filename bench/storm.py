"""Reconnect storm: every reader of a hub comes back at once after the hub restarts, and resumes by event id.

    python -m bench storm [--readers 10000] [--clients 2] [--reconnect immediate|hint] [--kill] [--rounds 1]

The distributed path on loopback: a private ``redis-server``, ``ticker worker``, hub A holding the readers and hub B
where the editors post (holding no readers, so that flashes can be published while A is down). Then:

1. N WebSocket readers (``/v1/stream?lang=en``) connect to A from ``--clients`` processes
   (``bench/storm_readers.py``), and ``--before`` flashes reach every one of them;
2. A is stopped: SIGTERM (it closes every reader with ``1012``, "service restart", then exits) or, with ``--kill``,
   SIGKILL (the sockets just drop);
3. ``--missed`` flashes are published through B while A is down: the readers can only get them by resuming;
4. A is started again on the same port. Every reader reconnects with ``last_event_id`` (``--reconnect``: at once,
   or after the close's ``retry=`` hint as the clients do, 1-5 s jittered) and is **resumed** when it has the
   missed flashes; the curve is how many are resumed against the time since A was started again;
5. ``--after`` more flashes are published live, and every reader must end with every flash exactly once, in order.

Reported: the time to A's ``/readyz``, the times by which 50/90/99/100 % of readers were resumed, the curve in
half-second steps, A's and Redis's CPU seconds from A's restart to the last resume, and what was lost, duplicated
or out of order (each must be 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx

from . import procstat
from .fanout_readers import raise_open_files_limit
from .fanout_targets import _env, ticker_body
from .latency import ROOT, STARTUP_TIMEOUT, Stack, free_port, wait_for

CURVE_STEP = 0.5  # seconds


class Clients:
    """The reader processes and their line-by-line JSON conversation."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs

    @classmethod
    async def start(cls, url: str, args: argparse.Namespace, logs: Path) -> Clients:
        procs = []
        for k in range(args.clients):
            share = args.readers // args.clients + (k < args.readers % args.clients)
            with (logs / f"storm-c{k}.log").open("ab") as err:
                procs.append(
                    await asyncio.create_subprocess_exec(
                        *[sys.executable, "-m", "bench.storm_readers", "--url", url, "--readers", str(share)],
                        *["--source", f"127.0.0.{2 + k}", "--reconnect", args.reconnect],
                        stdin=asyncio.subprocess.PIPE,
                        stdout=asyncio.subprocess.PIPE,
                        stderr=err,
                        cwd=ROOT,
                        limit=1 << 26,
                    )
                )
        clients = cls(procs)
        await clients.ask({}, "ready", STARTUP_TIMEOUT)
        return clients

    async def ask(self, command: dict[str, object], answer: str, timeout: float) -> list[dict[str, Any]]:
        """Send ``command`` to every process (none: just read) and collect their ``answer`` lines."""

        async def one(proc: asyncio.subprocess.Process) -> dict[str, Any]:
            assert proc.stdin is not None and proc.stdout is not None
            if command:
                proc.stdin.write(json.dumps(command).encode() + b"\n")
                await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), timeout)
            found: dict[str, Any] = json.loads(line) if line else {}
            if found.get("event") != answer:
                raise RuntimeError(f"a reader process answered {line[:200]!r}, expected {answer!r}")
            return found

        return list(await asyncio.gather(*(one(proc) for proc in self.procs)))

    async def stop(self) -> None:
        for proc in self.procs:
            if proc.returncode is None and proc.stdin is not None:
                proc.stdin.write(b'{"cmd": "quit"}\n')
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


class Publisher:
    def __init__(self, stack: Stack, base_url: str) -> None:
        self.client = httpx.AsyncClient(timeout=30)
        self.url = base_url + "/v1/flashes"
        self.headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"}
        self.seq = 0

    async def publish(self, count: int) -> None:
        for _ in range(count):
            response = await self.client.post(
                self.url, content=ticker_body(f"STORM {self.seq} |"), headers=self.headers
            )
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/flashes answered {response.status_code}: {response.text}")
            self.seq += 1


def start_hub(stack: Stack, name: str, port: int) -> subprocess.Popen[bytes]:
    """``ticker hub`` on ``port``, once its ``/readyz`` answers 200."""
    proc = stack.ticker(name, "hub", "--port", str(port))

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {stack.log_tail(name)}")
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200

    wait_for(ready, f"{name} on port {port}", timeout=STARTUP_TIMEOUT * 2)
    return proc


async def storm(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="ticker-storm-") as tmp:
        redis_port, port_a, port_b = free_port(), free_port(), free_port()
        limits = {
            "TICKER_MAX_CONNECTIONS": "1000000",
            "TICKER_MAX_CONNECTIONS_PER_IP": "1000000",
            "TICKER_NEW_CONNECTIONS_PER_SECOND": "1000000",
        }
        stack = Stack(Path(tmp), _env(Path(tmp), REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", **limits))
        clients: Clients | None = None
        try:
            store = stack.redis(redis_port)
            stack.create_token()
            hub_a = start_hub(stack, "hub-a", port_a)
            start_hub(stack, "hub-b", port_b)
            stack.ticker("worker", "worker")
            publisher = Publisher(stack, f"http://127.0.0.1:{port_b}")
            clients = await Clients.start(f"ws://127.0.0.1:{port_a}/v1/stream?lang=en", args, logs)
            connected = await clients.ask({"cmd": "connect"}, "connected", 120 + args.readers / 50)
            if sum(c["failed"] for c in connected):
                raise RuntimeError(f"readers could not connect: {connected}")
            await publisher.publish(args.before)
            await clients.ask({"cmd": "wait", "count": args.before, "timeout": 60}, "waited", 90)

            # 2. stop A
            stopped_at = time.time()
            hub_a.send_signal(signal.SIGKILL if args.kill else signal.SIGTERM)
            await asyncio.to_thread(hub_a.wait, 60)
            down_at = time.time()
            # 3. the missed flashes, through B
            await publisher.publish(args.missed)
            # 4. A again, on the same port
            redis_before = procstat.usage([store.pid])
            restarted_at = time.time()
            hub_a = await asyncio.to_thread(start_hub, stack, "hub-a-again", port_a)
            ready_at = time.time()
            resumed = args.before + args.missed
            await clients.ask({"cmd": "wait", "count": resumed, "timeout": args.timeout}, "waited", args.timeout + 30)
            done_at = time.time()
            hub_cpu = procstat.usage([hub_a.pid]).cpu
            redis_cpu = procstat.usage([store.pid]).cpu - redis_before.cpu
            # 5. live flashes after the storm
            await publisher.publish(args.after)
            total = resumed + args.after
            await clients.ask({"cmd": "wait", "count": total, "timeout": 60}, "waited", 90)
            early = await clients.ask({"cmd": "report", "count": resumed}, "report", 60)
            final = await clients.ask({"cmd": "report", "count": total}, "report", 60)
            await publisher.client.aclose()
        finally:
            if clients is not None:
                await clients.stop()
            stack.close()
    caught = [t for report in early for t in report["caught_up"]]
    times = sorted(t - restarted_at for t in caught if t is not None)
    return {
        "readers": args.readers,
        "reconnect": args.reconnect,
        "stop": "SIGKILL" if args.kill else "SIGTERM",
        "down_s": down_at - stopped_at,
        "ready_s": ready_at - restarted_at,
        "resumed": len(times),
        "never_resumed": len(caught) - len(times),
        "p50_s": _at(times, 0.5),
        "p90_s": _at(times, 0.9),
        "p99_s": _at(times, 0.99),
        "all_s": times[-1] if len(times) == len(caught) and times else math.nan,
        "storm_wall_s": done_at - restarted_at,
        "hub_cpu_s": hub_cpu,
        "redis_cpu_s": redis_cpu,
        "curve": _curve(times),
        "reconnects": sum(r["reconnects"] for r in final),
        "attempts": sum(r["attempts"] for r in final),
        "lost": sum(r["missing"] for r in final),
        "duplicates": sum(r["duplicates"] for r in final),
        "out_of_order": sum(r["out_of_order"] for r in final),
        "endings": _sum_counts(r["endings"] for r in final),
        "attempt_failures": _sum_counts(r["attempt_failures"] for r in final),
        "flashes": total,
        "load": os.getloadavg()[0],
    }


def _sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for each in counts:
        for key, value in each.items():
            total[key] = total.get(key, 0) + value
    return total


def _at(times: list[float], share: float) -> float:
    return times[min(len(times) - 1, math.ceil(share * len(times)) - 1)] if times else math.nan


def _curve(times: list[float]) -> list[tuple[float, int]]:
    """(seconds since A's restart, readers resumed by then), every ``CURVE_STEP`` to the last resume."""
    if not times:
        return []
    steps = math.ceil(times[-1] / CURVE_STEP) + 1
    found, k = [], 0
    for step in range(steps + 1):
        at = step * CURVE_STEP
        while k < len(times) and times[k] <= at:
            k += 1
        found.append((at, k))
    return found


def text(result: dict[str, Any]) -> str:
    lines = [
        f"reconnect storm: {result['readers']} WebSocket readers, hub stopped with {result['stop']}, "
        f"reconnect {result['reconnect']}",
        f"  old hub gone in {result['down_s']:.2f} s; new hub ready {result['ready_s']:.2f} s after its start",
        f"  resumed (had the missed flashes) after the restart: 50% {result['p50_s']:.2f} s, 90% "
        f"{result['p90_s']:.2f} s, 99% {result['p99_s']:.2f} s, all {result['all_s']:.2f} s "
        f"({result['resumed']} resumed, {result['never_resumed']} never)",
        f"  CPU from the restart to the last resume: hub {result['hub_cpu_s']:.2f} s (its start-up included), "
        f"redis {result['redis_cpu_s']:.2f} s",
        f"  {result['reconnects']} reconnects, {result['attempts']} connection attempts; {result['flashes']} flashes: "
        f"lost {result['lost']}, duplicates {result['duplicates']}, readers out of order {result['out_of_order']}; "
        f"load average {result['load']:.1f}",
        "  connections ended by: " + "; ".join(f"{n} × {why}" for why, n in result["endings"].items()),
        "  failed attempts: " + "; ".join(f"{n} × {why}" for why, n in result["attempt_failures"].items()),
        "  curve (s since restart: resumed): " + ", ".join(f"{at:.1f}: {n}" for at, n in result["curve"]),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench storm", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=10000, help="readers (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=2, help="client processes holding them (default: 2)")
    parser.add_argument(
        "--reconnect",
        choices=["immediate", "hint"],
        default="immediate",
        help="readers reconnect at once (default), or after the close's retry= hint, as the clients do",
    )
    parser.add_argument("--kill", action="store_true", help="stop the hub with SIGKILL instead of SIGTERM")
    parser.add_argument("--before", type=int, default=5, help="flashes before the restart (default: 5)")
    parser.add_argument("--missed", type=int, default=5, help="flashes while the hub is down (default: 5)")
    parser.add_argument("--after", type=int, default=5, help="flashes after the storm (default: 5)")
    parser.add_argument("--rounds", type=int, default=1, help="storms, each on fresh processes (default: 1)")
    parser.add_argument("--timeout", type=float, default=120.0, help="longest wait for every resume (s)")
    parser.add_argument("--json", type=Path, help="also write the results to this file")
    args = parser.parse_args(argv)
    if min(args.readers, args.clients, args.before, args.missed, args.after, args.rounds) < 1:
        parser.error("counts must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit()
    results = []
    with tempfile.TemporaryDirectory(prefix="storm-readers-") as logs:
        for round_no in range(1, args.rounds + 1):
            print(f"# storm {round_no}/{args.rounds}", file=sys.stderr, flush=True)
            results.append(asyncio.run(storm(args, Path(logs))))
            print(text(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    failures = ("lost", "duplicates", "out_of_order", "never_resumed")
    return 0 if all(r[key] == 0 for r in results for key in failures) else 1
