"""The OpenAPI 3.1 document of the HTTP API, built from the pydantic models the API validates with.

Request bodies are the models the handlers validate with (:class:`FlashIn`, :class:`FlashPatch`, :class:`DeviceIn`);
responses are the models below, which describe what the handlers return. The configured taxonomy (categories,
regions) goes into the schemas, so the document says what this service accepts. Not operations, and so described
in the README instead: the reader streams (``/v1/stream``, ``/v1/events``), the pages (``/``, ``/editor``,
``/admin``), the scripts (``/static/``, ``/push.js``, ``/push-sw.js``) and Prometheus' ``/metrics``.
``tests/security/test_openapi.py`` checks that every route is documented, validates the document and fuzzes a live
server against it.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..flashes import FlashIn, FlashPatch
from ..push.device import DeviceIn
from ..settings import Settings
from .flashes import MAX_LIMIT
from .http import json_response
from .receipts import FlashReach, ReceiptIn


class Headline(BaseModel):
    role: str
    contentType: str
    value: str


class StoryRef(BaseModel):
    id: str = Field(description="The story's id: the language versions of one story share it.")


class Flash(BaseModel):
    """A flash as a ninjs 3.1 document (the main fields; ninjs allows more)."""

    model_config = ConfigDict(extra="allow")
    uri: str
    type: str
    version: str
    firstCreated: str
    versionCreated: str
    pubStatus: Literal["usable", "withheld", "canceled"] = Field(
        description="withheld: scheduled behind an embargo, pending a second editor, or on hold (editors only)."
    )
    embargoedUntil: str | None = Field(default=None, description="The embargo's instant, if it had one.")
    language: str
    urgency: int = Field(ge=1, le=9)
    headlines: list[Headline]
    events: list[StoryRef] | None = Field(default=None, description="The story, when the flash names one.")


class FlashList(BaseModel):
    flashes: list[Flash]
    last_event_id: str | None = Field(description="Subscribe after this event id to miss nothing.")


class WithheldRequest(BaseModel):
    flash: str = Field(description="The flash's id.")
    by: str = Field(description="The editor who published it (for an embargo) or asked for approval.")
    embargoedUntil: str | None


class WithheldList(BaseModel):
    """Flashes that no reader has seen yet, with who asked for each (``GET /v1/flashes?status=...``)."""

    status: Literal["scheduled", "pending"]
    flashes: list[Flash]
    requests: list[WithheldRequest]


class FieldError(BaseModel):
    field: str
    message: str


class ProblemDocument(BaseModel):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] | None = None


class AuditEntry(BaseModel):
    time: str
    action: str
    status: int
    who: str | None
    ip: str | None
    flash: str | None
    detail: str


class AuditList(BaseModel):
    entries: list[AuditEntry]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    status: str
    readers: int
    pid: int


class AdminStats(BaseModel):
    """What the operations page shows: hubs, workers, Redis, flashes per minute (see ``ops/reports.py``)."""

    model_config = ConfigDict(extra="allow")


class DeviceView(BaseModel):
    """A registered device as the API shows it (no secret, no push address in full)."""

    model_config = ConfigDict(extra="allow")


class DeviceRegistered(BaseModel):
    id: str
    secret: str = Field(description="Shown once: PUT and DELETE need it as Authorization: Bearer <secret>.")
    device: DeviceView


class DeviceUpdated(BaseModel):
    id: str
    device: DeviceView


class VapidKey(BaseModel):
    publicKey: str


class PushStats(BaseModel):
    notifications: dict[str, dict[str, int]]


class ReaderSession(BaseModel):
    topics: list[str]
    expires: float | None


MODELS: list[type[BaseModel]] = [
    FlashIn,
    FlashPatch,
    Flash,
    FlashList,
    WithheldList,
    ProblemDocument,
    AuditList,
    Health,
    Ready,
    ReaderSession,
    AdminStats,
    DeviceIn,
    DeviceRegistered,
    DeviceUpdated,
    VapidKey,
    PushStats,
    ReceiptIn,
    FlashReach,
]
EDITOR: list[dict[str, list[str]]] = [{"editorToken": []}]
OPTIONAL_READER: list[dict[str, list[str]]] = [{}, {"readerToken": []}, {"readerCookie": []}]
DEVICE: list[dict[str, list[str]]] = [{"deviceSecret": []}]
WRITE_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 429, 503)


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


Answer = type[BaseModel] | tuple[type[BaseModel], ...] | None  # one model, one of several, or no body


def _responses(ok: dict[int, tuple[str, Answer]], errors: tuple[int, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status, (text, model) in ok.items():
        out[str(status)] = {"description": text}
        if isinstance(model, tuple):
            out[str(status)]["content"] = {"application/json": {"schema": {"oneOf": [_ref(m) for m in model]}}}
        elif model is not None:
            out[str(status)]["content"] = {"application/json": {"schema": _ref(model)}}
    for status in errors:
        out[str(status)] = {
            "description": "An RFC 9457 problem document.",
            "content": {"application/problem+json": {"schema": _ref(ProblemDocument)}},
        }
    return out


def _query(name: str, text: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": text, "schema": schema}


FLASH_ID = {"name": "flash_id", "in": "path", "required": True, "schema": {"type": "string", "maxLength": 64}}
LIMIT = _query("limit", "How many (newest first).", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT})


# The same parameter on the reader streams (WebSocket /v1/stream, SSE /v1/events, which are not operations here)
# and on the devices' filter (`lang` in the body).
LANG = (
    "Languages, comma-separated (en also matches en-GB). Two or more are an order of preference: of each story "
    "(flashes sharing `story`), only the best version by that order; flashes without a story as usual."
)


def _filters(settings: Settings) -> list[dict[str, Any]]:
    return [
        _query("lang", LANG, {"type": "string"}),
        _query("category", f"Categories, comma-separated: {', '.join(settings.categories)}.", {"type": "string"}),
        _query("region", f"Regions, comma-separated: {', '.join(settings.regions)}.", {"type": "string"}),
        _query("max_urgency", "Only urgency 1..N.", {"type": "integer", "minimum": 1, "maximum": 9}),
    ]


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": _ref(model)}}}


def _paths(settings: Settings) -> dict[str, Any]:
    idempotency = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "description": "Retry-safe key (1-255 visible ASCII characters): a repeat returns the first flash.",
        "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
    }
    return {
        "/healthz": {"get": {"summary": "Alive", "responses": _responses({200: ("Alive.", Health)}, ())}},
        "/readyz": {
            "get": {
                "summary": "Ready: Redis reachable and subscribed",
                "responses": _responses({200: ("Ready.", Ready), 503: ("Not ready.", Ready)}, ()),
            }
        },
        "/v1/flashes": {
            "get": {
                "summary": "Current flashes, newest first; or, to an editor, those that wait",
                "description": (
                    "Without `status`: the current published flashes (public). With `status=scheduled` (waiting "
                    "for their embargo, soonest first) or `status=pending` (waiting for a second editor's "
                    "approval, oldest first): an editor token is required, and the answer is a `WithheldList`."
                ),
                "security": [*OPTIONAL_READER, *EDITOR],
                "parameters": [
                    *_filters(settings),
                    LIMIT,
                    _query("status", "Editors: the flashes that wait.", {"enum": ["scheduled", "pending"]}),
                ],
                "responses": _responses(
                    {200: ("The current flashes, or those that wait.", (FlashList, WithheldList))}, (400, 401, 503)
                ),
            },
            "post": {
                "summary": "Publish a flash",
                "description": (
                    "With `embargo`, the flash is stored at once (`pubStatus: withheld`, `embargoedUntil`) and "
                    "reaches readers and devices at that instant as an ordinary `flash` event; until then "
                    "`PATCH` changes it silently and `DELETE` cancels it (nothing is ever pushed). "
                    "With `TICKER_FLASH_APPROVAL=1`, or a token created `--needs-approval`, a FLASH (urgency 1) "
                    "is not published: `202`, `pubStatus: withheld`, until another editor approves it."
                ),
                "security": EDITOR,
                "parameters": [idempotency],
                "requestBody": _body(FlashIn),
                "responses": _responses(
                    {
                        201: ("Published, or scheduled (embargo).", Flash),
                        202: ("A FLASH waiting for a second editor's approval.", Flash),
                    },
                    WRITE_ERRORS,
                ),
            },
        },
        "/v1/flashes/{flash_id}": {
            "parameters": [FLASH_ID],
            "get": {
                "summary": "One flash, current version",
                "security": OPTIONAL_READER,
                "responses": _responses({200: ("The flash.", Flash)}, (401, 404, 503)),
            },
            "patch": {
                "summary": "Correct a flash",
                "description": (
                    "A JSON merge patch (RFC 7396): the fields given replace their values, the others keep theirs. "
                    "`null` removes a field, the same rule for every field: `regions`, `url`, `source` and "
                    "`expires` can go; `headline`, `language`, `urgency` and `category` cannot (every flash has "
                    "them), so their schema is not nullable and `null` is refused with 422 naming the field."
                ),
                "security": EDITOR,
                "requestBody": _body(FlashPatch),
                "responses": _responses({200: ("Corrected.", Flash)}, WRITE_ERRORS),
            },
            "delete": {
                "summary": "Withdraw a flash",
                "security": EDITOR,
                "responses": _responses({200: ("Withdrawn.", Flash)}, WRITE_ERRORS),
            },
        },
        "/v1/flashes/{flash_id}/reach": {
            "parameters": [FLASH_ID],
            "get": {
                "summary": "Time to screen: readers who saw the flash and how fast (from sampled display receipts)",
                "security": EDITOR,
                "responses": _responses({200: ("Its reach.", FlashReach)}, (401, 404, 503)),
            },
        },
        "/v1/receipts": {
            "post": {
                "summary": "A reader showed a flash version: its display receipt (public, sampled by the clients)",
                "description": (
                    "Also accepted as `text/plain` (a `navigator.sendBeacon` body). Counted receipts answer 204; "
                    "an unknown flash or version is 404 and an implausible `shown_at` 422, neither counted."
                ),
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref(ReceiptIn)},
                        "text/plain": {"schema": _ref(ReceiptIn)},
                    },
                },
                "responses": _responses({204: ("Counted.", None)}, (400, 404, 413, 415, 422, 429, 503)),
            }
        },
        "/v1/flashes/{flash_id}/hold": {
            "parameters": [FLASH_ID],
            "post": {
                "summary": "Put a published flash on hold while it is checked (scope withdraw)",
                "description": (
                    "`pubStatus: withheld`; readers get a `hold` event and hide it, it leaves the public list, "
                    "devices are not notified, and corrections stay silent until the release. Holding a held "
                    "flash changes nothing."
                ),
                "security": EDITOR,
                "responses": _responses({200: ("On hold.", Flash)}, WRITE_ERRORS),
            },
        },
        "/v1/flashes/{flash_id}/release": {
            "parameters": [FLASH_ID],
            "post": {
                "summary": "Release a held flash (scope withdraw)",
                "description": "`pubStatus: usable` again, pushed to readers as an `update` (with any correction "
                "made while it was held).",
                "security": EDITOR,
                "responses": _responses({200: ("Released.", Flash)}, WRITE_ERRORS),
            },
        },
        "/v1/flashes/{flash_id}/approve": {
            "parameters": [FLASH_ID],
            "post": {
                "summary": "Approve a FLASH another editor asked for (scope approve)",
                "description": "Publishes it as an ordinary `flash` (or, before its embargo, schedules it). The "
                "editor who asked for it gets `403`.",
                "security": EDITOR,
                "responses": _responses({200: ("Approved.", Flash)}, WRITE_ERRORS),
            },
        },
        "/v1/flashes/{flash_id}/reject": {
            "parameters": [FLASH_ID],
            "post": {
                "summary": "Reject a FLASH waiting for approval (scope approve): it is never published",
                "security": EDITOR,
                "responses": _responses({200: ("Rejected.", Flash)}, WRITE_ERRORS),
            },
        },
        "/v1/audit": {
            "get": {
                "summary": "Newest audit entries (admin scope)",
                "security": EDITOR,
                "parameters": [_query("limit", "How many.", {"type": "integer", "minimum": 1, "maximum": 1000})],
                "responses": _responses({200: ("Audit entries.", AuditList)}, (400, 401, 403, 429, 503)),
            }
        },
        "/v1/admin/stats": {
            "get": {
                "summary": "Operations figures across hubs and workers (admin scope)",
                "security": EDITOR,
                "responses": _responses({200: ("The figures.", AdminStats)}, (401, 403, 429, 503)),
            }
        },
        "/v1/devices": {
            "post": {
                "summary": "Register a phone or browser for push notifications (see docs/push.md)",
                "requestBody": _body(DeviceIn),
                "responses": _responses({201: ("Registered.", DeviceRegistered)}, (400, 413, 415, 422, 429, 503)),
            }
        },
        "/v1/devices/{device_id}": {
            "parameters": [{"name": "device_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "put": {
                "summary": "Change a device's address or filter",
                "security": DEVICE,
                "requestBody": _body(DeviceIn),
                "responses": _responses({200: ("Changed.", DeviceUpdated)}, (400, 401, 413, 415, 422, 429, 503)),
            },
            "delete": {
                "summary": "Forget a device",
                "security": DEVICE,
                "responses": _responses({204: ("Forgotten.", None)}, (401, 429, 503)),
            },
        },
        "/v1/push/vapid-public-key": {
            "get": {
                "summary": "The Web Push (VAPID) public key",
                "responses": _responses({200: ("The key.", VapidKey)}, (404,)),
            }
        },
        "/v1/push/stats": {
            "get": {
                "summary": "Notifications by platform and outcome (admin scope)",
                "security": EDITOR,
                "responses": _responses({200: ("Counts.", PushStats)}, (401, 403, 429, 503)),
            }
        },
        "/v1/reader-session": {
            "post": {
                "summary": "Set the reader token as an HttpOnly cookie (for EventSource)",
                "security": [{"readerToken": []}],
                "responses": _responses({200: ("Cookie set.", ReaderSession)}, (401, 404)),
            },
            "delete": {
                "summary": "Remove the reader cookie",
                "responses": _responses({204: ("Cookie removed.", None)}, ()),
            },
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1 document."}}}
        },
    }


def _schemas(settings: Settings) -> dict[str, Any]:
    _, top = models_json_schema([(m, "validation") for m in MODELS], ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = top["$defs"]
    for name in ("FlashIn", "FlashPatch"):  # what this service's configuration accepts
        props = schemas[name]["properties"]
        regions = props["regions"]
        enum = {"type": "string", "enum": list(settings.categories)}
        props["category"] = enum if name == "FlashIn" else {"anyOf": [enum, {"type": "null"}], "default": None}
        items = {"type": "string", "enum": list(settings.regions)}
        for schema in [regions, *regions.get("anyOf", [])]:
            if schema.get("type") == "array":
                schema["items"] = items
    for name in ("FcmDevice", "ApnsDevice", "WebPushDevice"):  # a device's filter, in the same taxonomy
        props = schemas[name]["properties"]
        props["lang"] = _facet(props["lang"], LANGUAGE_RANGE)
        for field, values in (("category", settings.categories), ("region", settings.regions)):
            props[field] = _facet(props[field], "(?:" + "|".join(_any_case(value) for value in values) + ")")
    return schemas


LANGUAGE_RANGE = "[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*"  # BCP 47 basic language range, as flashes.BCP47


def _any_case(value: str) -> str:
    """A regular expression for ``value`` in any case (JSON Schema's patterns have no flags; ECMA has no ``\\-``)."""
    parts = [f"[{c.lower()}{c.upper()}]" if c.lower() != c.upper() else re.escape(c) for c in value]
    return "".join(parts).replace("\\-", "-")


def _facet(schema: dict[str, Any], one: str) -> dict[str, Any]:
    """A filter field as the hub reads it (``filters.Filter.parse``): comma-separated values in any case, spaces
    around each and empty ones ignored, or a list of them, or null."""
    item = f"\\s*(?:{one})?\\s*"
    kinds = [
        {"type": "string", "pattern": f"^{item}(?:,{item})*$"},
        {"type": "array", "items": {"type": "string", "pattern": f"^{item}$"}},
        {"type": "null"},
    ]
    return {"anyOf": kinds, "default": None, "description": schema.get("description", "")}


def document(settings: Settings) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "ticker",
            "version": "1",
            "description": "Live breaking-news push service: the editors' and readers' HTTP API. Readers' streams: "
            "WebSocket /v1/stream and SSE /v1/events (see the README), with the filter parameters of GET /v1/flashes "
            "(components.parameters). With an ordered `lang` preference a reader gets one version of each story; "
            'a better one arrives as {"type": "update", "event_id", "flash", "replaces": "<uri of the one it had>"} '
            '(SSE: event update, data {"flash", "replaces"}).',
        },
        "paths": _paths(settings),
        "components": {
            "schemas": _schemas(settings),
            "parameters": {p["name"]: p for p in _filters(settings)},
            "securitySchemes": {
                "editorToken": {"type": "http", "scheme": "bearer", "description": "An editor token, tkr_..."},
                "readerToken": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "readerCookie": {"type": "apiKey", "in": "cookie", "name": "ticker_reader"},
                "deviceSecret": {"type": "http", "scheme": "bearer", "description": "A device's secret."},
            },
        },
    }


async def openapi_json(request: Request) -> Response:
    return json_response(document(request.app.state.settings))


def routes() -> list[Route]:
    return [Route("/openapi.json", openapi_json, methods=["GET"])]
