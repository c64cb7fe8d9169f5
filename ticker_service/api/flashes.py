"""Ingest, and the flashes as a resource: publish, correct and withdraw; read one or the current list.

``POST /v1/flashes``: authenticate → read a bounded JSON body → validate → claim the ``Idempotency-Key`` →
``broker.record`` (history + state + fan-out job, atomically) → ``201`` with the ninjs document. A flash with an
``embargo`` is ``broker.stage``d instead: stored, withheld, and released at its instant (``broker/release.py``).
The desk's other verbs (hold, release, approve, reject) are in :mod:`.desk`.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import orjson
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..broker import Broker, ClaimLost, VersionConflict, Withheld
from ..events import EventType
from ..filters import Filter, FilterError
from ..flashes import (
    APPROVAL_NOTE,
    Document,
    FlashIn,
    FlashPatch,
    canceled_document,
    corrected_document,
    editor_values,
    embargo_ms,
    flash_id_of,
    is_flash_id,
    new_document,
    pending_document,
    revised_document,
    withdrawn_document,
)
from ..problems import Problem
from ..security.audit import audit, request_entry
from ..security.readers import request_grant
from ..security.tokens import Editor
from ..settings import Settings
from ..stories import select
from .editors import authenticate, check_desk
from .http import DirectEndpoint, json_response, read_json, validate

_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
MAX_LIMIT = 200


def idempotency_scope(editor: Editor, key: str) -> str:
    """Keys are per editor token: two desks may use the same key without colliding."""
    return f"{editor.token_hash[:32]}:{hashlib.sha256(key.encode()).hexdigest()}"


def fingerprint(flash: BaseModel) -> str:
    """The validated body, canonicalised: formatting and key order do not make it a different request."""
    return hashlib.sha256(orjson.dumps(flash.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS)).hexdigest()


def _location(doc: Document) -> dict[str, str]:
    return {"Location": f"/v1/flashes/{flash_id_of(doc)}"}


async def publish(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    broker: Broker = request.app.state.broker
    editor = await authenticate(request, "publish")
    flash = validate(FlashIn, await read_json(request, settings.max_body_bytes), settings)
    await check_desk(request, editor, "publish", flash.model_dump())

    idempotency: tuple[str, str, str] | None = None
    key = request.headers.get("idempotency-key")
    if key is not None:
        if not _IDEMPOTENCY_KEY.match(key):
            raise Problem(400, "Idempotency-Key must be 1–255 visible ASCII characters.")
        scope, print_ = idempotency_scope(editor, key), fingerprint(flash)
        claim = await broker.claim(scope, print_)
        if claim.state == "in_flight":
            raise Problem(
                409,
                "A request with this Idempotency-Key is still in flight; retry shortly.",
                headers={"Retry-After": "1"},
            )
        if claim.state == "mismatch":
            raise Problem(
                422,
                "This Idempotency-Key was already used with a different body.",
                errors=[{"field": "Idempotency-Key", "message": "reused with a different body"}],
            )
        if claim.state == "done" and claim.document is not None:
            flash_id = flash_id_of(claim.document)
            status = 202 if claim.document.get("edNote") == APPROVAL_NOTE else 201
            await audit(request, "publish", status, editor.name, flash=flash_id, detail="repeat of an Idempotency-Key")
            return json_response(claim.document, status, _location(claim.document))
        idempotency = (scope, print_, claim.token)

    doc = new_document(flash, settings)
    withheld = None
    if flash.urgency == 1 and (settings.flash_approval or editor.desk.needs_approval):
        # Two-person FLASH: stored, and published only when another editor approves it (api/desk.py).
        doc = pending_document(doc)
        withheld = Withheld("pending", embargo_ms(doc), editor.name, editor.token_hash)
    elif flash.embargo is not None:
        withheld = Withheld("scheduled", embargo_ms(doc), editor.name, editor.token_hash)
    status, detail = 201, (f"story {flash.story}" if flash.story else "")
    if withheld is not None and withheld.status == "pending":
        status, detail = 202, ", ".join(filter(None, [detail, "waiting for a second editor's approval"]))
    elif withheld is not None:
        detail = ", ".join(filter(None, [detail, f"embargoed until {doc['embargoedUntil']}"]))
    entry = request_entry(request, "publish", status, editor.name, flash=flash_id_of(doc), detail=detail)
    audited = False
    try:
        if withheld is not None and await broker.count_withheld() >= settings.withheld_max_flashes:
            raise Problem(
                409,
                f"{settings.withheld_max_flashes} flashes already wait (embargo or approval); publish or cancel some.",
            )
        if withheld is None:
            # Where the broker keeps the audit log too (Redis), the entry is written by the same script.
            audited = broker.records_audit
            note = orjson.dumps(entry) if audited else b""
            await broker.record("flash", doc, expect_version=None, idempotency=idempotency, audit=note)
        else:
            await broker.stage(doc, expect_version=None, withheld=withheld, idempotency=idempotency)
    except ClaimLost:
        raise Problem(
            409,
            "This Idempotency-Key's claim lapsed before the flash was recorded; retry.",
            headers={"Retry-After": "1"},
        ) from None
    except BaseException:
        if idempotency is not None:
            await broker.release(idempotency[0], idempotency[2])
        raise
    if not audited:
        await request.app.state.audit.record(entry)
    return json_response(doc, status, _location(doc))


async def current_flash(broker: Broker, request: Request) -> Document:
    """The flash the request's ``{flash_id}`` names, as it is now (404 if there is none)."""
    flash_id = request.path_params["flash_id"]
    doc = await broker.get_flash(flash_id) if is_flash_id(flash_id) else None
    if doc is None:
        raise Problem(404, f"No flash with id {flash_id!r}.")
    return doc


