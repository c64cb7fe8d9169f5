"""Ingest→reader latency of the real service, embedded and distributed, on loopback.

For each mode this starts real processes — ``ticker run`` (embedded), or a private ``redis-server`` + ``ticker hub``
+ ``ticker worker`` (Redis) — connects ONE WebSocket reader, then publishes N flashes one after the other over one
keep-alive HTTP connection, paced a fixed interval apart. For each flash it records the time from just before the
POST is sent until the reader has the flash (matched by its ``uri``), all on this process's ``time.perf_counter``.

    python -m bench latency [--mode embedded|redis|both] [--flashes 200] [--pace-ms 20] [--warmup 10]

Reported per mode: end-to-end median / p90 / p99 / max, the POST's own response time (median / p99), how many
flashes never reached the reader, and how many reached it out of event-id order; then redis/embedded of the medians.
Percentiles are nearest-rank. Warm-up flashes (first connection, first script load, ...) are not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import websockets

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 15.0
DELIVERY_TIMEOUT = 5.0  # after the last POST, how long to wait for stragglers before counting them lost


# -- launcher: real processes on free loopback ports ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], bool], what: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.HTTPError, redis.RedisError):
            pass
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


@dataclass
class Stack:
    """The processes of one mode, their logs in ``workdir``; ``close`` stops them in reverse order."""

    workdir: Path
    env: dict[str, str]
    procs: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    base_url: str = ""
    token: str = ""

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        with (self.workdir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                args, env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.procs.append((name, proc))
        return proc

    def ticker(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.spawn(name, [sys.executable, "-m", "ticker_service", *args])

    def redis(self, port: int) -> subprocess.Popen[bytes]:
        """A throwaway redis-server (no persistence) on ``port``, once it answers."""
        proc = self.spawn(
            "redis",
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", str(self.workdir), "--protected-mode", "no"],
        )
        with redis.Redis(port=port, socket_timeout=2) as client:
            wait_for(lambda: bool(client.ping()), f"redis-server on {port}")
        return proc

    def log_tail(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def create_token(self) -> None:
        done = subprocess.run(
            [sys.executable, "-m", "ticker_service", "token", "create", "--name", "bench"],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ticker token create failed: {done.stderr}")
        self.token = done.stdout.strip().splitlines()[-1]

    def serve(self, name: str, command: str) -> None:
        """Start ``ticker run`` or ``ticker hub`` and wait for its /readyz."""
        port = free_port()
        proc = self.ticker(name, command, "--port", str(port))
        self.base_url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"ticker {command} exited: {self.log_tail(name)}")
            return httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200

        wait_for(ready, f"ticker {command} on {self.base_url}")

    def close(self) -> None:
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_") and k != "REDIS_URL"}
    env.update(TICKER_LOG_LEVEL="warning", TICKER_DATA_DIR=str(workdir / "data"), PYTHONUNBUFFERED="1", **extra)
    return env


@contextlib.contextmanager
def embedded_stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="ticker-bench-") as tmp:
        stack = Stack(Path(tmp), _env(Path(tmp)))
        try:
            stack.create_token()
            stack.serve("run", "run")
            yield stack
        finally:
            stack.close()


@contextlib.contextmanager
def redis_stack(**extra_env: str) -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="ticker-bench-") as tmp:
        port = free_port()
        stack = Stack(Path(tmp), _env(Path(tmp), REDIS_URL=f"redis://127.0.0.1:{port}/0", **extra_env))
        try:
            stack.redis(port)
            with redis.Redis(port=port, socket_timeout=2) as client:
                stack.create_token()
                stack.serve("hub", "hub")
                worker = stack.ticker("worker", "worker")

                def polled() -> bool:
                    if worker.poll() is not None:
                        raise RuntimeError(f"ticker worker exited: {stack.log_tail('worker')}")
                    return bool(client.exists("arq:queue:health-check"))

                wait_for(polled, "the worker's first poll")
            yield stack
        finally:
            stack.close()


def redis_poll_stack() -> contextlib.AbstractContextManager[Stack]:
    """The distributed path with the worker's wake-up turned off: what arq's polling alone costs."""
    return redis_stack(TICKER_WORKER_WAKE="false")


STACKS = {"embedded": embedded_stack, "redis": redis_stack, "redis-poll": redis_poll_stack}


# -- measurement ---------------------------------------------------------------------------------------------------


@dataclass
class Result:
    mode: str
    e2e_ms: list[float]
    post_ms: list[float]
    lost: int
    out_of_order: int


def event_key(event_id: str) -> tuple[int, int]:
    """``<epoch>-<ms>-<seq>``: order within one epoch."""
    _, ms, seq = event_id.rsplit("-", 2)
    return int(ms), int(seq)


def body(n: int) -> dict[str, object]:
    return {
        "headline": f"BENCH: latency flash {n}",
        "language": "en",
        "category": "politics",
        "urgency": 1,
        "regions": ["europe"],
    }


async def wait_readers(client: httpx.AsyncClient, count: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while (await client.get("/readyz")).json().get("readers") != count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the hub never had {count} reader(s)")
        await asyncio.sleep(0.02)


async def measure(mode: str, stack: Stack, flashes: int, pace: float, warmup: int) -> Result:
    arrived: dict[str, float] = {}  # uri -> perf_counter when the reader had it
    order: list[tuple[str, str]] = []  # (uri, event id) in arrival order
    news = asyncio.Event()

    ws_url = stack.base_url.replace("http://", "ws://", 1) + "/v1/stream"
    async with (
        websockets.connect(ws_url, compression=None, open_timeout=STARTUP_TIMEOUT) as ws,
        httpx.AsyncClient(
            base_url=stack.base_url, timeout=10, headers={"Authorization": f"Bearer {stack.token}"}
        ) as client,
    ):

        async def read() -> None:
            async for message in ws:
                now = time.perf_counter()
                event = json.loads(message)
                arrived[event["flash"]["uri"]] = now
                order.append((event["flash"]["uri"], event["event_id"]))
                news.set()

        async def wait_arrived(uris: list[str], timeout: float) -> None:
            deadline = time.perf_counter() + timeout
            while not all(u in arrived for u in uris) and time.perf_counter() < deadline:
                news.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(news.wait(), max(0.0, deadline - time.perf_counter()))

        async def post(n: int) -> tuple[str, float, float]:
            started = time.perf_counter()
            response = await client.post("/v1/flashes", json=body(n))
            answered = time.perf_counter()
            if response.status_code != 201:
                raise RuntimeError(f"POST /v1/flashes: {response.status_code} {response.text}")
            return response.json()["uri"], started, answered

        reader = asyncio.create_task(read())
        try:
            await wait_readers(client, 1)
            for n in range(warmup):  # one at a time, each delivered, before anything is timed
                uri, _, _ = await post(-1 - n)
                await wait_arrived([uri], DELIVERY_TIMEOUT)
                if uri not in arrived:
                    raise RuntimeError(f"{mode}: a warm-up flash never reached the reader")
            sent: dict[str, float] = {}
            post_ms: list[float] = []
            for n in range(flashes):
                uri, started, answered = await post(n)
                sent[uri] = started
                post_ms.append((answered - started) * 1000)
                await asyncio.sleep(max(0.0, started + pace - time.perf_counter()))
            await wait_arrived(list(sent), DELIVERY_TIMEOUT)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                await reader

    e2e_ms = [(arrived[u] - t) * 1000 for u, t in sent.items() if u in arrived]
    timed = [event_id for uri, event_id in order if uri in sent]
    out_of_order = sum(1 for a, b in zip(timed, timed[1:], strict=False) if event_key(b) < event_key(a))
    return Result(mode, e2e_ms, post_ms, flashes - len(e2e_ms), out_of_order)


# -- report --------------------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (``p`` in 0..100)."""
    if not values:
        return math.nan
    ranked = sorted(values)
    return ranked[max(0, math.ceil(p / 100 * len(ranked)) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def redis_version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError:
        return "not found"
    return next((part.removeprefix("v=") for part in out.split() if part.startswith("v=")), out.strip())


def report(results: list[Result], args: argparse.Namespace) -> str:
    lines = [
        f"ticker ingest→reader latency: {args.flashes} flashes, {args.pace_ms:g} ms apart, sequential POSTs on one "
        f"keep-alive connection, 1 WebSocket reader, loopback ({args.warmup} warm-up flashes not counted)",
        f"python {platform.python_version()}, redis-server {redis_version()}, {os.cpu_count()} CPUs, "
        f"{platform.system()} {platform.release()}",
        "",
        f"{'mode':<10} {'e2e median':>10} {'p90':>8} {'p99':>8} {'max':>8}   {'POST median':>11} {'p99':>8}"
        f"   {'lost':>4} {'out-of-order':>12}",
    ]
    for r in results:
        e = r.e2e_ms
        worst = max(e, default=math.nan)
        lines.append(
            f"{r.mode:<10} {median(e):>10.2f} {percentile(e, 90):>8.2f} {percentile(e, 99):>8.2f} {worst:>8.2f}"
            f"   {median(r.post_ms):>11.2f} {percentile(r.post_ms, 99):>8.2f}   {r.lost:>4} {r.out_of_order:>12}"
        )
    lines.append("(all times in ms; e2e = just before the POST is sent → the reader has the flash)")
    by_mode = {r.mode: r for r in results}
    if "embedded" in by_mode and "redis" in by_mode:
        ratio = median(by_mode["redis"].e2e_ms) / median(by_mode["embedded"].e2e_ms)
        lines.append(f"redis/embedded e2e median ratio: {ratio:.2f}x")
    if "redis" in by_mode and "redis-poll" in by_mode:
        ratio = median(by_mode["redis-poll"].e2e_ms) / median(by_mode["redis"].e2e_ms)
        lines.append(f"redis-poll/redis e2e median ratio: {ratio:.2f}x (what waking the worker saves)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench latency", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        choices=["embedded", "redis", "redis-poll", "both", "all"],
        default="both",
        help="which deployment to measure: both = embedded + redis; all adds redis-poll, the worker "
        "without its wake-up (default: %(default)s)",
    )
    parser.add_argument("--flashes", type=int, default=200, help="flashes timed per mode (default: %(default)s)")
    parser.add_argument(
        "--pace-ms", type=float, default=20.0, help="time from one POST's start to the next's (default: %(default)s)"
    )
    parser.add_argument("--warmup", type=int, default=10, help="untimed flashes first (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.flashes < 1 or args.warmup < 0 or args.pace_ms < 0:
        parser.error("--flashes must be at least 1, --warmup and --pace-ms at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    modes = {"both": ["embedded", "redis"], "all": ["embedded", "redis", "redis-poll"]}.get(args.mode, [args.mode])
    results = []
    for mode in modes:
        with STACKS[mode]() as stack:
            results.append(asyncio.run(measure(mode, stack, args.flashes, args.pace_ms / 1000, args.warmup)))
    print(report(results, args), flush=True)
    return 1 if any(r.lost for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
