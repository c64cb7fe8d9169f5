"""Fixtures only: they start the real thing (a private redis-server, ``ticker`` processes on free loopback ports,
headless Chromium) from the helpers in ``tests/support/``, and stop it again."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import pytest_asyncio
from playwright.async_api import Browser

from .support.browser import chromium
from .support.processes import Service, start_distributed, start_embedded


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
