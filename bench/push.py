"""Device pushes per second of ``ticker worker`` processes, against local FCM, APNs and Web Push services.

Starts a private ``redis-server``, a ``ticker hub`` and ``--workers`` ``ticker worker`` processes with every bridge
pointed at local fakes, registers ``--devices`` devices (split over ``--platforms``) straight into Redis in bulk, in
the registry's own format, all matching one flash, publishes that flash, and measures until every device's
notification has been accepted:

    python -m bench push [--devices 100000] [--platforms fcm,apns,webpush] [--workers 1] [--fast] [--json out.json]

The fakes are ``tests/support/fakes``: by default the hypercorn ones (TLS + HTTP/2, in a thread of this process),
which verify every JWT and decrypt every Web Push payload, as in the tests; with ``--fast`` the lean ones
(:mod:`tests.support.fakes.fast`, one process per platform), which check the costly parts on a sample, so a million
devices are not bounded by the fakes.

Reported: the send curve (devices notified over time: the first, 50 %, 90 % and all), wall-clock pushes per
second, the workers' CPU seconds and pushes per worker CPU-second (what a worker process sustains when it is the
bottleneck), the fakes' and Redis's CPU, and the machine's load, to show which side limited the run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.latency import redis_stack
from bench.procstat import usage
from ticker_service.filters import Filter
from ticker_service.flashes import flash_id_of
from ticker_service.keys import DEVICE_INDEX_SHARDS, DEVICE_PREFIX, PUSH_PLAN_STATE_PREFIX, PUSH_STATS
from ticker_service.push.device import Device
from ticker_service.push.store import address_key, index_keys, secret_hash
from ticker_service.push.vapid import generate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.support.fakes lives beside bench/

from tests.support.fakes.apns import FakeApns  # noqa: E402
from tests.support.fakes.fcm import FakeFcm  # noqa: E402
from tests.support.fakes.services import PushFakes  # noqa: E402
from tests.support.processes import free_port  # noqa: E402

FILTER = Filter(categories=("politics",), max_urgency=2)  # every device: politics at urgency 1-2


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def bulk_register(client: redis.Redis, devices: Iterator[Device], chunk: int = 5000) -> None:
    """Write devices as ``DeviceStore.register`` does (hash, address key, index sets), pipelined in chunks."""
    secret = secret_hash(secrets.token_urlsafe(24))  # the bench never authenticates as a device
    pipe = client.pipeline(transaction=False)
    sets: dict[str, list[str]] = defaultdict(list)
    count = 0

    def flush() -> None:
        for key, ids in sets.items():
            pipe.sadd(key, *ids)
        pipe.execute()
        sets.clear()

    for device in devices:
        index = index_keys(FILTER, device.id)
        address = address_key(device.platform, device.address)
        record = orjson.dumps(device.to_record())
        ix = orjson.dumps(index)
        pipe.hset(DEVICE_PREFIX + device.id, mapping={"d": record, "s": secret, "ix": ix, "a": address})
        pipe.set(address, device.id)
        for key in index:
            sets[key].append(device.id)
        count += 1
        if count % chunk == 0:
            flush()
    flush()


def make_devices(n: int, platforms: list[str], webpush: Any) -> Iterator[Device]:
    """``n`` devices round-robin over ``platforms``; ``webpush()`` gives a subscription (endpoint and keys)."""
    for i in range(n):
        platform = platforms[i % len(platforms)]
        if platform == "webpush":
            sub = webpush()
            yield Device(secrets.token_hex(16), "webpush", sub["endpoint"], FILTER, **sub["keys"])
        elif platform == "apns":
            yield Device(secrets.token_hex(16), "apns", secrets.token_hex(32), FILTER)
        else:
            yield Device(secrets.token_hex(16), "fcm", f"fcm-{secrets.token_urlsafe(40)}", FILTER)


@dataclass
class FastFakes:
    """One :mod:`tests.support.fakes.fast` process per platform, and what the worker needs to use them."""

    directory: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    subscription: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, directory: Path, platforms: list[str], vapid_pem: str, vapid_public: str) -> FastFakes:
        self = cls(directory)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(directory / "fast-ca.pem"))
        cert = ca.issue_cert("127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(directory / "fast-cert.pem"))
        cert.private_key_pem.write_to_path(str(directory / "fast-key.pem"))
        fcm, apns = FakeFcm(), FakeApns()
        subscriber = ec.generate_private_key(ec.SECP256R1())  # every subscription shares it: the fake decrypts
        auth = secrets.token_bytes(16)
        self.ports = {platform: free_port() for platform in ("fcm", "apns", "webpush")}
        fcm.base_url = f"https://127.0.0.1:{self.ports['fcm']}"
        pem = serialization.Encoding.PEM
        keys = {
            "fcm_public": fcm.key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
            "fcm_email": fcm.email,
            "fcm_audience": f"{fcm.base_url}/token",
            "apns_public": apns.key.public_key().public_bytes(pem, serialization.PublicFormat.SubjectPublicKeyInfo),
            "apns_team": apns.team_id,
            "apns_topic": apns.topic,
            "vapid_public": vapid_public,
            "webpush_private": subscriber.private_bytes(
                pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "webpush_auth": b64(auth),
        }
        (directory / "fast-keys.json").write_bytes(orjson.dumps({k: _text(v) for k, v in keys.items()}))
        for platform, port in self.ports.items():
            if platform not in platforms:
                continue
            args = ["--port", str(port), "--cert", str(directory / "fast-cert.pem")]
            args += ["--key", str(directory / "fast-key.pem"), "--keys", str(directory / "fast-keys.json")]
            args += ["--stats", str(directory / f"fast-{platform}.json")]
            log = (directory / f"fast-{platform}.log").open("wb")
            self.procs[platform] = subprocess.Popen(
                [sys.executable, "-m", "tests.support.fakes.fast", *args], cwd=ROOT, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while not all((directory / f"fast-{p}.json").exists() for p in self.procs):
            if time.monotonic() > deadline:
                raise RuntimeError("the fast fakes did not start")
            time.sleep(0.05)
        raw = subscriber.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        self.subscription = {"p256dh": b64(raw), "auth": b64(auth)}
        (directory / "fcm.json").write_bytes(orjson.dumps(fcm.service_account()))
        (directory / "apns.p8").write_text(apns.p8())
        (directory / "vapid.pem").write_text(vapid_pem)
        self.env = {
            "TICKER_PUSH_CA_FILE": str(directory / "fast-ca.pem"),
            "TICKER_PUSH_FCM_CREDENTIALS_FILE": str(directory / "fcm.json"),
            "TICKER_PUSH_FCM_URL": fcm.base_url,
            "TICKER_PUSH_APNS_KEY_FILE": str(directory / "apns.p8"),
            "TICKER_PUSH_APNS_KEY_ID": apns.key_id,
            "TICKER_PUSH_APNS_TEAM_ID": apns.team_id,
            "TICKER_PUSH_APNS_TOPIC": apns.topic,
            "TICKER_PUSH_APNS_URL": f"https://127.0.0.1:{self.ports['apns']}",
            "TICKER_PUSH_VAPID_PRIVATE_KEY_FILE": str(directory / "vapid.pem"),
            "TICKER_PUSH_WEBPUSH_HOSTS": "127.0.0.1",
        }
        return self

    def webpush(self) -> dict[str, Any]:
        endpoint = f"https://127.0.0.1:{self.ports['webpush']}/push/{secrets.token_hex(8)}"
        return {"endpoint": endpoint, "keys": self.subscription}

    def stats(self) -> dict[str, dict[str, Any]]:
        out = {}
        for platform in self.procs:
            with contextlib.suppress(OSError, ValueError):
                out[platform] = orjson.loads((self.directory / f"fast-{platform}.json").read_bytes())
        return out

    def accepted(self) -> dict[str, int]:
        return {platform: int(stats.get(platform, 0)) for platform, stats in self.stats().items()}

    def stop(self) -> None:
        for proc in self.procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def jobs_pending(client: redis.Redis) -> bool:
    return bool(client.zcard("arq:queue") or client.keys("arq:in-progress:*"))


def loadavg() -> float:
    return os.getloadavg()[0]


def milestones(curve: list[tuple[float, int]], total: int) -> dict[str, float | None]:
    """Seconds after the publish by which the first, 10 %, 50 %, 90 % and all devices had been notified."""
    out: dict[str, float | None] = {}
    for name, share in (("first", 1 / max(total, 1)), ("10%", 0.1), ("50%", 0.5), ("90%", 0.9), ("all", 1.0)):
        need = max(1, int(share * total + 0.999999))
        out[name] = next((round(t, 2) for t, n in curve if n >= need), None)
    return out


def crypto_floor(rounds: int = 2000) -> dict[str, float]:
    """CPU µs per Web Push message of the encryption (``workers.push.ece``) and of its ECDH part alone (a fresh key
    pair, the subscription's key parsed, the agreement): the floor under a Web Push send."""
    from workers.push.ece import encrypt

    subscriber = ec.generate_private_key(ec.SECP256R1())
    public = subscriber.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    auth, plaintext = secrets.token_bytes(16), b"x" * 400
    started = time.process_time()
    for _ in range(rounds):
        key = ec.generate_private_key(ec.SECP256R1())
        key.exchange(ec.ECDH(), ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public))
    ecdh = time.process_time() - started
    started = time.process_time()
    for _ in range(rounds):
        encrypt(plaintext, public, auth)
    whole = time.process_time() - started
    return {"ecdh_us": round(ecdh / rounds * 1e6, 1), "encrypt_us": round(whole / rounds * 1e6, 1)}


