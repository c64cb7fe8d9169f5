"""The three fakes behind one TLS HTTP/2 server, and the environment that points a ticker worker at them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import orjson

from .apns import FakeApns
from .fcm import FakeFcm
from .server import TLSServer
from .webpush import FakeWebPush


@dataclass
class PushFakes:
    fcm: FakeFcm
    apns: FakeApns
    webpush: FakeWebPush
    server: TLSServer

    @classmethod
    def start(cls, directory: Path) -> PushFakes:
        fcm, apns, webpush = FakeFcm(), FakeApns(), FakeWebPush()
        server = TLSServer([*fcm.routes(), *apns.routes(), *webpush.routes()], directory)
        fcm.base_url = webpush.base_url = server.url
        return cls(fcm, apns, webpush, server.start())

    def env(self, directory: Path, vapid_pem: str) -> dict[str, str]:
        """``TICKER_PUSH_*`` for a worker (and hub) that uses these fakes, credentials in files as in production."""
        (directory / "fcm.json").write_bytes(orjson.dumps(self.fcm.service_account()))
        (directory / "apns.p8").write_text(self.apns.p8())
        (directory / "vapid.pem").write_text(vapid_pem)
        return {
            "TICKER_PUSH_CA_FILE": str(self.server.ca_file),
            "TICKER_PUSH_FCM_CREDENTIALS_FILE": str(directory / "fcm.json"),
            "TICKER_PUSH_FCM_URL": self.server.url,
            "TICKER_PUSH_APNS_KEY_FILE": str(directory / "apns.p8"),
            "TICKER_PUSH_APNS_KEY_ID": self.apns.key_id,
            "TICKER_PUSH_APNS_TEAM_ID": self.apns.team_id,
            "TICKER_PUSH_APNS_TOPIC": self.apns.topic,
            "TICKER_PUSH_APNS_URL": self.server.url,
            "TICKER_PUSH_VAPID_PRIVATE_KEY_FILE": str(directory / "vapid.pem"),
            "TICKER_PUSH_WEBPUSH_HOSTS": "127.0.0.1",
        }

    def stop(self) -> None:
        self.server.stop()
