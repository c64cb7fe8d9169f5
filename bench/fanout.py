"""Fan-out: one publisher, many readers — ticker against Nchan and Node ``ws`` on the same machine, on loopback.

    python -m bench fanout [--targets ticker,nchan,node] [--transport ws|sse] [--readers 1000] [--clients 2]
                           [--messages 100] [--rate 10] [--rounds 2] [--hub-workers 1] [--write-docs] [--json PATH]

Every round starts each target afresh, in turn (A B C A B C …), and runs one scenario against it:

1. warm-up: a probe reader connects and messages are published until one reaches it (the whole path is up);
2. connect: N readers (``--readers``), spread over K client processes (``--clients``, ``bench/fanout_readers.py``),
   open their WebSocket (``/v1/stream?lang=en``) or SSE (``/v1/events?lang=en``) connections; each process says
   when all of its readers are open;
3. a few untimed messages reach every reader (first-use costs are paid);
4. paced: M messages (``--messages``) published ``--rate`` per second; then burst: M more, all at once, at most
   ``--burst-concurrency`` POSTs in flight. Each message's text (a flash's headline; ticker's POST body is
   ``--payload-bytes`` long, and the peers publish what ticker delivers for that flash, so every server writes the
   same bytes: see ``bench/fanout_targets.py``) starts with ``FANOUT <phase> <seq> <time.time() at send>``, and
   the readers time every arrival against it. After each phase the readers wait (at most ``--drain-timeout``)
   for what is missing.

The servers' CPU (user + system of their whole process trees, from /proc) and memory (RSS) are sampled around the
connect phase and around each publish phase. What each figure means is in ``bench/fanout_report.py``; the results
are medians over rounds, printed as a table with the ticker/peer ratios, and with ``--write-docs`` written to
``docs/benchmarks.md`` (with a chart in ``docs/images/``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import websockets
from redis.asyncio import Redis

from . import fanout_report, fanout_targets, procstat
from .fanout_readers import raise_open_files_limit
from .fanout_targets import Target
from .fanout_wire import find_marker, marker
from .latency import ROOT, STARTUP_TIMEOUT

PROBE_PHASE, WARMUP_PHASE, PACED_PHASE, BURST_PHASE = 9, 0, 1, 2
WARMUP_MESSAGES = 3
PROBE_TIMEOUT = 30.0


class ReaderProcess:
    """One ``bench.fanout_readers`` process and its line-by-line JSON conversation."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    async def start(
        cls,
        target: Target,
        transport: str,
        readers: int,
        log: Path,
        source: str,
        *,
        module: str = "bench.fanout_readers",
        options: tuple[str, ...] | None = None,
    ) -> ReaderProcess:
        """``module`` runs the readers: ``bench.fanout_readers``, or ``bench.scale_readers`` with its ``options``."""
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                "--url",
                target.reader_url(transport),
                *(options if options is not None else ("--transport", transport)),
                "--readers",
                str(readers),
                "--source",
                source,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=err,
                cwd=ROOT,
                limit=1 << 28,  # a drain report carries every delivery's latency on one line
            )
        client = cls(proc, log)
        await client.expect("ready", STARTUP_TIMEOUT)
        return client

    async def send(self, **command: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()

    async def expect(self, event: str, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"reader process exited: {self.log.read_text(errors='replace')[-2000:]}")
        message: dict[str, Any] = json.loads(line)
        if message.get("event") != event:
            raise RuntimeError(f"reader process said {message.get('event')!r}, expected {event!r}")
        return message

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(OSError, RuntimeError):
                await self.send(cmd="quit")
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


class HubArrivals:
    """When each message reached the hub: a subscriber of the channel the hub listens on notes every marker's
    receipt (``time.time()``, the readers' clock), so the bench can time the first reader from the hub's side."""

    def __init__(self, url: str, channel: str) -> None:
        self.redis = Redis.from_url(url)
        self.channel = channel
        self.seen: dict[tuple[int, int], float] = {}
        self.ready = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> HubArrivals:
        self.task = asyncio.create_task(self._listen())
        await asyncio.wait_for(self.ready.wait(), STARTUP_TIMEOUT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        await self.redis.aclose()

    async def _listen(self) -> None:
        async with self.redis.pubsub() as pubsub:
            await pubsub.subscribe(self.channel)
            self.ready.set()
            async for message in pubsub.listen():
                now = time.time()
                if message["type"] == "message" and (mark := find_marker(message["data"])) is not None:
                    self.seen.setdefault((mark[0], mark[1]), now)

    def phase(self, phase: int) -> dict[int, float]:
        return {seq: at for (p, seq), at in self.seen.items() if p == phase}


@dataclass
class Snapshot:
    at: float
    server: dict[str, procstat.Usage]
    clients: procstat.Usage
    me: float
    machine: tuple[float, float]


def snapshot(target: Target, clients: list[ReaderProcess]) -> Snapshot:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return Snapshot(
        at=time.monotonic(),
        server=procstat.usage_by_group(target.groups),
        clients=procstat.usage(client.proc.pid for client in clients),
        me=own.ru_utime + own.ru_stime,
        machine=procstat.machine(),
    )


def between(before: Snapshot, after: Snapshot) -> dict[str, float]:
    """CPU seconds and RSS growth per process group from ``before`` to ``after``, and what else ran meanwhile."""
    found = {
        "seconds": after.at - before.at,
        "clients_cpu": after.clients.cpu - before.clients.cpu,
        "publisher_cpu": after.me - before.me,
    }
    for name in after.server:
        found[f"{name}_cpu"] = after.server[name].cpu - before.server[name].cpu
        found[f"{name}_cpu_stat"] = after.server[name].cpu_stat - before.server[name].cpu_stat
        found[f"{name}_user"] = after.server[name].user - before.server[name].user
        found[f"{name}_sys"] = after.server[name].system - before.server[name].system
        found[f"{name}_rss"] = after.server[name].rss - before.server[name].rss
    busy = after.machine[0] - before.machine[0]
    found["machine_busy"] = busy / max(after.machine[1] - before.machine[1], 1e-9)
    found["other_cpu"] = busy - found["path_cpu"] - found["clients_cpu"] - found["publisher_cpu"]
    return found


def payload(phase: int, seq: int, sent: float, size: int) -> str:
    head = marker(phase, seq, sent)
    return head + "x" * max(0, size - len(head))


async def publish(
    target: Target, client: httpx.AsyncClient, args: argparse.Namespace, phase: int, messages: int, rate: float | None
) -> list[tuple[float, float, float]]:
    """Publish ``messages`` (``rate`` per second, or all at once); (send time, POST seconds, time it was due) for
    each. A message is sent late when ``--burst-concurrency`` POSTs are still in flight: a server whose POSTs
    queue behind its fan-out then sees fewer messages a second, and its fan-out times from the send look better
    than those from when the message was due."""
    gate = asyncio.Semaphore(args.burst_concurrency)
    size = target.text_size(args.payload_bytes)
    start, start_wall = time.monotonic(), time.time()

    async def one(seq: int) -> tuple[float, float, float]:
        due = seq / rate if rate else 0.0
        if rate:
            await asyncio.sleep(max(0.0, start + due - time.monotonic()))
        async with gate:
            sent, began = time.time(), time.perf_counter()
            await target.publish(client, payload(phase, seq, sent, size))
            return sent, time.perf_counter() - began, start_wall + due

    return list(await asyncio.gather(*(one(seq) for seq in range(messages))))


async def probe(target: Target, client: httpx.AsyncClient, args: argparse.Namespace) -> None:
    """Publish until one message reaches a WebSocket reader: every process on the path is up and connected."""
    deadline = time.monotonic() + PROBE_TIMEOUT
    async with websockets.connect(target.reader_url("ws"), compression=None, open_timeout=STARTUP_TIMEOUT) as ws:
        for _ in range(int(PROBE_TIMEOUT)):
            await publish(target, client, args, PROBE_PHASE, 1, None)
            with contextlib.suppress(TimeoutError):
                while time.monotonic() < deadline:
                    mark = find_marker(await asyncio.wait_for(ws.recv(decode=False), 1.0))
                    if mark is not None and mark[0] == PROBE_PHASE:
                        return
            if time.monotonic() > deadline:
                break
    raise TimeoutError(f"{target.name}: no message reached a probe reader within {PROBE_TIMEOUT:.0f} s")


async def drain(clients: list[ReaderProcess], phase: int, messages: int, timeout: float) -> list[dict[str, Any]]:
    for client in clients:
        await client.send(cmd="drain", phase=phase, messages=messages, timeout=timeout)
    return list(await asyncio.gather(*(client.expect("drained", timeout + 30) for client in clients)))


async def run_phase(
    target: Target,
    http: httpx.AsyncClient,
    clients: list[ReaderProcess],
    args: argparse.Namespace,
    phase: int,
    rate: float | None,
    opened: int,
    arrivals: HubArrivals | None,
) -> dict[str, float]:
    before = snapshot(target, clients)
    sends = await publish(target, http, args, phase, args.messages, rate)
    reports = await drain(clients, phase, args.messages, args.drain_timeout)
    usage = between(before, snapshot(target, clients))
    at_hub = arrivals.phase(phase) if arrivals is not None else None
    return fanout_report.phase_figures(reports, sends, opened, usage, at_hub)


async def scenario(target: Target, args: argparse.Namespace, logs: Path, round_no: int) -> dict[str, object]:
    """One target, one round: connect the readers, then the paced and the burst phase."""
    limits = httpx.Limits(max_connections=args.burst_concurrency, max_keepalive_connections=args.burst_concurrency)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30, limits=limits))
        arrivals = await stack.enter_async_context(HubArrivals(*target.live)) if target.live else None
        await probe(target, http, args)
        shares = [args.readers // args.clients + (k < args.readers % args.clients) for k in range(args.clients)]
        clients: list[ReaderProcess] = []
        try:
            for k, share in enumerate(shares):
                log = logs / f"{target.name}-r{round_no}-c{k}.log"
                # Each client process connects from its own loopback address: its own range of ephemeral ports.
                source = f"127.0.0.{2 + k}"
                clients.append(await ReaderProcess.start(target, args.transport, share, log, source))
            before = snapshot(target, clients)
            for client in clients:
                await client.send(cmd="connect")
            connect_timeout = 60 + args.readers / 50
            connected = list(await asyncio.gather(*(c.expect("connected", connect_timeout) for c in clients)))
            figures: dict[str, object] = {"target": target.name, "round": round_no}
            figures["connect"] = fanout_report.connect_figures(connected, between(before, snapshot(target, clients)))
            opened = sum(int(c["opened"]) for c in connected)
            if opened == 0:
                raise RuntimeError(f"{target.name}: no reader could connect: {connected}")
            await publish(target, http, args, WARMUP_PHASE, WARMUP_MESSAGES, args.rate)
            await drain(clients, WARMUP_PHASE, WARMUP_MESSAGES, args.drain_timeout)
            figures["paced"] = await run_phase(target, http, clients, args, PACED_PHASE, args.rate, opened, arrivals)
            figures["burst"] = await run_phase(target, http, clients, args, BURST_PHASE, None, opened, arrivals)
            return figures
        finally:
            for client in clients:
                await client.stop()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench fanout", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--targets",
        default=",".join(fanout_targets.TARGETS),
        help="comma-separated, from: ticker, nchan, node (default: %(default)s)",
    )
    parser.add_argument("--transport", choices=["ws", "sse"], default="ws", help="readers' transport (default: ws)")
    parser.add_argument("--readers", type=int, default=1000, help="readers per target (default: %(default)s)")
    parser.add_argument("--clients", type=int, default=2, help="client processes holding them (default: %(default)s)")
    parser.add_argument("--messages", type=int, default=100, help="messages per phase (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=10.0, help="paced phase: messages/s (default: %(default)s)")
    parser.add_argument(
        "--burst-concurrency", type=int, default=8, help="POSTs in flight at once in the burst (default: %(default)s)"
    )
    parser.add_argument(
        "--payload-bytes",
        type=int,
        default=300,
        help="published body size: the peers' message, ticker's POST JSON (default: %(default)s)",
    )
    parser.add_argument(
        "--peer-body",
        choices=["ticker", "padded"],
        default="ticker",
        help="the peers publish what ticker delivers for the same flash (default), or the padded marker",
    )
    parser.add_argument("--rounds", type=int, default=2, help="rounds of all targets, interleaved (default: 2)")
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=5.0,
        help="after a phase, how long readers wait for missing messages (default: %(default)s s)",
    )
    parser.add_argument(
        "--hub-workers",
        type=int,
        default=1,
        help="ticker hub processes (`ticker hub --workers N` when N > 1; default: %(default)s)",
    )
    parser.add_argument("--nchan-workers", type=int, default=1, help="nginx worker_processes (default: 1)")
    parser.add_argument("--json", type=Path, help="also write every figure, per round and median, to this file")
    parser.add_argument(
        "--write-docs",
        action="store_true",
        help="write the table into docs/benchmarks.md and a chart into docs/images/",
    )
    args = parser.parse_args(argv)
    args.targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = sorted(set(args.targets) - set(fanout_targets.TARGETS))
    if unknown or not args.targets:
        parser.error(f"--targets: unknown {', '.join(unknown) or '(none given)'}")
    if (
        min(
            args.readers,
            args.clients,
            args.messages,
            args.rounds,
            args.burst_concurrency,
            args.hub_workers,
            args.nchan_workers,
        )
        < 1
        or args.rate <= 0
        or args.clients > args.readers
    ):
        parser.error("counts must be at least 1, --rate above 0, and --clients at most --readers")
    if args.payload_bytes < 120:
        parser.error("--payload-bytes must be at least 120 (the marker and ticker's JSON fields)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit()  # the servers started from here inherit it
    fanout_targets.prepare(args.targets)
    started = time.monotonic()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="fanout-readers-") as logs:
        for round_no in range(1, args.rounds + 1):
            for name in args.targets:
                print(
                    f"# round {round_no}/{args.rounds}: {name}, {args.readers} {args.transport} readers",
                    file=sys.stderr,
                    flush=True,
                )
                with fanout_targets.start(
                    name, hub_workers=args.hub_workers, nchan_workers=args.nchan_workers
                ) as target:
                    target.transport, target.peer_body = args.transport, args.peer_body
                    results.append(asyncio.run(scenario(target, args, Path(logs), round_no)))
                print("#   " + fanout_report.progress_line(results[-1]), file=sys.stderr, flush=True)
    summary = fanout_report.summarize(results, args, fanout_targets.versions(args.targets), time.monotonic() - started)
    print(fanout_report.text_report(summary), flush=True)
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    if args.write_docs:
        for path in fanout_report.write_docs(summary, ROOT):
            print(f"wrote {path.relative_to(ROOT)}", flush=True)
    return 0 if fanout_report.all_delivered(summary) else 1


if __name__ == "__main__":
    sys.exit(main())