def plan_done(client: redis.Redis, flash_id: str, version: str) -> bool:
    """Whether the live send's plan has reached its last shard (the state hash of ``workers/push/plan.py``)."""
    cursor = client.hget(f"{PUSH_PLAN_STATE_PREFIX}{flash_id}:{version}", "cursor")
    return cursor is not None and int(cursor) >= DEVICE_INDEX_SHARDS


def time_plan(redis_url: str, step_devices: int) -> dict[str, Any]:
    """The plan of the bench's flash again, alone (after the send, under another event's keys), step by step as
    the plan job takes them: wall time of all steps, the longest step (it holds Redis), ms per shard."""
    from redis.asyncio import Redis as AsyncRedis

    from workers.push.plan import DONE, Plan

    doc = {"language": "en", "subjects": [{"literal": "politics"}], "urgency": 1}

    async def steps() -> dict[str, Any]:
        async with AsyncRedis.from_url(redis_url) as r:
            plan = Plan(r, "bench-plan", "1", 500)
            times: list[float] = []
            cursor, total = -1, 0
            while cursor < DONE:
                started = time.perf_counter()
                cursor, total = await plan.step(doc, 1, 600, step_devices)
                times.append(time.perf_counter() - started)
            await r.delete(*plan.keys)
        return {
            "devices": total,
            "steps": len(times),
            "total_s": round(sum(times), 2),
            "longest_step_ms": round(max(times) * 1000, 1),
            "ms_per_shard": round(sum(times) / (DONE + 1) * 1000, 1),
        }

    return asyncio.run(steps())


