"""The fan-out step, as a plain async function: arq runs it in the distributed mode, a task in the embedded one."""

from __future__ import annotations

import logging

from ticker_service.broker import Broker

logger = logging.getLogger("ticker.fanout")


async def fan_out(broker: Broker, flash_id: str, version: str) -> tuple[str | None, bool]:
    """Publish the event that recorded ``version`` of ``flash_id`` to every hub; return its event id, and whether
    devices hear of it too (not of a hold: a held flash notifies nobody until it is released).

    Safe to run more than once for the same version: hubs drop an event id they have already delivered.
    """
    event = await broker.event_for(flash_id, version)
    if event is None:
        # Trimmed from the history before the job ran (or never recorded): nothing left to deliver.
        logger.warning("no event for flash %s version %s; skipping", flash_id, version)
        return None, False
    await broker.publish(event)
    return event.event_id, event.type != "hold"
