"""Real processes on loopback: a private redis-server, and ``ticker`` (run, hub, worker) started as a user would,
each on a free port; ``Service`` is what a test talks to."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = float(os.environ.get("TICKER_TEST_TIMEOUT", "10"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``check`` until it is true or the deadline passes (never a bare sleep)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"timed out waiting for {what}")


class RedisServer:
    """A private redis-server on a free port, which tests may stop and start again."""

    def __init__(self, directory: Path, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.persistent = persistent
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes" if self.persistent else "no",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )

        def ping() -> bool:
            with self.client() as client:
                return bool(client.ping())

        wait_until(ping, f"redis-server on {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=TIMEOUT)
            self.proc = None


@dataclass
class Process:
    args: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT
            )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ticker(*args: str) -> list[str]:
    return [sys.executable, "-m", "ticker_service", *args]


def run_ticker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(ticker(*args), env=env, capture_output=True, text=True, timeout=30, cwd=ROOT, check=False)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_") and k != "REDIS_URL"}
    env.update({"TICKER_LOG_LEVEL": "warning", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def wait_ready(base_url: str, proc: Process) -> None:
    def ready() -> bool:
        assert proc.proc is not None
        if proc.proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited: {proc.log.read_text()[-2000:]}")
        return httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200

    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"{base_url} never became ready: {proc.log.read_text()[-2000:]}")


@dataclass
class Service:
    """A running ticker: one hub (``base_url``), its token, and in Redis mode the Redis and worker behind it."""

    mode: str
    base_url: str
    token: str
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)
    redis: RedisServer | None = None

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        if self.redis is not None:
            self.redis.stop()


def start_embedded(tmp: Path, **extra_env: str) -> Service:
    """``ticker run`` with no REDIS_URL, and a token created beforehand with ``ticker token create``."""
    env = base_env(TICKER_DATA_DIR=str(tmp / "data"), **extra_env)
    created = run_ticker(env, "token", "create", "--name", "tests")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip().splitlines()[-1]
    port = free_port()
    hub = Process(ticker("run", "--port", str(port)), env, tmp / "run.log")
    service = Service("embedded", f"http://127.0.0.1:{port}", token, env, [hub])
    hub.start()
    wait_ready(service.base_url, hub)
    return service


def start_worker(service: Service, tmp: Path, name: str = "worker") -> Process:
    worker = Process(ticker("worker"), service.env, tmp / f"{name}.log")
    worker.start()
    service.processes.append(worker)
    assert service.redis is not None
    with service.redis.client() as client:
        wait_until(lambda: bool(client.exists("arq:queue:health-check")), "the worker's first poll")
    return worker


def start_hub(service: Service, tmp: Path, name: str = "hub") -> tuple[str, Process]:
    port = free_port()
    hub = Process(ticker("hub", "--port", str(port)), service.env, tmp / f"{name}.log")
    hub.start()
    service.processes.append(hub)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, hub)
    return url, hub


def start_distributed(tmp: Path, *, persistent: bool = False, **extra_env: str) -> Service:
    """A private Redis, one ``ticker hub`` and one ``ticker worker``: the production path."""
    redis_server = RedisServer(tmp, persistent=persistent)
    redis_server.start()
    env = base_env(REDIS_URL=redis_server.url, **extra_env)
    created = run_ticker(env, "token", "create", "--name", "tests")
    assert created.returncode == 0, created.stderr
    service = Service("redis", "", created.stdout.strip().splitlines()[-1], env, [], redis_server)
    try:
        service.base_url, _ = start_hub(service, tmp)
        start_worker(service, tmp)
    except BaseException:
        service.stop()
        raise
    return service
