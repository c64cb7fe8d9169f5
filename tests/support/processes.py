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
from typing import TYPE_CHECKING

import httpx
import redis

if TYPE_CHECKING:
    import pytest  # only for a type: bench/ imports the fakes, and with them this module, without pytest

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


def drain_jobs(service: Service) -> None:
    """Wait until the service's arq has no job queued (deferred retries included) or running."""
    assert service.redis is not None
    with service.redis.client() as redis:
        wait_until(
            lambda: redis.zcard("arq:queue") == 0 and not redis.keys("arq:in-progress:*"),
            "the push jobs to finish",
            timeout=30,
        )


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
    """A running ticker: one hub (``base_url``), its token, and in Redis mode the Redis and worker behind it;
    ``directory`` holds its data and its processes' logs."""

    mode: str
    base_url: str
    token: str
    env: dict[str, str]
    processes: list[Process] = field(default_factory=list)
    redis: RedisServer | None = None
    directory: Path | None = None

    @property
    def ws_url(self) -> str:
        return self.base_url.replace("http://", "ws://", 1)

    def headers(self, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", **extra}

    def stop(self) -> None:
        """Stop its processes, then its Redis; stopping twice does nothing more."""
        for proc in reversed(self.processes):
            proc.stop()
        if self.redis is not None:
            self.redis.stop()


def create_token(env: dict[str, str], name: str = "tests", *scopes: str) -> str:
    """``ticker token create``, as an operator runs it; the token is the last line it prints."""
    args = ["--scopes", ",".join(scopes)] if scopes else []
    created = run_ticker(env, "token", "create", "--name", name, *args)
    assert created.returncode == 0, created.stderr
    return created.stdout.strip().splitlines()[-1]


def _serve(service: Service, proc: Process) -> Service:
    """Start ``proc`` as the service's hub and wait until it is ready; on failure nothing is left running."""
    service.processes.append(proc)
    proc.start()
    try:
        wait_ready(service.base_url, proc)
    except BaseException:
        service.stop()
        raise
    return service


def start_embedded(tmp: Path, args: tuple[str, ...] = (), **extra_env: str) -> Service:
    """``ticker run`` (with ``args``) with no REDIS_URL, and a token created beforehand with ``ticker token create``."""
    env = base_env(TICKER_DATA_DIR=str(tmp / "data"), **extra_env)
    token = create_token(env)
    port = free_port()
    hub = Process(ticker("run", "--port", str(port), *args), env, tmp / "run.log")
    return _serve(Service("embedded", f"http://127.0.0.1:{port}", token, env, directory=tmp), hub)


def start_asgi(tmp: Path, args: tuple[str, ...] = (), **extra_env: str) -> Service:
    """The app under plain uvicorn (``--factory ticker_service.app:create_app``, with uvicorn's options ``args``),
    without the native protocols that ``ticker run`` installs: the ASGI endpoints serve /v1/stream and /v1/events.
    Embedded mode, with a token."""
    env = base_env(TICKER_DATA_DIR=str(tmp / "data"), **extra_env)
    token = create_token(env)
    port = free_port()
    uvicorn = [sys.executable, "-m", "uvicorn", "--factory", "ticker_service.app:create_app", "--port", str(port)]
    uvicorn += ["--ws", "websockets-sansio", "--log-level", "warning", *args]
    server = Process(uvicorn, env, tmp / "uvicorn.log")
    return _serve(Service("asgi", f"http://127.0.0.1:{port}", token, env, directory=tmp), server)


def start_worker(
    service: Service, tmp: Path, name: str = "worker", *, extra_env: dict[str, str] | None = None
) -> Process:
    """``ticker worker`` on the service's Redis, with ``extra_env`` on top of the service's environment; returns once
    it polls its queue."""
    worker = Process(ticker("worker"), {**service.env, **(extra_env or {})}, tmp / f"{name}.log")
    worker.start()
    service.processes.append(worker)
    assert service.redis is not None
    with service.redis.client() as client:
        wait_until(lambda: bool(client.exists("arq:queue:health-check")), "the worker's first poll")
    return worker


def start_hub(
    service: Service, tmp: Path, name: str = "hub", *args: str, extra_env: dict[str, str] | None = None
) -> tuple[str, Process]:
    """Another ``ticker hub`` (with ``args``, e.g. ``--workers 2``, and ``extra_env`` on top of the service's
    environment) on the service's Redis; returns its URL."""
    port = free_port()
    hub = Process(ticker("hub", "--port", str(port), *args), {**service.env, **(extra_env or {})}, tmp / f"{name}.log")
    hub.start()
    service.processes.append(hub)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, hub)
    return url, hub


def start_distributed(
    tmp: Path,
    *,
    persistent: bool = False,
    args: tuple[str, ...] = (),
    worker_env: dict[str, str] | None = None,
    **extra_env: str,
) -> Service:
    """A private Redis, one ``ticker hub`` (with ``args``) and one ``ticker worker`` (with ``worker_env`` on top
    of the shared environment): the production path."""
    redis_server = RedisServer(tmp, persistent=persistent)
    redis_server.start()
    env = base_env(REDIS_URL=redis_server.url, **extra_env)
    service = Service("redis", "", "", env, [], redis_server, tmp)
    try:
        service.token = create_token(env)
        service.base_url, _ = start_hub(service, tmp, "hub", *args)
        start_worker(service, tmp, extra_env=worker_env)
    except BaseException:
        service.stop()
        raise
    return service


class ServiceFactory:
    """Starts ``ticker`` with a given environment, each service in a fresh directory, and stops all it started.

    ``factory(**env)`` is ``ticker run`` (embedded); ``factory("redis", **env)`` a private Redis, a hub and a worker;
    ``factory("asgi", **env)`` the app under plain uvicorn. ``env`` holds ``TICKER_*`` settings, exactly as an
    operator would set them; ``args`` are the serving process's options (``ticker run``, ``ticker hub`` or uvicorn),
    ``worker_env`` what only the worker gets, ``persistent`` an append-only Redis that keeps its data across a
    restart. ``name`` names the directory of its data and logs in pytest's temporary tree; ``directory`` gives one
    made beforehand.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self.started: list[Service] = []

    def __call__(
        self,
        mode: str = "embedded",
        *,
        name: str | None = None,
        directory: Path | None = None,
        persistent: bool = False,
        args: tuple[str, ...] = (),
        worker_env: dict[str, str] | None = None,
        **env: str,
    ) -> Service:
        tmp = directory or self.directory(name or mode)
        if mode == "redis":
            service = start_distributed(tmp, persistent=persistent, args=args, worker_env=worker_env, **env)
        else:
            assert not (persistent or worker_env), f"{mode} mode has no Redis or worker to set up"
            start = {"embedded": start_embedded, "asgi": start_asgi}[mode]
            service = start(tmp, args, **env)
        self.started.append(service)
        return service

    def directory(self, name: str) -> Path:
        """A fresh directory, for what a module prepares before its service starts (keys, certificates)."""
        return Path(self._tmp.mktemp(name))

    def stop(self) -> None:
        for service in reversed(self.started):
            service.stop()
        self.started.clear()
