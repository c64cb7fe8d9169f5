"""The device registry API, the VAPID public key, and the browser's push scripts.

``POST /v1/devices`` → ``201 {"id", "secret", "device"}``; ``PUT``/``DELETE /v1/devices/{id}`` with
``Authorization: Bearer <secret>``. Devices live in Redis, where the worker finds them: the embedded mode (no Redis,
no worker) answers ``503`` with a problem saying so rather than accepting registrations it could never serve.
"""

from __future__ import annotations

import re
import secrets

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ..filters import FilterError
from ..problems import Problem
from ..push.device import PLATFORMS, Device, DeviceError, DeviceIn, device_from_input
from ..push.settings import PushSettings
from ..push.store import DeviceStore
from ..push.vapid import load, public_key_b64
from ..settings import Settings
from .editors import authenticate, limit_rate
from .http import field_errors, json_object, json_response, pydantic_errors, read_json

_DEVICE_ID = re.compile(r"^[0-9a-f]{32}$")
SCRIPT_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}


def _store(request: Request) -> DeviceStore:
    store: DeviceStore | None = request.app.state.backends.devices
    if store is None:
        raise Problem(
            503,
            "Push notifications need the distributed mode (REDIS_URL and a ticker worker); this is the embedded one.",
        )
    return store


def _parse(request: Request, raw: object, device_id: str, push: PushSettings) -> Device:
    settings: Settings = request.app.state.settings
    try:
        body = DeviceIn.model_validate(json_object(raw))
    except ValidationError as exc:
        raise field_errors([_untagged(field, message) for field, message in pydantic_errors(exc)]) from None
    try:
        return device_from_input(device_id, body, settings, push)
    except FilterError as exc:
        raise Problem(422, exc.message, errors=[{"field": exc.field, "message": exc.message}]) from None
    except DeviceError as exc:
        raise field_errors(exc.errors) from None


def _untagged(field: str, message: str) -> tuple[str, str]:
    """A field as the body names it: pydantic puts the platform (the union's tag) first (``fcm.token``), and names
    no field when the tag itself is wrong."""
    head, _, rest = field.partition(".")
    if head in PLATFORMS:
        return rest or "body", message
    return ("platform", message) if field == "body" and "platform" in message else (field, message)


async def _throttle(request: Request) -> None:
    """429 past ``TICKER_DEVICE_WRITES_PER_MINUTE`` from one address: registration is public, so it is bounded."""
    settings = request.app.state.settings
    ip = request.client.host if request.client else "-"
    limit = settings.device_writes_per_minute
    await limit_rate(request, request.app.state.rate_limiter, f"devices:{ip}", limit, "device", None, "device writes")


async def _authorised(request: Request, store: DeviceStore) -> str:
    device_id = request.path_params["device_id"]
    scheme, _, secret = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Problem(401, "Send the device's secret: Authorization: Bearer <secret>.")
    # One answer for an unknown id and a wrong secret: a caller without the secret learns nothing about the id
    # (not even that it is gone, after a DELETE).
    if not (_DEVICE_ID.match(device_id) and await store.check_secret(device_id, secret.strip())):
        raise Problem(401, "No device with this id and secret.")
    return str(device_id)


def routes(push: PushSettings) -> list[Route]:
    """The routes, with the push settings the app read once (``create_app``)."""
    try:
        pem = push.vapid_pem()
        vapid_public = public_key_b64(load(pem)) if pem else None
    except (OSError, ValueError) as exc:
        raise SystemExit(f"TICKER_PUSH_VAPID_PRIVATE_KEY(_FILE) is unusable: {exc}") from None

    async def register(request: Request) -> Response:
        store = _store(request)
        await _throttle(request)
        raw = await read_json(request, request.app.state.settings.max_body_bytes)
        device = _parse(request, raw, secrets.token_hex(16), push)
        secret = await store.register(device)
        body = {"id": device.id, "secret": secret, "device": device.public()}
        return json_response(body, 201, {"Location": f"/v1/devices/{device.id}"})

    async def update(request: Request) -> Response:
        store = _store(request)
        await _throttle(request)
        device_id = await _authorised(request, store)
        raw = await read_json(request, request.app.state.settings.max_body_bytes)
        device = _parse(request, raw, device_id, push)
        if not await store.update(device):
            raise Problem(404, f"No device with id {device_id!r}.")
        return json_response({"id": device.id, "device": device.public()})

    async def delete(request: Request) -> Response:
        store = _store(request)
        await _throttle(request)
        await store.delete(await _authorised(request, store))
        return Response(status_code=204, headers={"Cache-Control": "no-store"})

    async def vapid_key(request: Request) -> Response:
        if vapid_public is None:
            raise Problem(404, "Web Push is not configured on this server (no VAPID key).")
        return json_response({"publicKey": vapid_public})

    async def stats(request: Request) -> Response:
        """Notifications by platform and outcome since Redis was started (needs an editor token with ``admin``)."""
        await authenticate(request, "admin")
        store = _store(request)
        counts: dict[str, dict[str, int]] = {}
        for field, value in sorted((await store.stats()).items()):
            platform, _, outcome = field.partition(":")
            counts.setdefault(platform, {})[outcome or "total"] = value
        return json_response({"notifications": counts})

    def script(name: str) -> Response:
        path = push.js_dir / name
        if not path.is_file():
            raise Problem(404, f"{name} is not installed here (TICKER_PUSH_JS_DIR={push.js_dir}).")
        return FileResponse(path, media_type="text/javascript", headers=SCRIPT_HEADERS)

    async def service_worker(request: Request) -> Response:
        # Served from the root so that its scope covers every page of the site.
        return script("push-sw.js")

    async def push_helper(request: Request) -> Response:
        return script("push.js")

    return [
        Route("/v1/devices", register, methods=["POST"]),
        Route("/v1/devices/{device_id}", update, methods=["PUT"]),
        Route("/v1/devices/{device_id}", delete, methods=["DELETE"]),
        Route("/v1/push/vapid-public-key", vapid_key, methods=["GET"]),
        Route("/v1/push/stats", stats, methods=["GET"]),
        Route("/push-sw.js", service_worker, methods=["GET"]),
        Route("/push.js", push_helper, methods=["GET"]),
    ]
