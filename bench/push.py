"""Device pushes per second of one ``ticker worker`` process, against the local FCM, APNs and Web Push services.

Starts a private ``redis-server``, a ``ticker hub`` and ONE ``ticker worker`` with every bridge pointed at the
fakes in ``tests/support/fakes`` (TLS + HTTP/2, running in a thread of this process; they verify every JWT and
decrypt every Web Push payload, as in the tests). Registers ``--devices`` devices (split over ``--platforms``)
straight into Redis with the registry's own store, all matching one flash, publishes that flash, and measures until
every device's notification has been accepted:

    python -m bench push [--devices 100000] [--platforms fcm,apns,webpush] [--json out.json]

Reported: wall-clock pushes per second (publish → last notification accepted), the worker's CPU seconds and
pushes per worker CPU-second (what one worker process sustains when it is the bottleneck), and this process's CPU
(the fakes), to show which side limited the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis
from redis.asyncio import Redis

from bench.latency import redis_stack
from bench.procstat import usage
from ticker_service.filters import Filter
from ticker_service.keys import PUSH_STATS
from ticker_service.push.device import Device
from ticker_service.push.store import DeviceStore
from ticker_service.push.vapid import generate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support.fakes lives beside bench/

from tests.support.fakes.services import PushFakes  # noqa: E402


async def register(redis_url: str, fakes: PushFakes, devices: int, platforms: list[str]) -> dict[str, int]:
    """``devices`` registrations, round-robin over ``platforms``, all for politics at urgency 1–2."""
    counts = dict.fromkeys(platforms, 0)
    flt = Filter(categories=("politics",), max_urgency=2)
    async with Redis.from_url(redis_url) as redis:
        store = DeviceStore(redis)
        for start in range(0, devices, 1000):
            batch = []
            for n in range(start, min(start + 1000, devices)):
                platform = platforms[n % len(platforms)]
                counts[platform] += 1
                if platform == "webpush":
                    sub: Any = fakes.webpush.subscribe()
                    device = Device(secrets.token_hex(16), "webpush", sub["endpoint"], flt, **sub["keys"])
                else:
                    token = secrets.token_hex(32) if platform == "apns" else f"fcm-{secrets.token_urlsafe(40)}"
                    device = Device(secrets.token_hex(16), platform, token, flt)  # type: ignore[arg-type]
                batch.append(store.register(device))
            await asyncio.gather(*batch)
    return counts


def jobs_pending(client: redis.Redis) -> bool:
    return bool(client.zcard("arq:queue") or client.keys("arq:in-progress:*"))


def run(args: argparse.Namespace) -> dict[str, Any]:
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="ticker-bench-push-") as tmp:
        fakes = PushFakes.start(Path(tmp))
        try:
            for fake in (fakes.fcm, fakes.apns, fakes.webpush):
                fake.keep = False
            pem, public = generate()
            fakes.webpush.vapid_public_key = public
            env = fakes.env(Path(tmp), pem)
            with redis_stack(**env) as stack:
                redis_url = stack.env["REDIS_URL"]
                client = redis.Redis.from_url(redis_url)
                started = time.perf_counter()
                counts = asyncio.run(register(redis_url, fakes, args.devices, platforms))
                registered_s = time.perf_counter() - started
                worker = next(proc for name, proc in stack.procs if name == "worker")
                before_worker, before_self = usage([worker.pid]), usage([os.getpid()])
                body = {"headline": "BREAKING: push benchmark", "language": "en", "category": "politics", "urgency": 1}
                t0 = time.perf_counter()
                response = httpx.post(
                    f"{stack.base_url}/v1/flashes", json=body, headers={"Authorization": f"Bearer {stack.token}"}
                )
                response.raise_for_status()
                first = None
                deadline = t0 + args.timeout
                shown = idle_since = t0
                while True:
                    now = time.perf_counter()
                    done = fakes.fcm.total + fakes.apns.total + fakes.webpush.total
                    if first is None and done:
                        first = now - t0
                    if done >= args.devices or now > deadline:
                        break
                    # Every job finished (sends cut off in flight are not retried): nothing more will come.
                    if jobs_pending(client):
                        idle_since = now
                    elif now - idle_since > 2.0:
                        break
                    if now - shown > 5:
                        shown = now
                        print(f"# {done} notifications after {now - t0:.0f} s", file=sys.stderr, flush=True)
                    time.sleep(0.05)
                wall = time.perf_counter() - t0
                after_worker, after_self = usage([worker.pid]), usage([os.getpid()])
                drained = time.perf_counter()
                while jobs_pending(client) and time.perf_counter() - drained < 30:
                    time.sleep(0.05)  # the last batch writes its counts after its sends
                outcomes = {k.decode(): int(v) for k, v in client.hgetall(PUSH_STATS).items()}
                if args.logs:
                    args.logs.mkdir(parents=True, exist_ok=True)
                    for name in ("worker", "hub"):
                        shutil.copy(stack.workdir / f"{name}.log", args.logs / f"{name}.log")
                wall = time.perf_counter() - t0
                after_worker, after_self = usage([worker.pid]), usage([os.getpid()])
        finally:
            fakes.stop()
    worker_cpu = after_worker.cpu - before_worker.cpu
    return {
        "devices": args.devices,
        "registered": counts,
        "registration_s": round(registered_s, 1),
        "delivered": {"fcm": fakes.fcm.total, "apns": fakes.apns.total, "webpush": fakes.webpush.total},
        "outcomes": outcomes,
        "devices_notified_twice": sum(
            1 for fake in (fakes.fcm, fakes.apns, fakes.webpush) for n in fake.accepted.values() if n > 1
        ),
        "first_s": round(first or 0.0, 3),
        "wall_s": round(wall, 2),
        "pushes_per_s": round(done / wall),
        "worker_cpu_s": round(worker_cpu, 2),
        "pushes_per_worker_cpu_s": round(done / worker_cpu) if worker_cpu else None,
        "fakes_cpu_s": round(after_self.cpu - before_self.cpu, 2),
        "cores": os.cpu_count(),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench push", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--platforms", default="fcm,apns,webpush")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--logs", type=Path, help="copy the worker's and hub's logs to this directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # On SIGTERM (e.g. from `timeout`), unwind so the redis-server, hub and worker are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    lines = [
        f"devices registered: {result['registered']} in {result['registration_s']} s",
        f"notifications accepted: {result['delivered']} (first after {result['first_s']} s)",
        f"worker's outcomes: {result['outcomes']}; devices notified twice: {result['devices_notified_twice']}",
        f"wall: {result['wall_s']} s → {result['pushes_per_s']} pushes/s with one worker process",
        f"worker CPU: {result['worker_cpu_s']} s → {result['pushes_per_worker_cpu_s']} pushes per worker CPU-second",
        f"fakes (this process) CPU: {result['fakes_cpu_s']} s; machine cores: {result['cores']}",
    ]
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    delivered = sum(result["delivered"].values())
    return 0 if delivered == result["devices"] else 1
