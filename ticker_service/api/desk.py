"""The desk's verbs on a flash beyond publish, correct and withdraw: hold and release; approve and reject.

A **hold** (scope ``withdraw``) takes a published flash off the air while it is checked: a ``hold`` event tells
readers to hide it, it leaves the public list, devices hear nothing, and corrections wait silently. **Release**
puts it back as an ``update``. **Approve** and **reject** (scope ``approve``, another editor than the one who asked)
decide a FLASH that waits for a second editor (``TICKER_FLASH_APPROVAL`` or a token made ``--needs-approval``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..broker import Broker, VersionConflict, Withheld
from ..flashes import (
    Document,
    canceled_document,
    flash_id_of,
    held_document,
    released_document,
)
from ..problems import Problem
from ..security.audit import audit
from ..security.tokens import Editor
from .editors import authenticate, check_desk
from .flashes import current_flash
from .http import json_response

Step = Callable[[Broker, Editor, Document, Withheld | None], Awaitable[tuple[Document, str] | None]]


async def _act(request: Request, action: str, scope: str, step: Step) -> Response:
    """Authenticate, then apply ``step`` to the flash as it is, re-reading it if a concurrent change won.

    ``step`` returns the new document and the audit detail, or ``None`` when there is nothing to change (the
    flash is answered as it is).
    """
    broker: Broker = request.app.state.broker
    editor = await authenticate(request, scope, action)
    for _ in range(5):
        doc = await current_flash(broker, request)
        await check_desk(request, editor, action, doc)
        withheld = await broker.withheld(flash_id_of(doc)) if doc["pubStatus"] == "withheld" else None
        try:
            done = await step(broker, editor, doc, withheld)
        except VersionConflict:
            continue
        except Problem as problem:
            await audit(request, action, problem.status, editor.name, flash=flash_id_of(doc), detail=problem.detail)
            raise
        if done is None:
            return json_response(doc)
        new, detail = done
        await audit(request, action, 200, editor.name, flash=flash_id_of(new), detail=detail)
        return json_response(new)
    raise Problem(409, "The flash kept changing under this request; retry.")


def _unpublished(withheld: Withheld) -> Problem:
    what = "waits for its embargo" if withheld.status == "scheduled" else "waits for a second editor"
    return Problem(409, f"This flash {what}: no reader has it yet.")


async def _hold(
    broker: Broker, editor: Editor, doc: Document, withheld: Withheld | None
) -> tuple[Document, str] | None:
    if withheld is not None:
        raise _unpublished(withheld)
    if doc["pubStatus"] == "canceled":
        raise Problem(409, "This flash was withdrawn; there is nothing to hold.")
    if doc["pubStatus"] == "withheld":
        return None  # already on hold
    new = held_document(doc)
    await broker.record("hold", new, expect_version=doc["version"])
    return new, ""


async def _release(
    broker: Broker, editor: Editor, doc: Document, withheld: Withheld | None
) -> tuple[Document, str] | None:
    if withheld is not None:
        raise _unpublished(withheld)
    if doc["pubStatus"] == "canceled":
        raise Problem(409, "This flash was withdrawn; it cannot be released.")
    if doc["pubStatus"] == "usable":
        return None  # not on hold
    new = released_document(doc)
    await broker.record("update", new, expect_version=doc["version"])
    return new, ""


def _pending(withheld: Withheld | None) -> Withheld:
    if withheld is None or withheld.status != "pending":
        raise Problem(409, "This flash is not waiting for approval.")
    return withheld


async def _approve(
    broker: Broker, editor: Editor, doc: Document, withheld: Withheld | None
) -> tuple[Document, str] | None:
    asked = _pending(withheld)
    if editor.token_hash == asked.by_id or editor.name == asked.by:
        raise Problem(403, f"A FLASH needs a second editor: {editor.name!r} asked for this one and cannot approve it.")
    detail = f"FLASH asked for by {asked.by!r}, approved by {editor.name!r}"
    if asked.due_ms > time.time() * 1000:  # approved before its embargo: it now waits for that alone
        scheduled = {k: v for k, v in doc.items() if k != "edNote"}
        scheduled["version"] = str(int(doc["version"]) + 1)
        await broker.stage(
            scheduled,
            expect_version=doc["version"],
            withheld=Withheld("scheduled", asked.due_ms, asked.by, asked.by_id),
        )
        return scheduled, detail + f"; embargoed until {doc['embargoedUntil']}"
    new = released_document(doc)
    await broker.record("flash", new, expect_version=doc["version"])
    return new, detail


async def _reject(
    broker: Broker, editor: Editor, doc: Document, withheld: Withheld | None
) -> tuple[Document, str] | None:
    asked = _pending(withheld)
    await broker.discard(flash_id_of(doc), doc["version"])
    detail = f"FLASH asked for by {asked.by!r}, rejected by {editor.name!r}: never published"
    return canceled_document(doc, f"Rejected by {editor.name}: never published."), detail


async def approve(request: Request) -> Response:
    return await _act(request, "approve", "approve", _approve)


async def reject(request: Request) -> Response:
    return await _act(request, "reject", "approve", _reject)


async def hold(request: Request) -> Response:
    return await _act(request, "hold", "withdraw", _hold)


async def release(request: Request) -> Response:
    return await _act(request, "release", "withdraw", _release)


def routes() -> list[Route]:
    return [
        Route("/v1/flashes/{flash_id}/hold", hold, methods=["POST"]),
        Route("/v1/flashes/{flash_id}/release", release, methods=["POST"]),
        Route("/v1/flashes/{flash_id}/approve", approve, methods=["POST"]),
        Route("/v1/flashes/{flash_id}/reject", reject, methods=["POST"]),
    ]
