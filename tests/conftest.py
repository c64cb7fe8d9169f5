"""Fixtures that start the real thing: a private redis-server, ``ticker`` processes, on free loopback ports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser

from .browser import chromium
from .support import Process, RedisServer, Service, base_env, free_port, run_ticker, ticker, wait_ready, wait_until


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


@pytest.fixture(scope="module", params=["embedded", "redis"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service in both modes; each test module gets fresh processes."""
    tmp = tmp_path_factory.mktemp(request.param)
    svc = start_embedded(tmp) if request.param == "embedded" else start_distributed(tmp)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def distributed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = start_distributed(tmp_path_factory.mktemp("distributed"))
    yield svc
    svc.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium, one per browser test module."""
    async with chromium() as browser:
        yield browser
