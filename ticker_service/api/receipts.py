"""Time to screen at the edge: readers' display receipts in, a flash's reach out.

``POST /v1/receipts`` is public, like the streams: any page that shows the ticker (and the service worker) sends one
when it shows a flash version, sampled (1 in 10 readers by default), as JSON or as a ``navigator.sendBeacon`` body
(``text/plain``, so a page on another origin needs no preflight). It is bounded (``RECEIPT_MAX_BYTES``, receipts per
address a minute) and checked: bad input is a 4xx problem and never counted; a flash or version this service does not
have is a 404 (not counted: the receipt names nothing that was published); a display before the publish (beyond
``CLOCK_SLACK_SECONDS`` of clock noise), in the future, or more than ``MAX_LATENCY_SECONDS`` after it is a 422.
Counted receipts answer ``204``.

Latency runs from the version's ``versionCreated`` (stamped at ingest, the moment of the editor's ``201``) to the
reader's ``shown_at``. A client that also sends ``sent_at`` (its clock when sending) has its clock's offset taken
out: the display is placed at ``now - (sent_at - shown_at)`` on this server's clock, which adds the receipt's upload
time (a few milliseconds; an overestimate, never an underestimate) but no longer trusts the reader's clock.

``GET /v1/flashes/{id}/reach`` (any editor token) returns the figures of ``ops/reach.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..broker import Broker
from ..flashes import is_canary, is_flash_id
from ..ops.reach import Reach
from ..problems import Problem
from ..settings import Settings
from .editors import authenticate, limit_rate
from .http import API_HEADERS, field_errors, json_response, pydantic_errors, read_json

RECEIPT_MAX_BYTES = 1024
CLOCK_SLACK_SECONDS = 1.0  # a display up to this long "before" the publish is clock noise, counted as 1 ms
FUTURE_SLACK_SECONDS = 5.0
MAX_LATENCY_SECONDS = 48 * 3600.0
PUBLISH_TIMES_CACHED = 10_000
CORS = {"Access-Control-Allow-Origin": "*"}  # public, like GET /v1/flashes: never with credentials
Surface = Literal["ws", "sse", "webpush", "fcm", "apns"]


class ReceiptIn(BaseModel):
    """The body of ``POST /v1/receipts``: a reader showed this version of a flash on this surface at ``shown_at``."""

    model_config = ConfigDict(extra="forbid")
    flash: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    version: str = Field(min_length=1, max_length=9, pattern=r"^[1-9][0-9]{0,8}$")
    surface: Surface
    shown_at: AwareDatetime = Field(description="When the reader's screen showed it (RFC 3339, with an offset).")
    sent_at: AwareDatetime | None = Field(
        default=None, description="The client's clock when sending: lets the service take out the clock's offset."
    )
    rate: float = Field(
        default=1.0, ge=0.01, le=1.0, description="The client's sampling rate; its receipt counts 1/rate readers."
    )


class ReachFigures(BaseModel):
    receipts: int = Field(description="Receipts counted.")
    readers: int = Field(description="Readers estimated: each receipt weighs 1/rate.")
    p50: float | None = Field(default=None, description="Seconds from publish to screen.")
    p90: float | None = None
    p99: float | None = None


class ReachRow(ReachFigures):
    version: str
    surface: Surface


class FlashReach(ReachFigures):
    """A flash's time to screen: every version and surface together, then each."""

    flash: str
    versions: list[ReachRow]


class PublishTimes:
    """When each flash version was published (epoch seconds), so that most receipts cost no store round trip."""

    def __init__(self) -> None:
        self._known: OrderedDict[tuple[str, str], float] = OrderedDict()

    async def get(self, broker: Broker, flash_id: str, version: str) -> float:
        key = (flash_id, version)
        found = self._known.get(key)
        if found is not None:
            return found
        missing = Problem(404, f"No version {version} of a flash with id {flash_id!r}.")
        doc = None if is_canary(flash_id) else await broker.get_flash(flash_id)
        if doc is None or int(version) > int(doc["version"]):
            raise missing
        if version != doc["version"]:
            event = await broker.event_for(flash_id, version)
            if event is None:
                raise missing
            doc = event.flash
        if doc.get("pubStatus") == "canceled":
            raise Problem(422, "A withdrawal is not shown to readers; send receipts for the versions shown.")
        published = datetime.fromisoformat(doc["versionCreated"]).timestamp()
        self._known[key] = published
        if len(self._known) > PUBLISH_TIMES_CACHED:
            self._known.popitem(last=False)
        return published


def latency(receipt: ReceiptIn, published: float, now: float) -> float:
    """Seconds from publish to screen, on this server's clock when the client said when it sent (see above)."""
    shown = receipt.shown_at.timestamp()
    if receipt.sent_at is not None:
        sent = receipt.sent_at.timestamp()
        if shown > sent:
            raise field_errors([("shown_at", "is after sent_at")])
        shown = now - (sent - shown)
    seconds = shown - published
    if shown > now + FUTURE_SLACK_SECONDS:
        raise field_errors([("shown_at", "is in the future")])
    if seconds < -CLOCK_SLACK_SECONDS:
        raise field_errors([("shown_at", "is before the version was published")])
    if seconds > MAX_LATENCY_SECONDS:
        raise field_errors([("shown_at", "is too long after the version was published to count")])
    return max(seconds, 0.0)


async def receive(request: Request) -> Response:
    try:
        await _receive(request)
    except Problem as problem:
        problem.headers = {**CORS, **problem.headers}
        raise
    return Response(status_code=204, headers={**API_HEADERS, **CORS})


async def _receive(request: Request) -> None:
    settings: Settings = request.app.state.settings
    ip = request.client.host if request.client else "-"
    limiter = request.app.state.rate_limiter
    await limit_rate(request, limiter, f"receipts:{ip}", settings.receipts_per_minute, "receipt", None, "receipts")
    raw = await read_json(request, RECEIPT_MAX_BYTES, beacon=True)
    if not isinstance(raw, dict):
        raise Problem(422, "The body must be a JSON object.", errors=[{"field": "body", "message": "not an object"}])
    try:
        receipt = ReceiptIn.model_validate(raw)
    except ValidationError as exc:
        raise field_errors(pydantic_errors(exc)) from None
    times: PublishTimes = request.app.state.publish_times
    published = await times.get(request.app.state.broker, receipt.flash, receipt.version)
    seconds = latency(receipt, published, datetime.now(UTC).timestamp())
    reach: Reach = request.app.state.reach
    reach.add(receipt.flash, receipt.version, receipt.surface, seconds, round(1 / receipt.rate))


async def flash_reach(request: Request) -> Response:
    await authenticate(request)
    flash_id = request.path_params["flash_id"]
    broker: Broker = request.app.state.broker
    if not is_flash_id(flash_id) or is_canary(flash_id) or await broker.get_flash(flash_id) is None:
        raise Problem(404, f"No flash with id {flash_id!r}.")
    reach: Reach = request.app.state.reach
    return json_response(await reach.flash(flash_id))


def routes() -> list[Route]:
    return [
        Route("/v1/receipts", receive, methods=["POST"]),
        Route("/v1/flashes/{flash_id}/reach", flash_reach, methods=["GET"]),
    ]
