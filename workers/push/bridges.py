"""Build the bridges the configuration allows, each with its own kept-open HTTP/2 client; say which are off."""

from __future__ import annotations

import logging

import httpx
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ticker_service.push.settings import PushSettings
from ticker_service.push.vapid import load

from .apns import ApnsBridge
from .base import Bridge, http_client, push_client
from .fcm import FcmBridge
from .webpush import WebPushBridge

logger = logging.getLogger("ticker.push")


def _fcm_problem(key_json: str, project: str | None) -> str | None:
    """What is wrong with an FCM service-account key, or None."""
    try:
        key = orjson.loads(key_json)
    except orjson.JSONDecodeError as exc:
        return f"it is not JSON ({exc})"
    if not isinstance(key, dict):
        return "it is not a JSON object"
    needed = ["client_email", "private_key"] + ([] if project else ["project_id"])
    missing = [field for field in needed if not isinstance(key.get(field), str)]
    if missing:
        return f"it has no {', '.join(missing)}"
    if not isinstance(_private_key(key["private_key"]), rsa.RSAPrivateKey):
        return "its private_key is not an RSA private key in PEM"
    return None


def _private_key(pem: str) -> object:
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError):
        return None


def _setting(inline: str | None, name: str) -> str:
    return name if inline else f"{name}_FILE"


def check_credentials(settings: PushSettings) -> None:
    """Stop at start, with a message naming the setting, when a configured bridge's credentials are unusable (a
    placeholder left in a Secret, a file that is not there), instead of failing later inside a bridge."""
    problems = []
    try:
        fcm_key = settings.fcm_key()
        problem = _fcm_problem(fcm_key, settings.fcm_project) if fcm_key else None
    except OSError as exc:
        problem = f"it cannot be read ({exc})"
    if problem:
        name = _setting(settings.fcm_credentials, "TICKER_PUSH_FCM_CREDENTIALS")
        problems.append(f"{name} is not a usable FCM service-account key: {problem}")
    try:
        apns_key = settings.apns_pem()
        problem = "it is not an EC private key in PEM (.p8)" if apns_key and not _is_ec(apns_key) else None
    except OSError as exc:
        problem = f"it cannot be read ({exc})"
    if problem:
        problems.append(f"{_setting(settings.apns_key, 'TICKER_PUSH_APNS_KEY')} is not a usable APNs key: {problem}")
    try:
        vapid = settings.vapid_pem()
        if vapid:
            load(vapid)
        problem = None
    except (OSError, ValueError, TypeError) as exc:
        problem = str(exc) or type(exc).__name__
    if problem:
        name = _setting(settings.vapid_private_key, "TICKER_PUSH_VAPID_PRIVATE_KEY")
        problems.append(f"{name} is not a usable VAPID key: {problem} (ticker push vapid-keys makes one)")
    if problems:
        advice = "Set each to the real credential, or unset it to turn that bridge off."
        raise SystemExit("\n".join([*problems, advice]))


def _is_ec(pem: str) -> bool:
    return isinstance(_private_key(pem), ec.EllipticCurvePrivateKey)


def build_bridges(settings: PushSettings, request_timeout: float) -> dict[str, Bridge]:
    """The configured bridges by platform. A bridge whose credentials are unusable stops the worker (loudly)."""
    check_credentials(settings)
    bridges: dict[str, Bridge] = {}

    def client() -> httpx.AsyncClient:
        return http_client(settings.ca_file, request_timeout, settings.concurrency)

    fcm_key = settings.fcm_key()
    if fcm_key:
        sender = push_client(settings.ca_file, request_timeout)
        bridges["fcm"] = FcmBridge(fcm_key, settings.fcm_project, settings.fcm_url, client(), sender)
    apns_key = settings.apns_pem()
    apns_ids = (settings.apns_key_id, settings.apns_team_id, settings.apns_topic)
    if apns_key and all(apns_ids):
        key_id, team_id, topic = (str(v) for v in apns_ids)
        bridges["apns"] = ApnsBridge(
            apns_key, key_id, team_id, topic, settings.apns_url, push_client(settings.ca_file, request_timeout)
        )
    vapid = settings.vapid_pem()
    if vapid:
        bridges["webpush"] = WebPushBridge(
            load(vapid), settings.vapid_subject, push_client(settings.ca_file, request_timeout)
        )

    hints = {
        "fcm": "set TICKER_PUSH_FCM_CREDENTIALS_FILE",
        "apns": "set TICKER_PUSH_APNS_KEY_FILE, _KEY_ID, _TEAM_ID and _TOPIC",
        "webpush": "set TICKER_PUSH_VAPID_PRIVATE_KEY_FILE (ticker push vapid-keys makes one)",
    }
    for platform, hint in hints.items():
        bridge = bridges.get(platform)
        if bridge is None:
            logger.info("push bridge %s: off (%s)", platform, hint)
        else:
            logger.info("push bridge %s: on (%s)", platform, bridge.describe())
    return bridges
