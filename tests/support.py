"""Test helpers: real processes (redis-server, ticker hub/worker/run) on loopback, and real WS/SSE readers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
import websockets
from websockets.asyncio.client import ClientConnection

ROOT = Path(__file__).resolve().parent.parent


def _ninjs_schema() -> Path:
    """IPTC's schema in ``shared/`` beside the project, or beside any folder above it (a worktree or CI clone may sit
    deeper), or where ``TICKER_NINJS_SCHEMA`` says."""
    relative = Path("shared") / "ninjs" / "ninjs-schema_3.1.json"
    candidates = [Path(os.environ["TICKER_NINJS_SCHEMA"])] if os.environ.get("TICKER_NINJS_SCHEMA") else []
    candidates += [folder / relative for folder in ROOT.parents]
    candidates.append(Path("/work") / relative)
    return next((path for path in candidates if path.exists()), ROOT.parent / relative)


NINJS_SCHEMA = _ninjs_schema()
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


def flash_body(headline: str = "BREAKING: test flash", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "headline": headline,
        "language": "en",
        "category": "politics",
        "urgency": 1,
        "regions": ["europe"],
    }
    body.update(overrides)
    return body


async def publish(
    client: httpx.AsyncClient, service: Service, headline: str = "BREAKING: test flash", **overrides: Any
) -> dict[str, Any]:
    response = await client.post(
        f"{service.base_url}/v1/flashes", json=flash_body(headline, **overrides), headers=service.headers()
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def flash_id(doc: dict[str, Any]) -> str:
    return str(doc["uri"]).replace("/", ":").rsplit(":", 1)[-1]


async def _from_now(service: Service, query: str) -> str:
    """Resume from the current last event id, so an earlier test's fan-out still in flight cannot arrive here.

    (A live-only reader gets whatever is published after it connects, including an event recorded a moment
    before; tests that check a specific sequence start from a known point instead.)
    """
    if "last_event_id=" in query:
        return query
    async with httpx.AsyncClient() as client:
        last = (await client.get(f"{service.base_url}/v1/flashes?limit=1")).json()["last_event_id"]
    return f"{query}&last_event_id={last}" if query else f"last_event_id={last}"


@contextlib.asynccontextmanager
async def ws_reader(service: Service, query: str = "", *, from_now: bool = True) -> AsyncIterator[ClientConnection]:
    if from_now:
        query = await _from_now(service, query)
    async with websockets.connect(f"{service.ws_url}/v1/stream?{query}", open_timeout=TIMEOUT) as ws:
        yield ws


async def next_ws_event(ws: ClientConnection, timeout: float = TIMEOUT) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))  # type: ignore[no-any-return]


class SSEReader:
    """Reads a text/event-stream with a real HTTP client and parses it per the WHATWG rules we use."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.comments: list[str] = []
        self._lines = response.aiter_lines()

    async def next_event(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        return await asyncio.wait_for(self._next(), timeout)

    async def _next(self) -> dict[str, Any]:
        event: dict[str, Any] = {}
        async for line in self._lines:
            if line == "":
                if "data" in event:
                    event["flash"] = json.loads(event["data"])
                    return event
                event = {}
                continue
            if line.startswith(":"):
                self.comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            event[name] = value.removeprefix(" ")
        raise EOFError("stream ended")


@contextlib.asynccontextmanager
async def sse_reader(
    service: Service, query: str = "", headers: dict[str, str] | None = None, *, from_now: bool = True
) -> AsyncIterator[SSEReader]:
    if from_now and not (headers and "Last-Event-ID" in headers):
        query = await _from_now(service, query)
    async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as client:
        async with client.stream("GET", f"{service.base_url}/v1/events?{query}", headers=headers or {}) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = SSEReader(response)
            yield reader


async def wait_readers(service: Service, count: int) -> None:
    """Wait until the hub reports ``count`` connected readers (they are attached before events flow)."""
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            body = (await client.get(f"{service.base_url}/readyz")).json()
            if body.get("readers") == count:
                return
            await asyncio.sleep(0.02)
    raise TimeoutError(f"hub never had {count} readers")
