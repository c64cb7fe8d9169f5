"""One story, many languages on devices: real Redis, hub and worker, and the FCM, APNs and Web Push fakes. A device
whose ``lang`` is an order of preference is notified of the best version of a story, of a better one when it
comes, of the next best when the one it shows is withdrawn, and never of a worse one."""

from __future__ import annotations

import secrets
from typing import Any

from .support.flashes import flash_id
from .support.processes import wait_until
from .test_push import PLATFORMS, Setup, drain, fake_for, publish, push, register

__all__ = ["push"]  # the module's fixture: its own hub, worker and fakes


def shown(setup: Setup, platform: str, address: str) -> list[tuple[str, str]]:
    """(type, flash id) of each message a device received, in order."""
    out = []
    for message in fake_for(setup, platform).to(address):
        body: dict[str, Any] = message.body
        fields = body["data"] if platform == "fcm" else body["ticker"] if platform == "apns" else body
        out.append((fields["type"], fields["flash_id"]))
    return out


def test_devices_are_shown_the_best_version_of_a_story(push: Setup) -> None:
    """``lang=ar,en``: en, then ar (better), not en-GB (worse), en again when ar is withdrawn; ``lang=en``: both
    English versions, as before. At most one notification per version shown."""
    story = f"quake-{secrets.token_hex(4)}"
    preferring = {p: register(push, p, lang="ar,en", category="politics")[1] for p in PLATFORMS}
    plain = {p: register(push, p, lang="en", category="politics")[1] for p in PLATFORMS}

    def wait_for(devices: dict[str, str], count: int) -> None:
        for platform, address in devices.items():
            wait_until(lambda p=platform, a=address: len(shown(push, p, a)) >= count, f"{platform}: {count} shown")

    en = publish(push, language="en", story=story, urgency=1)
    wait_for(preferring, 1)
    ar = publish(push, language="ar", story=story, urgency=1)
    wait_for(preferring, 2)
    en_gb = publish(push, language="en-GB", story=story, urgency=1)
    wait_for(plain, 2)
    drain(push)
    withdrawn = push.client.delete(f"/v1/flashes/{flash_id(ar)}", headers=push.service.headers())
    assert withdrawn.status_code == 200
    wait_for(preferring, 3)
    drain(push)
    for platform in PLATFORMS:
        assert shown(push, platform, preferring[platform]) == [
            ("flash", flash_id(en)),
            ("update", flash_id(ar)),
            ("update", flash_id(en)),
        ], platform
        assert shown(push, platform, plain[platform]) == [("flash", flash_id(en)), ("flash", flash_id(en_gb))]
