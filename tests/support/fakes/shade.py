"""What a phone's notification shade shows, from the messages its push service accepted for it, as the apps are
documented to act (docs/push.md): an alert is shown under its collapse id (APNs ``apns-collapse-id``, Android
notification ``tag``), replacing what was shown under it; a withdrawal (APNs background push, FCM data message)
removes the notification of its ``collapse_id`` if that notification shows the withdrawn flash."""

from __future__ import annotations

from typing import Any

from .base import Received

Shade = dict[str, tuple[str, str]]  # collapse id -> (flash id, the headline shown)


def _withdraw(shown: Shade, fields: dict[str, Any]) -> None:
    key = str(fields.get("collapse_id") or fields.get("flash_id"))
    if key in shown and shown[key][0] == fields.get("flash_id"):
        del shown[key]


def apns_shade(messages: list[Received]) -> Shade:
    shown: Shade = {}
    for message in messages:
        fields = message.body.get("ticker", {})
        if message.headers.get("apns-push-type") == "alert":
            key = message.headers.get("apns-collapse-id") or str(fields.get("flash_id"))
            shown[key] = (str(fields.get("flash_id")), str(message.body["aps"]["alert"]["body"]))
        elif fields.get("type") == "withdraw":
            _withdraw(shown, fields)
    return shown


def fcm_shade(messages: list[Received]) -> Shade:
    shown: Shade = {}
    for message in messages:
        data = message.body.get("data", {})
        if "notification" in message.body:
            key = message.body["android"]["notification"]["tag"]
            shown[key] = (str(data.get("flash_id")), str(message.body["notification"]["body"]))
        elif data.get("type") == "withdraw":
            _withdraw(shown, data)
    return shown
