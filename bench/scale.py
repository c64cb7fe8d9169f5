"""Scale on one host: many WebSocket readers on one machine's hub processes, and how deliveries/s grow with them.

    python -m bench scale [--readers 100000] [--hub-workers 2] [--clients auto] [--connect-rate 3000]
                          [--messages 20] [--rate 1] [--rounds 1] [--json PATH]

The distributed path on loopback (``redis-server``, ``ticker hub --workers N`` holding the readers, ``ticker
worker``, and one more ``ticker hub`` holding no readers where the editors post, so that a POST is never refused by
a hub at its connection limit), with the hubs' connection limits as a deployment on this host sets them
(``deployment_env``), then:

1. N readers (``/v1/stream?lang=en``) connect from ``--clients`` processes (``bench/scale_readers.py``; about
   16,000 each by default, each from its own loopback address 127.0.0.2, .3, …), ``--connect-rate`` a second in
   all; reported: the time to connect them all, refusals, and per hub process the readers it holds (its open
   files) and its RSS growth per reader; and that every hub process has its own Redis subscription;
2. a few untimed flashes reach every reader;
3. paced: ``--messages`` flashes at ``--rate`` a second; burst: as many again, all at once (``--burst-concurrency``
   POSTs in flight). For each: deliveries and what was lost, fan-out completion per flash (its POST to its last
   reader) p50 / p99 over the flashes, the first reader after the hub got it, deliveries/s, and hub CPU per
   delivery (µs; all hub processes, from /proc).

``--hub-workers 1,2`` runs each count in turn in every round (1 2 1 2 …), to set their deliveries/s side by side.
The readers' arrival times are the kernel's receive timestamps, so the readers' own lag (with ``--nice``) does not
count as fan-out time; the machine's load average is printed with every run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from . import fanout_report, fanout_targets, procstat
from .fanout import (
    BURST_PHASE,
    PACED_PHASE,
    WARMUP_MESSAGES,
    WARMUP_PHASE,
    HubArrivals,
    ReaderProcess,
    between,
    drain,
    probe,
    publish,
    run_phase,
    snapshot,
)
from .fanout_readers import raise_open_files_limit
from .fanout_targets import Target

READERS_PER_CLIENT = 16_000  # under this machine's 20,000 open files per process, and one address's ~28,000 ports
FILES_SPARE = 100  # per hub process, besides its readers: Redis, the listening socket, logs


def deployment_env() -> dict[str, str]:
    """The hub's connection limits as a deployment on this host sets them: the shipped defaults (25,000 per client
    address; 2,000 new connections a second after a burst of 20,000), but at most as many connections per process
    as its open-files limit allows, so that a full hub refuses with a 503 instead of failing its accepts."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    files = hard if hard != resource.RLIM_INFINITY else 1 << 20
    return {
        "TICKER_MAX_CONNECTIONS": str(min(50_000, files - FILES_SPARE)),
        "TICKER_MAX_CONNECTIONS_PER_IP": "25000",
        "TICKER_NEW_CONNECTIONS_PER_SECOND": "2000",
        "TICKER_NEW_CONNECTIONS_BURST": "20000",
    }


def load() -> float:
    return os.getloadavg()[0]


def progress(started: float, what: str) -> None:
    print(f"#   {time.monotonic() - started:6.1f} s  {what}", file=sys.stderr, flush=True)


async def subscriptions(target: Target) -> int:
    """Subscribers of the live channel, the bench's own (``HubArrivals``) and the ingest hub's not counted: one per
    reader hub process."""
    assert target.live is not None
    url, channel = target.live
    async with Redis.from_url(url) as redis:
        found = await redis.pubsub_numsub(channel)
    return int(found[0][1]) - 1 - (target.pub_base_url is not None)


