"""Connections served by the native front protocol in this process, with the app's real state: its lifespan run
by uvicorn's own runner (as ``uvicorn.Server`` does), and uvicorn's parser for what the front protocol hands on."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from uvicorn.config import Config
from uvicorn.lifespan.on import LifespanOn
from uvicorn.server import ServerState

from ticker_service.app import create_app
from ticker_service.settings import Settings
from ticker_service.transports.native.front import FrontProtocol

Open = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter, ServerState]]]


@contextlib.asynccontextmanager
async def front_connections(data_dir: Path) -> AsyncIterator[Open]:
    """An embedded app, started; yields a function that opens one more connection to its front protocol."""
    app = create_app(Settings(redis_url=None, data_dir=data_dir))
    config = Config(app=app, ws_max_size=4096, log_level="warning", lifespan="on")
    config.load()
    lifespan = LifespanOn(config)
    await lifespan.startup()
    assert not lifespan.should_exit, "the app did not start"
    writers: list[asyncio.StreamWriter] = []

    async def open_one() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, ServerState]:
        state = ServerState()
        ours, theirs = socket.socketpair()
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: FrontProtocol(config, state, lifespan.state), sock=theirs)
        reader, writer = await asyncio.open_connection(sock=ours)
        writers.append(writer)
        return reader, writer, state

    try:
        yield open_one
    finally:
        for writer in writers:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
        await lifespan.shutdown()
