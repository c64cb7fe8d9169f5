"""Which version of a story each device is shown: devices whose ``lang`` is an order of preference (``ar,en``) get
one notification per story version they are shown, as readers get one version per story (``ticker_service.stories``).

A job does not have the hub's story table: it reads the story's live versions from the broker's current state and
puts the event's own version in as it was just before and just after the event. So the choice is the same whichever
order the jobs of two versions run in: the better version is sent, the worse one is not.
"""

from __future__ import annotations

from dataclasses import replace

from ticker_service.broker import Broker
from ticker_service.events import Event
from ticker_service.filters import Filter
from ticker_service.flashes import Document, flash_id_of
from ticker_service.stories import Change, decide, is_live, prefers, story_of

from .payload import Alert, alert_for

SCAN = 1000  # current flashes read to find a story's other versions


async def story_change(broker: Broker, event: Event) -> Change | None:
    """The live versions of the event's story just before and just after it; ``None`` without a story."""
    story = story_of(event.flash)
    if story is None or event.type not in ("flash", "update", "withdraw"):
        return None
    docs, _ = await broker.recent(SCAN)
    uri = event.flash["uri"]
    others = [d for d in docs if d["uri"] != uri and story_of(d) == story and is_live(d)]
    previous: Document | None = None
    if event.type != "flash":
        earlier = await broker.event_for(flash_id_of(event.flash), str(int(event.flash["version"]) - 1))
        previous = earlier.flash if earlier is not None else {**event.flash, "pubStatus": "usable"}
    before = [*others, previous] if previous is not None and is_live(previous) else others
    after = [*others, event.flash] if is_live(event.flash) else others
    return Change(tuple(before), tuple(after))


class Chooser:
    """Per filter (devices share filters), the alert a device gets for one event: the event's, another version's,
    or ``None`` (the device is shown a better version of the story)."""

    def __init__(self, event: Event, alert: Alert, change: Change | None, ttl_seconds: int) -> None:
        self.event = event
        self.alert = alert
        self.change = change
        self.ttl_seconds = ttl_seconds
        self._by_filter: dict[Filter, Alert | None] = {}

    def alert_for(self, flt: Filter) -> Alert | None:
        if self.change is None or not prefers(flt):
            return self.alert
        if flt not in self._by_filter:
            self._by_filter[flt] = self._choose(flt, self.change)
        return self._by_filter[flt]

    def _choose(self, flt: Filter, change: Change) -> Alert | None:
        shown = decide(flt, self.event, change)
        if shown is None:
            return None
        if shown is self.event:
            return self.alert
        other = alert_for(shown, self.ttl_seconds)
        if other is None:  # the version to fall back on is too old to notify: at least remove the withdrawn one
            return self.alert if self.event.type == "withdraw" else None
        # Claimed under this event, not the version shown: a device shown that version earlier, then a better one
        # that is now withdrawn, must get it again (its notification is the withdrawn one's).
        return replace(other, claim=f"{self.alert.flash_id}:{self.alert.version}")