async def _change(request: Request, type: EventType) -> Response:
    """Correct (``update``) or withdraw a flash, re-reading it if a concurrent change won the race."""
    settings: Settings = request.app.state.settings
    broker: Broker = request.app.state.broker
    action = "correct" if type == "update" else "withdraw"
    editor = await authenticate(request, action)
    patch = None
    if type == "update":
        patch = validate(FlashPatch, await read_json(request, settings.max_body_bytes), settings)
    if patch is not None and not patch.model_fields_set:
        raise Problem(422, "Give at least one field to correct.", errors=[{"field": "body", "message": "empty"}])
    for _ in range(5):
        doc = await current_flash(broker, request)
        await check_desk(request, editor, action, doc)  # the flash as it is, and as corrected, are on the desk
        if patch is not None and ("language" in patch.model_fields_set or "category" in patch.model_fields_set):
            await check_desk(request, editor, action, {**editor_values(doc), **patch.model_dump(exclude_unset=True)})
        if doc["pubStatus"] == "canceled":
            if patch is None:
                return json_response(doc)  # withdrawing twice changes nothing and pushes nothing
            raise Problem(409, "This flash was withdrawn; it cannot be corrected.")
        withheld = await broker.withheld(flash_id_of(doc)) if doc["pubStatus"] == "withheld" else None
        if patch is not None and "embargo" in patch.model_fields_set and (withheld is None or not withheld.due_ms):
            raise Problem(409, "Only a scheduled flash's embargo can change; this one is not scheduled.")
        try:
            if withheld is not None:
                new = await _change_unseen(broker, doc, withheld, patch)
            elif doc["pubStatus"] == "withheld" and patch is not None:
                # On hold: readers are not told of a correction until the release, which carries it.
                new = corrected_document(doc, patch)
                await broker.stage(new, expect_version=doc["version"], withheld=None)
            else:
                new = corrected_document(doc, patch) if patch is not None else withdrawn_document(doc)
                await broker.record(type, new, expect_version=doc["version"])
        except VersionConflict:
            continue
        silent = "silent: " + (withheld.status if withheld is not None else "on hold")
        detail = silent if doc["pubStatus"] == "withheld" and new["pubStatus"] != "canceled" else ""
        if withheld is not None and new["pubStatus"] == "canceled":
            detail = f"{withheld.status} flash canceled before release: never published"
        await audit(request, action, 200, editor.name, flash=flash_id_of(new), detail=detail)
        return json_response(new)
    raise Problem(409, "The flash kept changing under this request; retry.")


