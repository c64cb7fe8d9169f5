"""What the tests share, by concern: ``processes`` (a private redis-server, ``ticker`` processes on free loopback
ports), ``readers`` (WebSocket and SSE clients), ``flashes`` (publishing), ``devices`` (Web Push subscriptions),
``browser`` (headless Chromium), ``schema`` (IPTC's ninjs schema) and ``fakes`` (FCM, APNs and Web Push services
speaking their wire protocols). Fixtures live in ``tests/conftest.py``; test modules import from here, never from
each other or from ``conftest``."""
