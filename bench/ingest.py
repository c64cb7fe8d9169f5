"""``python -m bench ingest``: what a flash costs before its first reader, side by side with Nchan's publish.

Concurrent editors POST flashes and no reader is connected, so what is measured is the ingest path alone: for
ticker the hub (which answers the POST), the worker (which runs the fan-out job) and Redis; for Nchan its one
nginx process. For each target and round:

* CPU of each process tree ÷ flashes (ms per flash), from ``/proc`` before the first and after the last flash;
* POST latency p50/p99 (request sent → response read, per editor on its own keep-alive connection);
* flashes/s: answered POSTs per second, and for ticker also "through", up to the moment the worker had
  published the last flash on the live channel (a Redis subscriber of the bench's own counts them).

``--rate 0`` (the default) posts as fast as the editors get answers, so flashes queue up; ``--rate R`` paces the
editors together at R flashes/s. Rounds alternate the targets, so both see the same machine.

``--readers N`` connects N WebSocket readers first (one ``bench.fanout_readers`` process): every flash carries the
fan-out benchmark's marker, and the round reports deliveries lost or repeated and the delivery latency (POST sent →
the reader's socket read) p50/p99, so the flashes/s are those the whole path sustains, readers included.
``--editor-processes P`` spreads the editors over P processes, for rates one process of httpx clients cannot post.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import math
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from ticker_service.keys import ARQ_QUEUE, LIVE_CHANNEL, OPS_WORKERS

from . import fanout_targets, procstat
from .fanout import ReaderProcess
from .fanout_targets import Target
from .fanout_wire import marker
from .latency import percentile

FANOUT_PENDING = "ticker:fanout:pending"  # by name: the tree measured may be older than the key's definition
SETTLE_TIMEOUT = 60.0  # after the last POST, how long the worker may take to publish the queued flashes
_RAISED_LIMITS = {"TICKER_PUBLISH_RATE_PER_MINUTE": "100000000"}  # the editors' write limit, raised past the load


@dataclass
class Round:
    target: str
    flashes: int
    elapsed: float  # first POST sent → last POST answered
    through: float  # first POST sent → last flash published on pub/sub (ticker), else = elapsed
    post_ms: list[float]
    cpu_ms: dict[str, float]  # group → CPU ms per flash
    published: int
    machine_busy: float  # share of all CPUs busy during the round (0..1)
    errors: list[str] = field(default_factory=list)
    readers: int = 0
    delivered: int = 0  # deliveries counted by the readers (readers × flashes when nothing is lost)
    duplicates: int = 0
    delivery_ms: list[float] = field(default_factory=list)


async def _count_published(url: str, marker: str, expected: int, done: asyncio.Event, seen: list[float]) -> None:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(LIVE_CHANNEL)
    try:
        while len(seen) < expected:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if message is not None and marker.encode() in message["data"]:
                seen.append(time.perf_counter())
                if len(seen) >= expected:
                    done.set()
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
            await client.aclose()


async def _editor(
    target: Target, texts: list[str], rate: float, start: float, stride: int, offset: int, post_ms: list[float]
) -> list[str]:
    """Post ``texts`` in turn; ``{sent}`` in a text becomes the time it is sent (the readers' latency marker)."""
    errors: list[str] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        for i, text in enumerate(texts):
            if rate > 0:  # the editors together post ``rate`` flashes/s: this editor's n-th is due at its slot
                delay = start + (offset + i * stride) / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            sent = time.perf_counter()
            if "{sent}" in text:
                text = text.replace("{sent}", f"{time.time():.6f}")
            try:
                await target.publish(client, text)
            except (RuntimeError, httpx.HTTPError) as exc:
                errors.append(str(exc)[:200])
                continue
            post_ms.append((time.perf_counter() - sent) * 1000)
    return errors


def _ready() -> None:
    """A no-op run in each editor process before the clock starts: spawning and importing are not measured."""


async def _editors(
    target: Target, chunks: list[tuple[int, list[str]]], rate: float, start: float, stride: int
) -> tuple[list[str], list[float]]:
    """Editors (offset, texts) concurrently in this event loop: their errors and POST latencies."""
    post_ms: list[float] = []
    results = await asyncio.gather(
        *(_editor(target, texts, rate, start, stride, offset, post_ms) for offset, texts in chunks)
    )
    return [error for result in results for error in result], post_ms


def _editors_in_process(
    target: Target, chunks: list[tuple[int, list[str]]], rate: float, start: float, stride: int
) -> tuple[list[str], list[float]]:
    """One editor process's share of :func:`_editors`, in an event loop of its own."""
    return asyncio.run(_editors(target, chunks, rate, start, stride))


async def _post_all(
    target: Target, per_editor: list[list[str]], args: argparse.Namespace
) -> tuple[float, list[str], list[float]]:
    """Every editor's flashes, from this process or from ``--editor-processes`` processes (one event loop of
    httpx clients answers ~1,100 POSTs/s on this machine: more would measure the harness). Returns the start
    (``perf_counter``, the same clock in every process), the errors and the POST latencies."""
    if args.editor_processes <= 1:
        start = time.perf_counter()
        errors, post_ms = await _editors(target, list(enumerate(per_editor)), args.rate, start, args.editors)
        return start, errors, post_ms
    loop = asyncio.get_running_loop()
    spawn = multiprocessing.get_context("spawn")
    shares: list[list[tuple[int, list[str]]]] = [[] for _ in range(args.editor_processes)]
    for e, chunk in enumerate(per_editor):
        shares[e % args.editor_processes].append((e, chunk))
    with concurrent.futures.ProcessPoolExecutor(args.editor_processes, mp_context=spawn) as pool:
        await asyncio.gather(*(loop.run_in_executor(pool, _ready) for _ in range(args.editor_processes)))
        start = time.perf_counter() + 0.05  # the processes' first slots (paced) from a common instant
        done = await asyncio.gather(
            *(
                loop.run_in_executor(pool, _editors_in_process, target, share, args.rate, start, args.editors)
                for share in shares
            )
        )
    return start, [error for errors, _ in done for error in errors], [ms for _, post_ms in done for ms in post_ms]


async def _measure(target: Target, redis_url: str | None, args: argparse.Namespace, round_no: int) -> Round:
    marker = f"ingest{round_no}x{int(time.time() * 1000) % 10**8}"
    readers = await _connect_readers(target, args) if args.readers else None
    # A few flashes first, untimed: connections, caches, the worker's first job.
    async with httpx.AsyncClient(timeout=30) as client:
        for n in range(args.warmup):
            await target.publish(client, f"warm-up {n}")
    if redis_url is not None:
        await _settled(redis_url)
    texts = [f"{marker} flash {n} " for n in range(args.flashes)]
    if readers is not None:  # the fan-out benchmark's marker, with the time each is sent
        texts = [_reader_marker(round_no, n) + f" {marker}" for n in range(args.flashes)]
    per_editor = [texts[e :: args.editors] for e in range(args.editors)]
    published: list[float] = []
    done = asyncio.Event()
    counter = None
    if redis_url is not None:
        counter = asyncio.create_task(_count_published(redis_url, marker, args.flashes, done, published))
        await asyncio.sleep(0.2)  # let the subscription reach Redis (counted from here on; not a synchronisation)
    before = procstat.usage_by_group(target.groups)
    busy0, total0 = procstat.machine()
    start, errors, post_ms = await _post_all(target, per_editor, args)
    elapsed = time.perf_counter() - start
    if counter is not None:
        try:
            await asyncio.wait_for(done.wait(), SETTLE_TIMEOUT)
        except TimeoutError:
            errors.append(f"only {len(published)} of {args.flashes} flashes published within {SETTLE_TIMEOUT:g} s")
        counter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counter
    through = (max(published) - start) if published else elapsed
    drained: dict[str, object] = {}
    if readers is not None:
        try:
            await readers.send(cmd="drain", phase=round_no, messages=args.flashes, timeout=SETTLE_TIMEOUT)
            drained = await readers.expect("drained", SETTLE_TIMEOUT + 30)
        finally:
            await readers.stop()
    after = procstat.usage_by_group(target.groups)
    busy1, total1 = procstat.machine()
    flashes = max(1, len(post_ms))
    cpu_ms = {name: (after[name].cpu - before[name].cpu) * 1000 / flashes for name in target.groups}
    return Round(
        target=target.name,
        flashes=len(post_ms),
        elapsed=elapsed,
        through=max(through, elapsed),
        post_ms=post_ms,
        cpu_ms=cpu_ms,
        published=len(published) if redis_url else len(post_ms),
        machine_busy=(busy1 - busy0) / max(1e-9, total1 - total0),
        errors=errors,
        readers=args.readers,
        delivered=int(drained.get("received", 0)),  # type: ignore[call-overload]
        duplicates=int(drained.get("duplicates", 0)),  # type: ignore[call-overload]
        delivery_ms=[us / 1000 for us in drained.get("latencies_us", [])],  # type: ignore[attr-defined]
    )


async def _settled(url: str) -> None:
    """Wait until the worker is up (it reports) and has done the warm-up's work: its start-up is not measured."""
    client = aioredis.Redis.from_url(url)
    deadline = time.monotonic() + SETTLE_TIMEOUT
    try:
        while time.monotonic() < deadline:
            async with client.pipeline(transaction=False) as pipe:
                pipe.scard(OPS_WORKERS)
                pipe.zcount(ARQ_QUEUE, "-inf", int(time.time() * 1000))
                pipe.zcard(FANOUT_PENDING)
                workers, due, pending = await pipe.execute()
            if workers and not due and not pending:
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("the worker did not start, or not finish the warm-up flashes")
    finally:
        await client.aclose()


def _reader_marker(round_no: int, n: int) -> str:
    return marker(round_no, n, 0.0).replace("0.000000", "{sent}")


async def _connect_readers(target: Target, args: argparse.Namespace) -> ReaderProcess:
    """One reader process with ``args.readers`` WebSocket readers, all open before the first flash."""
    log = Path(tempfile.gettempdir()) / f"bench-ingest-readers-{os.getpid()}.log"
    readers = await ReaderProcess.start(target, "ws", args.readers, log, "127.0.0.1")
    await readers.send(cmd="connect")
    connected = await readers.expect("connected", 120)
    if connected["opened"] != args.readers:
        await readers.stop()
        raise RuntimeError(f"only {connected['opened']} of {args.readers} readers connected: {connected['failures']}")
    return readers


def _run_target(name: str, args: argparse.Namespace, round_no: int) -> Round:
    if name == "ticker":
        with fanout_targets.ticker(**_RAISED_LIMITS) as target:
            return asyncio.run(_measure(target, _ticker_redis_url(target), args, round_no))
    with fanout_targets.start(name) as target:
        return asyncio.run(_measure(target, None, args, round_no))


def _ticker_redis_url(target: Target) -> str:
    """Read the hub's REDIS_URL from its environment (``/proc/PID/environ``): the target does not expose it."""
    pid = target.groups["hub"][0]
    with open(f"/proc/{pid}/environ", "rb") as env:
        for entry in env.read().split(b"\0"):
            if entry.startswith(b"REDIS_URL="):
                return entry.split(b"=", 1)[1].decode()
    raise RuntimeError("the ticker hub has no REDIS_URL")


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def report(rounds: list[Round], args: argparse.Namespace) -> str:
    pace = "as fast as answered (flashes queue up)" if args.rate <= 0 else f"paced at {args.rate:g} flashes/s"
    lines = [
        f"ingest: {args.flashes} flashes per round from {args.editors} concurrent editors"
        f" in {args.editor_processes} process(es), {pace}, "
        f"{args.readers or 'no'} readers; "
        f"{args.rounds} round(s), targets alternating; {args.warmup} warm-up flashes not counted",
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.system()} {platform.release()}",
        "",
        f"{'target':<7} {'round':>5} {'CPU ms/flash: path':>19} {'hub':>6} {'worker':>7} {'redis':>6}"
        f"  {'POST p50':>8} {'p99':>7}  {'answered/s':>10} {'through/s':>9}  {'machine busy':>12}",
    ]
    for n, r in enumerate(rounds):
        cpu = r.cpu_ms
        lines.append(
            f"{r.target:<7} {n // len(args.targets) + 1:>5} {cpu.get('path', math.nan):>19.3f}"
            f" {cpu.get('hub', math.nan):>6.3f} {cpu.get('worker', math.nan):>7.3f} {cpu.get('redis', math.nan):>6.3f}"
            f"  {_median(r.post_ms):>8.2f} {percentile(r.post_ms, 99):>7.2f}"
            f"  {r.flashes / r.elapsed:>10.0f} {r.published / r.through:>9.0f}  {r.machine_busy:>11.0%}"
        )
        if r.readers:
            expected = r.readers * r.flashes
            lines.append(
                f"    {r.readers} readers: {r.delivered} of {expected} deliveries ({expected - r.delivered} lost,"
                f" {r.duplicates} repeated); delivery p50 {_median(r.delivery_ms):.1f} ms,"
                f" p99 {percentile(r.delivery_ms, 99):.1f} ms"
            )
        lines.extend(f"    error: {error}" for error in r.errors[:5])
    by_target: dict[str, list[Round]] = {}
    for r in rounds:
        by_target.setdefault(r.target, []).append(r)
    if "ticker" in by_target and "nchan" in by_target:
        ticker = _median([r.cpu_ms["path"] for r in by_target["ticker"]])
        nchan = _median([r.cpu_ms["path"] for r in by_target["nchan"]])
        lines.append(
            f"ticker/nchan CPU per flash (medians of rounds): {ticker:.3f} / {nchan:.3f} = {ticker / nchan:.1f}x"
        )
    lines.append("(CPU: every process of the target's path; POST latency in ms; through/s: until the worker published)")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="ticker,nchan", help="comma-separated: ticker, nchan, node")
    parser.add_argument("--editors", type=int, default=10, help="concurrent editors (default: %(default)s)")
    parser.add_argument("--flashes", type=int, default=600, help="flashes per round (default: %(default)s)")
    parser.add_argument("--rate", type=float, default=0.0, help="flashes/s in all; 0 = unpaced (default)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds per target (default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed flashes first (default: %(default)s)")
    parser.add_argument("--readers", type=int, default=0, help="WebSocket readers of every flash (default: none)")
    parser.add_argument(
        "--editor-processes", type=int, default=1, help="processes the editors are spread over (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    args.targets = [name.strip() for name in args.targets.split(",") if name.strip()]
    unknown = [name for name in args.targets if name not in fanout_targets.TARGETS]
    if unknown:
        parser.error(f"unknown target(s): {', '.join(unknown)}")
    if args.readers and args.targets != ["ticker"]:
        parser.error("--readers measures ticker's whole path: use it with --targets ticker")
    if args.editors < 1 or args.flashes < args.editors or args.rounds < 1 or args.warmup < 0 or args.rate < 0:
        parser.error("--editors ≥ 1, --flashes ≥ --editors, --rounds ≥ 1, --warmup ≥ 0, --rate ≥ 0")
    if not 1 <= args.editor_processes <= args.editors:
        parser.error("--editor-processes from 1 to --editors")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fanout_targets.prepare(args.targets)
    rounds = [_run_target(name, args, n) for n in range(args.rounds) for name in args.targets]
    print(report(rounds, args), flush=True)
    return 1 if any(r.errors for r in rounds) else 0


if __name__ == "__main__":
    sys.exit(main())
