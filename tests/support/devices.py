"""What a browser hands over for Web Push: a subscription with a fresh P-256 key, as ``PushManager.subscribe`` gives."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def subscription(endpoint: str = "https://fcm.googleapis.com/fcm/send/abc123") -> dict[str, Any]:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    raw = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()  # noqa: E731
    return {
        "endpoint": endpoint,
        "expirationTime": None,
        "keys": {"p256dh": b64(raw), "auth": b64(b"0123456789abcdef")},
    }
