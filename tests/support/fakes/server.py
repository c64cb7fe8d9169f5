"""A TLS HTTP/2 server (hypercorn, certificate from ``trustme``) running ASGI fakes in a background thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import trustme
from hypercorn.asyncio import serve
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from ..processes import free_port, wait_until


class TLSServer:
    """Serves ``routes`` on https://127.0.0.1:<port> with HTTP/2 (ALPN h2) and HTTP/1.1."""

    def __init__(self, routes: list[BaseRoute], directory: Path) -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        ca = trustme.CA()
        self.ca_file = directory / "push-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._cert, self._key = directory / "push-cert.pem", directory / "push-key.pem"
        cert.cert_chain_pems[0].write_to_path(str(self._cert))
        cert.private_key_pem.write_to_path(str(self._key))
        self.app = Starlette(routes=routes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="push-fakes", daemon=True)

    def _run(self) -> None:
        config = Config()
        config.bind = [f"127.0.0.1:{self.port}"]
        config.certfile, config.keyfile = str(self._cert), str(self._key)
        config.loglevel = "WARNING"
        config.h2_max_concurrent_streams = 100
        config.keep_alive_max_requests = 10**9  # hypercorn sends GOAWAY after 1,000 requests by default
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._stop = asyncio.Event()
        loop.run_until_complete(serve(self.app, config, shutdown_trigger=self._stop.wait))  # type: ignore[arg-type]
        loop.close()

    def start(self) -> TLSServer:
        import socket

        self._thread.start()

        def listening() -> bool:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_until(listening, f"push fakes on {self.port}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=10)