async def _change_unseen(broker: Broker, doc: Document, withheld: Withheld, patch: FlashPatch | None) -> Document:
    """Change or cancel a flash no reader has seen (scheduled or pending): no event, nothing pushed, ever."""
    if patch is None:
        await broker.discard(flash_id_of(doc), doc["version"])
        return canceled_document(doc, f"Canceled before release ({withheld.status}): never published.")
    new = revised_document(doc, patch)
    if withheld.due_ms:
        withheld = Withheld(withheld.status, embargo_ms(new), withheld.by, withheld.by_id)
    await broker.stage(new, expect_version=doc["version"], withheld=withheld)
    return new


async def correct(request: Request) -> Response:
    return await _change(request, "update")


async def withdraw(request: Request) -> Response:
    return await _change(request, "withdraw")


async def _is_editor(request: Request) -> bool:
    """Whether the request carries a valid editor token (quietly: a reader's JWT is no editor's token)."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return False
    return await request.app.state.tokens.authenticate(token.strip()) is not None


async def get_flash(request: Request) -> Response:
    doc = await current_flash(request.app.state.broker, request)
    hidden = doc["pubStatus"] == "withheld" and not await _is_editor(request)  # embargoed, pending or on hold
    if hidden or not request.app.state.security.readers.apply(Filter(), request_grant(request)).may_see(doc):
        raise Problem(404, f"No flash with id {request.path_params['flash_id']!r}.")  # not even its existence
    return json_response(doc)


async def list_flashes(request: Request) -> Response:
    """Current, not withdrawn, not expired flashes, newest first, with the event id to subscribe after; with a
    language preference (``lang=ar,en``), one version of each story, the best by that order.

    ``status=scheduled`` or ``status=pending`` (an editor's token): the flashes waiting for their embargo or for a
    second editor instead, the soonest or oldest first."""
    broker: Broker = request.app.state.broker
    status = request.query_params.get("status")
    if status is not None:
        return await _list_withheld(request, broker, status)
    try:
        flt = Filter.parse(request.query_params)
    except FilterError as exc:
        raise Problem(400, exc.message, errors=[{"field": exc.field, "message": exc.message}]) from None
    flt = request.app.state.security.readers.apply(flt, request_grant(request))
    raw_limit = request.query_params.get("limit", "20")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise Problem(
            400,
            f"limit must be an integer from 1 to {MAX_LIMIT}.",
            errors=[{"field": "limit", "message": "out of range"}],
        )
    limit = int(raw_limit)
    docs, last_event_id = await broker.recent(1000)
    now = datetime.now(UTC)
    flashes = select(flt, [d for d in docs if not _expired(d, now)])[:limit]
    # Public, like the streams: a ticker embedded in a page on another origin loads this first.
    return json_response(
        {"flashes": flashes, "last_event_id": last_event_id}, headers={"Access-Control-Allow-Origin": "*"}
    )


WITHHELD_STATUSES = ("scheduled", "pending")


async def _list_withheld(request: Request, broker: Broker, status: str) -> Response:
    if status not in WITHHELD_STATUSES:
        message = f"status must be one of {', '.join(WITHHELD_STATUSES)}"
        raise Problem(400, message + ".", errors=[{"field": "status", "message": message}])
    await authenticate(request)
    items = await broker.list_withheld(status, MAX_LIMIT)
    requests = [
        {
            "flash": flash_id_of(doc),
            "by": why.by,
            "embargoedUntil": doc.get("embargoedUntil") if why.due_ms else None,
        }
        for doc, why in items
    ]
    return json_response({"status": status, "flashes": [doc for doc, _ in items], "requests": requests})


def _expired(doc: Document, now: datetime) -> bool:
    return "expires" in doc and datetime.fromisoformat(doc["expires"]) <= now


def routes() -> list[Route]:
    return [
        Route("/v1/flashes", DirectEndpoint(publish), methods=["POST"]),
        Route("/v1/flashes", list_flashes, methods=["GET"]),
        Route("/v1/flashes/{flash_id}", get_flash, methods=["GET"]),
        Route("/v1/flashes/{flash_id}", correct, methods=["PATCH"]),
        Route("/v1/flashes/{flash_id}", withdraw, methods=["DELETE"]),
    ]
