"""Releasing a scheduled flash at its embargo: an arq job deferred to the instant runs it in the Redis mode, a timer
restored from the data directory in the embedded one."""

from __future__ import annotations

import logging

from ..events import Event
from ..flashes import flash_id_of, released_document
from .base import Broker, VersionConflict

logger = logging.getLogger("ticker.release")


async def release_due(broker: Broker, flash_id: str, version: str) -> Event | None:
    """Publish ``version`` of a scheduled flash as an ordinary ``flash`` event, now.

    A job for a version that is no longer the scheduled one (changed, canceled, already released) does nothing,
    so the job may run twice or late: only the flash as it stands when its embargo lapses goes out, once.
    """
    withheld = await broker.withheld(flash_id)
    doc = await broker.get_flash(flash_id)
    if withheld is None or withheld.status != "scheduled" or doc is None or doc["version"] != version:
        return None
    try:
        event = await broker.record("flash", released_document(doc), expect_version=version)
    except VersionConflict:
        return None  # changed or canceled at the very moment; that change's own schedule decides
    logger.info("embargo of flash %s lapsed: published as %s", flash_id_of(doc), event.event_id)
    return event
