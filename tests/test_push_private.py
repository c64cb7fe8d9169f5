"""Private topics and the notification shades: devices hold no reader's grant, so a flash of a private category
or region is never pushed to one, even to a device whose filter asks for everything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .support.flashes import flash_id
from .support.processes import ServiceFactory, wait_until
from .test_push import PLATFORMS, Setup, drain, fake_for, publish, push_setup, register

PRIVATE = "politics,palestine"


@pytest.fixture
def private_push(service_factory: ServiceFactory) -> Iterator[Setup]:
    yield from push_setup(
        service_factory,
        "push-private",
        TICKER_PRIVATE_TOPICS=PRIVATE,
        TICKER_JWT_ALGORITHM="HS256",
        TICKER_JWT_KEY="a-secret-of-the-newsroom-for-reader-tokens",
        TICKER_JWT_ISSUER="https://newsroom.example",
    )


def test_a_private_topic_reaches_no_device(private_push: Setup) -> None:
    everything = {p: register(private_push, p, lang="en")[1] for p in PLATFORMS}
    publish(private_push, category="politics")  # a private category
    publish(private_push, category="sports", regions=["palestine"])  # a private region
    marker = publish(private_push, category="sports")  # public: the end of the sequence
    wait_until(
        lambda: all(fake_for(private_push, p).to(a) for p, a in everything.items()), "the public flash's notifications"
    )
    drain(private_push)
    for platform, address in everything.items():
        got = [m.body for m in fake_for(private_push, platform).to(address)]
        assert len(got) == 1, (platform, got)
        assert flash_id(marker) in str(got[0]), (platform, got)
