"""The desk and the notification shades (Redis, worker, FCM/APNs/Web Push fakes): no device hears of an embargoed
flash before its instant, nor of a hold or a correction made while held; each then gets what readers get."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from .support.flashes import flash_body, flash_id
from .support.processes import create_token, run_ticker, wait_until
from .test_push import PLATFORMS, Setup, drain, fake_for, publish, push, register

__all__ = ["push"]  # the fixture, from test_push


def _counts(setup: Setup, devices: dict[str, str]) -> dict[str, int]:
    return {p: len(fake_for(setup, p).to(a)) for p, a in devices.items()}


def test_an_embargoed_flash_notifies_devices_at_its_instant_only(push: Setup) -> None:
    devices = {p: register(push, p, lang="en", category="health")[1] for p in PLATFORMS}
    at = datetime.now(UTC) + timedelta(seconds=3)
    body = flash_body("BREAKING: embargoed for devices", category="health", embargo=at.isoformat())
    response = push.client.post("/v1/flashes", json=body, headers=push.service.headers())
    assert response.status_code == 201, response.text
    wait_until(lambda: time.time() >= at.timestamp() - 0.3, "just before the embargo")
    assert _counts(push, devices) == dict.fromkeys(PLATFORMS, 0)
    wait_until(lambda: all(n == 1 for n in _counts(push, devices).values()), "one notification per device")
    drain(push)
    assert _counts(push, devices) == dict.fromkeys(PLATFORMS, 1)
    web = fake_for(push, "webpush").to(devices["webpush"])[0]
    assert web.body["type"] == "flash" and web.body["flash_id"] == flash_id(response.json())


def test_a_hold_and_a_correction_while_held_notify_no_device(push: Setup) -> None:
    devices = {p: register(push, p, lang="en", category="environment")[1] for p in PLATFORMS}
    doc = publish(push, category="environment")
    fid = flash_id(doc)
    wait_until(lambda: all(n == 1 for n in _counts(push, devices).values()), "the flash's notifications")
    assert push.client.post(f"/v1/flashes/{fid}/hold", headers=push.service.headers()).status_code == 200
    fixed = push.client.patch(f"/v1/flashes/{fid}", json={"headline": "Checked"}, headers=push.service.headers())
    assert fixed.status_code == 200
    drain(push)
    assert _counts(push, devices) == dict.fromkeys(PLATFORMS, 1)
    assert push.client.post(f"/v1/flashes/{fid}/release", headers=push.service.headers()).status_code == 200
    wait_until(lambda: all(n == 2 for n in _counts(push, devices).values()), "the release's notifications")
    web = fake_for(push, "webpush").to(devices["webpush"])[-1]
    assert (web.body["type"], web.body["headline"]) == ("update", "Checked")


def test_a_flash_waiting_for_approval_notifies_no_device_until_approved(push: Setup) -> None:
    devices = {p: register(push, p, lang="en", category="sports")[1] for p in PLATFORMS}
    made = run_ticker(push.service.env, "token", "create", "--name", "junior", "--needs-approval")
    junior = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}
    chief = {"Authorization": f"Bearer {create_token(push.service.env, 'chief', 'approve')}"}
    asked = push.client.post("/v1/flashes", json=flash_body("FLASH: pending", category="sports"), headers=junior)
    assert asked.status_code == 202, asked.text
    drain(push)
    assert _counts(push, devices) == dict.fromkeys(PLATFORMS, 0)
    assert push.client.post(f"/v1/flashes/{flash_id(asked.json())}/approve", headers=chief).status_code == 200
    wait_until(lambda: all(n == 1 for n in _counts(push, devices).values()), "the approved FLASH's notifications")
    drain(push)
    assert _counts(push, devices) == dict.fromkeys(PLATFORMS, 1)
