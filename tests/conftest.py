"""Fixtures only: they start the real thing (a private redis-server, ``ticker`` processes on free loopback ports,
headless Chromium) from the helpers in ``tests/support/``, and stop it again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser

from .support.browser import chromium
from .support.processes import TIMEOUT, RedisServer, Service, ServiceFactory


@pytest.fixture(scope="module")
def service_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceFactory]:
    """Start ``ticker`` with the environment a module needs: ``service_factory(TICKER_X="1")`` embedded,
    ``service_factory("redis", ...)`` with a private Redis, a hub and a worker. What it started is stopped when the
    module ends; each module gets fresh processes."""
    factory = ServiceFactory(tmp_path_factory)
    yield factory
    factory.stop()


@pytest.fixture(scope="module", params=["embedded", "redis"])
def service(request: pytest.FixtureRequest, service_factory: ServiceFactory) -> Iterator[Service]:
    """The service in both modes (the first is stopped before the second starts)."""
    svc = service_factory(request.param)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def distributed(service_factory: ServiceFactory) -> Service:
    return service_factory("redis", name="distributed")


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server on a free port, for tests of the Redis code without a ticker process."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Headless Debian Chromium, one per browser test module."""
    async with chromium() as browser:
        yield browser
