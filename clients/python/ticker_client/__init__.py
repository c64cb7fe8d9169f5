"""A Python client for ticker: follow flashes over WebSocket or SSE, reconnecting and resuming by event id.

async with TickerClient("http://127.0.0.1:8000", lang="en") as client:
    async for event in client:
        print(event.type, event.headline)
"""

from .client import TerminalError, TickerClient
from .events import Event

__all__ = ["Event", "TerminalError", "TickerClient"]
