"""Build the bridges the configuration allows, each with its own kept-open HTTP/2 client; say which are off."""

from __future__ import annotations

import logging

import httpx

from ticker_service.push.settings import PushSettings
from ticker_service.push.vapid import load

from .apns import ApnsBridge
from .base import Bridge, http_client, push_client
from .fcm import FcmBridge
from .webpush import WebPushBridge

logger = logging.getLogger("ticker.push")


def build_bridges(settings: PushSettings, request_timeout: float) -> dict[str, Bridge]:
    """The configured bridges by platform. A bridge whose credentials are unusable stops the worker (loudly)."""
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