def run(args: argparse.Namespace) -> dict[str, Any]:
    platforms = [p.strip() for p in args.platforms.split(",") if p.strip()]
    with tempfile.TemporaryDirectory(prefix="ticker-bench-push-") as tmp:
        pem, public = generate()
        fakes: PushFakes | None = None
        fast: FastFakes | None = None
        if args.fast:
            fast = FastFakes.start(Path(tmp), platforms, pem, public)
            env, webpush = dict(fast.env), fast.webpush
        else:
            fakes = PushFakes.start(Path(tmp))
            for fake in (fakes.fcm, fakes.apns, fakes.webpush):
                fake.keep = False
            fakes.webpush.vapid_public_key = public
            env, webpush = fakes.env(Path(tmp), pem), fakes.webpush.subscribe

        def accepted() -> dict[str, int]:
            if fast is not None:
                return fast.accepted()
            assert fakes is not None
            return {"fcm": fakes.fcm.total, "apns": fakes.apns.total, "webpush": fakes.webpush.total}

        env["TICKER_PUSH_PARALLEL_BATCHES"] = str(args.parallel_batches or 2 * args.workers)
        env["TICKER_PUSH_CONCURRENCY"] = str(args.concurrency)
        env["TICKER_FANOUT_JOB_TIMEOUT_SECONDS"] = str(args.job_timeout)
        env["TICKER_PUSH_PLAN_STEP_DEVICES"] = str(args.plan_step_devices)
        try:
            with redis_stack(**env) as stack:
                redis_url = stack.env["REDIS_URL"]
                client = redis.Redis.from_url(redis_url)
                for n in range(1, args.workers):
                    stack.ticker(f"worker{n + 1}", "worker")
                started = time.perf_counter()
                counts = dict.fromkeys(platforms, 0)
                for platform in platforms:
                    counts[platform] = len(range(platforms.index(platform), args.devices, len(platforms)))
                bulk_register(client, make_devices(args.devices, platforms, webpush))
                registered_s = time.perf_counter() - started
                workers = [proc.pid for name, proc in stack.procs if name.startswith("worker")]
                others = [proc.pid for _, proc in stack.procs if proc.pid not in workers]
                fake_pids = [p.pid for p in fast.procs.values()] if fast else [os.getpid()]
                before = usage(workers), usage(fake_pids), usage(others)
                load_before = loadavg()
                body = {"headline": "BREAKING: push benchmark", "language": "en", "category": "politics", "urgency": 1}
                t0 = time.perf_counter()
                response = httpx.post(
                    f"{stack.base_url}/v1/flashes", json=body, headers={"Authorization": f"Bearer {stack.token}"}
                )
                response.raise_for_status()
                curve: list[tuple[float, int]] = [(0.0, 0)]
                loads = [load_before]
                deadline = t0 + args.timeout
                shown = idle_since = t0
                published = response.json()
                fid, version = flash_id_of(published), str(published["version"])
                planned_s: float | None = None
                while True:
                    now = time.perf_counter()
                    if planned_s is None and plan_done(client, fid, version):
                        planned_s = now - t0
                    done = sum(accepted().values())
                    if done != curve[-1][1]:
                        curve.append((now - t0, done))
                    if done >= args.devices or now > deadline:
                        break
                    # Every job finished (sends cut off in flight are not retried): nothing more will come.
                    if jobs_pending(client):
                        idle_since = now
                    elif now - idle_since > 2.0:
                        break
                    if now - shown > 5:
                        shown = now
                        loads.append(loadavg())
                        print(f"# {done} notifications after {now - t0:.0f} s", file=sys.stderr, flush=True)
                    time.sleep(0.1 if fast else 0.05)
                wall = time.perf_counter() - t0
                after = usage(workers), usage(fake_pids), usage(others)
                drained = time.perf_counter()
                while jobs_pending(client) and time.perf_counter() - drained < 30:
                    time.sleep(0.05)  # the last batch writes its counts after its sends
                outcomes = {k.decode(): int(v) for k, v in client.hgetall(PUSH_STATS).items()}
                plan_alone = time_plan(redis_url, args.plan_step_devices)
                if args.logs:
                    args.logs.mkdir(parents=True, exist_ok=True)
                    for name, _ in stack.procs:
                        shutil.copy(stack.workdir / f"{name}.log", args.logs / f"{name}.log")
        finally:
            if fast is not None:
                fast.stop()
            if fakes is not None:
                fakes.stop()
        delivered = accepted()
        if fast is not None:
            stats = fast.stats()
            twice = sum(int(s.get("duplicate", 0)) for s in stats.values())
            rejected = sum(int(s.get("rejected", 0)) for s in stats.values())
        else:
            assert fakes is not None
            twice = sum(1 for f in (fakes.fcm, fakes.apns, fakes.webpush) for n in f.accepted.values() if n > 1)
            rejected = None
    worker_cpu = after[0].cpu - before[0].cpu
    done = sum(delivered.values())
    return {
        "devices": args.devices,
        "workers": args.workers,
        "fakes": "fast" if args.fast else "hypercorn",
        "registered": counts,
        "registration_s": round(registered_s, 1),
        "delivered": delivered,
        "outcomes": outcomes,
        "devices_notified_twice": twice,
        "rejected_by_fakes": rejected,
        "milestones_s": milestones(curve, args.devices),
        "plan_complete_s": round(planned_s, 2) if planned_s is not None else None,
        "plan_alone": plan_alone,
        "curve": [(round(t, 2), n) for t, n in curve[:: max(1, len(curve) // 60)]] + [(round(wall, 2), done)],
        "wall_s": round(wall, 2),
        "pushes_per_s": round(done / wall),
        "worker_cpu_s": round(worker_cpu, 2),
        "pushes_per_worker_cpu_s": round(done / worker_cpu) if worker_cpu else None,
        "fakes_cpu_s": round(after[1].cpu - before[1].cpu, 2),
        "redis_and_hub_cpu_s": round(after[2].cpu - before[2].cpu, 2),
        "load_average": [round(min(loads), 1), round(max(loads), 1)],
        "cores": os.cpu_count(),
        "webpush_crypto": crypto_floor() if "webpush" in platforms else None,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench push", description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--platforms", default="fcm,apns,webpush")
    parser.add_argument("--workers", type=int, default=1, help="ticker worker processes")
    parser.add_argument("--fast", action="store_true", help="the lean fakes, one process per platform")
    parser.add_argument("--concurrency", type=int, default=100, help="TICKER_PUSH_CONCURRENCY")
    parser.add_argument("--parallel-batches", type=int, default=0, help="default: two per worker")
    parser.add_argument("--plan-step-devices", type=int, default=10_000, help="TICKER_PUSH_PLAN_STEP_DEVICES")
    parser.add_argument("--job-timeout", type=float, default=3.0, help="TICKER_FANOUT_JOB_TIMEOUT_SECONDS")
    parser.add_argument("--timeout", type=float, default=900.0, help="give up after this many seconds")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--logs", type=Path, help="copy the workers' and hub's logs to this directory")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # On SIGTERM (e.g. from `timeout`), unwind so the redis-server, hub and worker are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = run(args)
    marks = ", ".join(f"{k} {v} s" for k, v in result["milestones_s"].items())
    plan = result["plan_alone"]
    lines = [
        f"devices registered: {result['registered']} in {result['registration_s']} s ({result['fakes']} fakes)",
        f"notifications accepted: {result['delivered']}; by the publish + {marks}",
        f"worker's outcomes: {result['outcomes']}; devices notified twice: {result['devices_notified_twice']}",
        f"plan complete {result['plan_complete_s']} s after the publish; alone: {plan['devices']} devices in "
        f"{plan['steps']} steps, {plan['total_s']} s, longest step {plan['longest_step_ms']} ms, "
        f"{plan['ms_per_shard']} ms per shard",
        f"wall: {result['wall_s']} s → {result['pushes_per_s']} pushes/s with {result['workers']} worker process(es)",
        f"worker CPU: {result['worker_cpu_s']} s → {result['pushes_per_worker_cpu_s']} pushes per worker CPU-second",
        f"fakes CPU: {result['fakes_cpu_s']} s; redis + hub CPU: {result['redis_and_hub_cpu_s']} s; "
        f"load average {result['load_average'][0]}–{result['load_average'][1]} on {result['cores']} cores",
    ]
    if result["webpush_crypto"]:
        crypto = result["webpush_crypto"]
        lines.append(
            f"Web Push encryption: {crypto['encrypt_us']} µs of CPU per message, {crypto['ecdh_us']} µs of it ECDH"
        )
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    delivered = sum(result["delivered"].values())
    return 0 if delivered == result["devices"] else 1