def spread(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> list[dict[str, float]]:
    """Per hub process that holds readers: how many (open files gained) and its RSS growth per reader."""
    rows = []
    for pid, (rss, files) in after.items():
        old_rss, old_files = before.get(pid, (0, files))
        readers = files - old_files
        if readers > 0:
            rows.append({"pid": pid, "readers": readers, "kb_per_reader": (rss - old_rss) / 1024 / readers})
    return rows


async def scenario(target: Target, args: argparse.Namespace, workers: int, logs: Path) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.burst_concurrency, max_keepalive_connections=args.burst_concurrency)
    async with contextlib.AsyncExitStack() as stack:
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30, limits=limits))
        assert target.live is not None
        arrivals = await stack.enter_async_context(HubArrivals(*target.live))
        await probe(target, http, args)
        began = time.monotonic()
        figures: dict[str, Any] = {"hub_workers": workers, "readers": args.readers, "load_start": load()}
        figures["subscriptions"] = await subscriptions(target)
        clients_count = args.clients or math.ceil(args.readers / READERS_PER_CLIENT)
        shares = [args.readers // clients_count + (k < args.readers % clients_count) for k in range(clients_count)]
        options = ("--connect-rate", str(args.connect_rate / clients_count), "--nice", str(args.nice))
        clients: list[ReaderProcess] = []
        try:
            for k, share in enumerate(shares):
                log = logs / f"scale-w{workers}-c{k}.log"
                clients.append(
                    await ReaderProcess.start(
                        target, "ws", share, log, f"127.0.0.{2 + k}", module="bench.scale_readers", options=options
                    )
                )
            memory_before = procstat.processes(target.groups["hub"])
            before = snapshot(target, clients)
            progress(began, f"{len(clients)} reader processes up; connecting")
            for client in clients:
                await client.send(cmd="connect")
            timeout = 120 + 2 * args.readers / args.connect_rate
            connected = list(await asyncio.gather(*(c.expect("connected", timeout) for c in clients)))
            figures["connect"] = fanout_report.connect_figures(connected, between(before, snapshot(target, clients)))
            figures["spread"] = spread(memory_before, procstat.processes(target.groups["hub"]))
            opened = int(figures["connect"]["opened"])
            progress(began, f"{opened} readers open")
            if opened == 0:
                raise RuntimeError(f"no reader could connect: {connected}")
            await publish(target, http, args, WARMUP_PHASE, WARMUP_MESSAGES, args.rate)
            await drain(clients, WARMUP_PHASE, WARMUP_MESSAGES, args.drain_timeout)
            progress(began, "paced")
            figures["paced"] = await run_phase(target, http, clients, args, PACED_PHASE, args.rate, opened, arrivals)
            progress(began, "burst")
            figures["burst"] = await run_phase(target, http, clients, args, BURST_PHASE, None, opened, arrivals)
            figures["spread_end"] = spread(memory_before, procstat.processes(target.groups["hub"]))
            figures["load_end"] = load()
            progress(began, "done; stopping")
            return figures
        finally:
            await asyncio.gather(*(client.stop() for client in clients))


def _kb(rows: list[dict[str, float]]) -> str:
    total = sum(r["readers"] for r in rows)
    mean = sum(r["kb_per_reader"] * r["readers"] for r in rows) / total if total else math.nan
    each = ", ".join(f"{int(r['readers'])} readers {r['kb_per_reader']:.2f} KB" for r in rows)
    return f"{mean:.2f} KB per reader ({each})"


def text(result: dict[str, Any]) -> str:
    c, p, b = result["connect"], result["paced"], result["burst"]
    lines = [
        f"{result['readers']} readers, {result['hub_workers']} hub process(es), {result['subscriptions']} Redis "
        f"subscription(s) on the live channel; load average {result['load_start']:.1f} → {result['load_end']:.1f}",
        f"  connect: {c['opened']} open, {c['failed']} failed in {c['seconds']:.1f} s ({c['per_s']:.0f}/s), "
        f"{c['cpu_per_1k'] * 1000:.0f} µs hub CPU per handshake"
        + (f"; failures: {c['failures']}" if c["failures"] else ""),
        f"  hub RSS growth: after connecting {_kb(result['spread'])}; at the end {_kb(result['spread_end'])}",
    ]
    for name, phase in (("paced", p), ("burst", b)):
        lines.append(
            f"  {name}: {phase['received']:.0f} of {phase['expected']:.0f} delivered, lost {phase['lost']:.0f}, "
            f"dup {phase['duplicates']:.0f}; fan-out completion per flash p50 {phase['fanout_p50_ms']:.0f} ms, "
            f"p99 {phase['fanout_p99_ms']:.0f} ms; delivery p50 {phase['e2e_p50_ms']:.0f} ms, p99 "
            f"{phase['e2e_p99_ms']:.0f} ms; first reader after the hub p50 {phase['first_p50_ms']:.1f} ms; "
            f"{phase['deliveries_per_s']:,.0f} deliveries/s; hub {phase['cpu_per_m_hub']:.2f} µs CPU per delivery "
            f"(path {phase['cpu_per_m']:.2f}, readers {phase['client_cpu_per_m']:.2f}); machine "
            f"{phase['machine_busy'] * 100:.0f} % busy; POST p99 {phase['post_p99_ms']:.0f} ms"
        )
    return "\n".join(lines)


def side_by_side(results: list[dict[str, Any]]) -> str:
    """Deliveries/s per hub-process count, every round, and the median ratio to the first count."""
    counts = sorted({r["hub_workers"] for r in results})
    if len(counts) < 2:
        return ""
    lines = ["hub processes: burst deliveries/s per round (paced in brackets), median"]
    medians = {}
    for n in counts:
        rows = [r for r in results if r["hub_workers"] == n]
        burst = [r["burst"]["deliveries_per_s"] for r in rows]
        medians[n] = statistics.median(burst)
        each = ", ".join(f"{r['burst']['deliveries_per_s']:,.0f} ({r['paced']['deliveries_per_s']:,.0f})" for r in rows)
        lines.append(f"  {n}: {each}; median {medians[n]:,.0f}, {medians[n] / medians[counts[0]]:.2f}×")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=100_000, help="WebSocket readers (default: %(default)s)")
    parser.add_argument(
        "--hub-workers", default="2", help="hub processes, or a list run in turn each round: 1,2 (default: 2)"
    )
    parser.add_argument("--clients", type=int, default=0, help=f"reader processes (0: one per {READERS_PER_CLIENT})")
    parser.add_argument("--connect-rate", type=float, default=3000.0, help="new connections a second, in all")
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        help="niceness of the reader processes (default: 0; starved readers read flashes together, timed as the last)",
    )
    parser.add_argument("--messages", type=int, default=20, help="flashes per phase (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=1.0, help="paced phase: flashes a second (default: 1)")
    parser.add_argument("--burst-concurrency", type=int, default=8, help="POSTs in flight in the burst")
    parser.add_argument("--payload-bytes", type=int, default=300, help="POST body size (default: %(default)s)")
    parser.add_argument(
        "--drain-timeout", type=float, default=60.0, help="longest wait for missing deliveries after a phase (s)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="rounds of every hub-process count (default: 1)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    args = parser.parse_args(argv)
    try:
        args.workers = [int(n) for n in args.hub_workers.split(",") if n.strip()] or [0]
    except ValueError:
        parser.error("--hub-workers: numbers separated by commas")
    if (
        min(args.readers, args.messages, args.rounds, args.burst_concurrency, *args.workers) < 1
        or args.clients < 0
        or args.rate <= 0
        or args.connect_rate <= 0
    ):
        parser.error("counts must be at least 1, rates above 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    raise_open_files_limit()
    env = deployment_env()
    print(f"# hub limits: {' '.join(f'{k}={v}' for k, v in env.items())}", file=sys.stderr, flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="scale-readers-") as logs:
        for round_no in range(1, args.rounds + 1):
            for workers in args.workers:
                print(f"# round {round_no}/{args.rounds}: {workers} hub process(es)", file=sys.stderr, flush=True)
                started = time.monotonic()
                with fanout_targets.ticker(workers, ingest_hub=True, **env) as target:
                    results.append(asyncio.run(scenario(target, args, workers, Path(logs))))
                results[-1]["round"], results[-1]["seconds"] = round_no, time.monotonic() - started
                print(text(results[-1]), flush=True)
    if summary := side_by_side(results):
        print(summary, flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    phases = ("paced", "burst")
    complete = all(r[p]["lost"] == 0 and r[p]["duplicates"] == 0 for r in results for p in phases)
    return 0 if complete and all(r["connect"]["failed"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
