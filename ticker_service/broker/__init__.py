"""Pick the broker for the settings: Redis when ``REDIS_URL`` is set, else the in-process memory broker.

The service builds its broker together with the stores beside it in :mod:`ticker_service.backends`; this gives a
broker alone (tests, tools).
"""

from __future__ import annotations

from ..settings import Settings
from .base import Broker, Claim, ClaimLost, HistoryGap, LiveHandler, VersionConflict, Withheld

__all__ = ["Broker", "Claim", "ClaimLost", "HistoryGap", "LiveHandler", "VersionConflict", "Withheld", "create_broker"]


def create_broker(settings: Settings, *, run_fanout: bool = True) -> Broker:
    """``run_fanout`` (memory only): run the fan-out in-process, as the embedded mode does in place of arq."""
    if not settings.embedded:
        from .redis import RedisBroker

        return RedisBroker(settings)
    from .memory import MemoryBroker

    return MemoryBroker(settings, run_fanout=run_fanout)
