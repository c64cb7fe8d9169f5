"""FCM, APNs and a Web Push service in one lean HTTP/2 server process, for sends of a million devices.

The hypercorn fakes (:mod:`.services`) check every message fully and cost more CPU per message than the worker
sending it: at a million devices they, not the worker, would set the pace. This one speaks the same wire protocol
(TLS, HTTP/2 straight on ``h2``, the same paths, headers and answers) and checks what costs little on every request
— the authorization (each distinct JWT or access token verified once, then remembered), the required headers, the
JSON — and the expensive part on every ``--check-every``-th: FCM's message rules and the Web Push decryption (every
subscription of a benchmark shares one key pair, whose private half this process holds). It counts accepted
messages per platform, devices that got more than one, rejected requests, and acceptances per 100 ms, and writes
them as JSON to ``--stats`` four times a second and when stopped (SIGTERM)::

    python -m tests.support.fakes.fast --port P --cert C --key K --stats S --keys keys.json
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import http_ece
import jwt
import orjson
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .fcm import _check as fcm_check
from .webpush import unb64

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]
JSON = [(b"content-type", b"application/json")]


class Service:
    """The three services' answers and the counts."""

    def __init__(self, keys: dict[str, str], audience: str, check_every: int) -> None:
        self.fcm_public = serialization.load_pem_public_key(keys["fcm_public"].encode())
        self.fcm_email, self.fcm_audience = keys["fcm_email"], keys["fcm_audience"]
        self.apns_public = serialization.load_pem_public_key(keys["apns_public"].encode())
        self.apns_team, self.apns_topic = keys["apns_team"], keys["apns_topic"]
        self.vapid_key = keys["vapid_public"]
        self.webpush_private = serialization.load_pem_private_key(keys["webpush_private"].encode(), None)
        self.webpush_auth = unb64(keys["webpush_auth"])
        self.audience = audience  # VAPID's aud: this server's origin
        self.check_every = max(1, check_every)
        self.access_token = "ya29.fast-" + keys["fcm_email"].split("@")[0]
        self.verified: set[str] = set()  # authorization values already checked
        self.counts: Counter[str] = Counter()
        self.seen: dict[str, set[str]] = {"fcm": set(), "apns": set(), "webpush": set()}
        self.curve: Counter[int] = Counter()  # acceptances per 100 ms since start
        self.started = time.time()

    def accept(self, platform: str, address: str) -> None:
        seen = self.seen[platform]
        if address in seen:
            self.counts["duplicate"] += 1
        seen.add(address)
        self.counts[platform] += 1
        self.curve[int((time.time() - self.started) * 10)] += 1

    def reject(self, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> Answer:
        self.counts["rejected"] += 1
        return status, headers or JSON, body

    def stats(self) -> dict[str, Any]:
        return {"started": self.started, **self.counts, "curve": sorted(self.curve.items())}

    def answer(self, headers: dict[bytes, bytes], body: bytes) -> Answer:
        path = headers.get(b":path", b"").decode()
        if headers.get(b":method") != b"POST":
            return self.reject(405, b"{}")
        if path == "/token":
            return self.token(body)
        if path.startswith("/v1/projects/") and path.endswith("/messages:send"):
            return self.fcm(headers, body)
        if path.startswith("/3/device/"):
            return self.apns(path[len("/3/device/") :], headers, body)
        if path.startswith("/push/"):
            return self.webpush(path[len("/push/") :], headers, body)
        return self.reject(404, b"{}")

    def token(self, body: bytes) -> Answer:
        form = parse_qs(body.decode())
        try:
            jwt.decode(
                form["assertion"][0],
                self.fcm_public,
                algorithms=["RS256"],
                audience=self.fcm_audience,  # type: ignore[arg-type]
                issuer=self.fcm_email,
            )
        except (KeyError, jwt.InvalidTokenError) as exc:
            return self.reject(400, orjson.dumps({"error": "invalid_grant", "error_description": str(exc)}))
        return 200, JSON, orjson.dumps({"access_token": self.access_token, "expires_in": 3599, "token_type": "Bearer"})

    def fcm(self, headers: dict[bytes, bytes], body: bytes) -> Answer:
        if headers.get(b"authorization", b"").decode() != f"Bearer {self.access_token}":
            return self.reject(401, b'{"error":{"code":401,"status":"UNAUTHENTICATED"}}')
        try:
            message = orjson.loads(body)["message"]
            token = message["token"]
        except (ValueError, KeyError, TypeError):
            return self.reject(400, b'{"error":{"code":400,"status":"INVALID_ARGUMENT"}}')
        if self.counts["fcm"] % self.check_every == 0:
            problem = fcm_check(message)
            if problem:
                return self.reject(400, orjson.dumps({"error": {"code": 400, "message": problem}}))
        self.accept("fcm", token)
        return 200, JSON, b'{"name":"projects/fast/messages/1"}'

    def _verified(self, value: str, check: Any) -> bool:
        if value in self.verified:
            return True
        try:
            check()
        except (jwt.InvalidTokenError, ValueError):
            return False
        self.verified.add(value)
        return True

    def apns(self, token: str, headers: dict[bytes, bytes], body: bytes) -> Answer:
        auth = headers.get(b"authorization", b"").decode()
        provider = auth.partition(" ")[2]

        def check() -> None:
            claims = jwt.decode(provider, self.apns_public, algorithms=["ES256"], options={"require": ["iat", "iss"]})  # type: ignore[arg-type]
            if claims["iss"] != self.apns_team:
                raise ValueError("team")

        if not self._verified(auth, check):
            return self.reject(403, b'{"reason":"InvalidProviderToken"}')
        if headers.get(b"apns-topic", b"").decode() != self.apns_topic:
            return self.reject(400, b'{"reason":"TopicDisallowed"}')
        if headers.get(b"apns-push-type") not in (b"alert", b"background"):
            return self.reject(400, b'{"reason":"InvalidPushType"}')
        try:
            orjson.loads(body)["aps"]
        except (ValueError, KeyError, TypeError):
            return self.reject(400, b'{"reason":"PayloadEmpty"}')
        self.accept("apns", token)
        return 200, [(b"apns-id", b"00000000-0000-0000-0000-000000000000")], b""

    def webpush(self, sub_id: str, headers: dict[bytes, bytes], body: bytes) -> Answer:
        auth = headers.get(b"authorization", b"").decode()

        def check() -> None:
            token, _, key = auth.removeprefix("vapid t=").partition(", k=")
            if key != self.vapid_key:
                raise ValueError("key")
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), unb64(key))
            jwt.decode(token, public, algorithms=["ES256"], audience=self.audience, options={"require": ["exp", "sub"]})

        if not self._verified(auth, check):
            return self.reject(403, b"bad VAPID")
        if not headers.get(b"ttl", b"").isdigit() or headers.get(b"content-encoding") != b"aes128gcm":
            return self.reject(400, b"TTL and Content-Encoding: aes128gcm required")
        if self.counts["webpush"] % self.check_every == 0:
            try:
                plaintext = http_ece.decrypt(
                    body, private_key=self.webpush_private, auth_secret=self.webpush_auth, version="aes128gcm"
                )
                orjson.loads(plaintext)
            except Exception as exc:
                return self.reject(400, f"cannot decrypt: {exc}".encode())
        self.accept("webpush", sub_id)
        return 201, [(b"location", b"/message/1")], b""


class Connection(asyncio.Protocol):
    def __init__(self, service: Service) -> None:
        self.service = service
        config = h2.config.H2Configuration(
            client_side=False, header_encoding=None, validate_inbound_headers=False, validate_outbound_headers=False
        )
        self.h2 = h2.connection.H2Connection(config)
        self.requests: dict[int, tuple[dict[bytes, bytes], bytearray]] = {}
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        self.h2.local_settings = h2.settings.Settings(
            client=False, initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000}
        )
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(2**30)
        self.transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            assert self.transport is not None
            self.transport.write(self.h2.data_to_send())
            self.transport.close()
            return
        for event in events:
            if isinstance(event, h2.events.RequestReceived):
                self.requests[event.stream_id] = (dict(event.headers), bytearray())  # type: ignore[arg-type]
            elif isinstance(event, h2.events.DataReceived):
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                if event.stream_id in self.requests:
                    self.requests[event.stream_id][1].extend(event.data)
            elif isinstance(event, h2.events.StreamEnded):
                request = self.requests.pop(event.stream_id, None)
                if request is not None:
                    status, headers, body = self.service.answer(request[0], bytes(request[1]))
                    response = [(b":status", str(status).encode()), *headers]
                    self.h2.send_headers(event.stream_id, response, end_stream=not body)
                    if body:
                        self.h2.send_data(event.stream_id, body, end_stream=True)
            elif isinstance(event, h2.events.StreamReset):
                self.requests.pop(event.stream_id, None)
        assert self.transport is not None
        self.transport.write(self.h2.data_to_send())


async def serve(args: argparse.Namespace) -> None:
    keys = orjson.loads(Path(args.keys).read_bytes())
    service = Service(keys, f"https://127.0.0.1:{args.port}", args.check_every)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.cert, args.key)
    context.set_alpn_protocols(["h2"])
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(service), "127.0.0.1", args.port, ssl=context, backlog=1024)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    stats = Path(args.stats)

    def write() -> None:  # whole or not at all: the bench reads it while it is written
        partial = stats.with_suffix(".tmp")
        partial.write_bytes(orjson.dumps(service.stats()))
        partial.replace(stats)

    while not stop.is_set():
        write()
        try:
            await asyncio.wait_for(stop.wait(), 0.25)
        except TimeoutError:
            pass
    server.close()
    write()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--keys", required=True, help="JSON: the public keys to check the senders' JWTs with")
    parser.add_argument("--stats", required=True)
    parser.add_argument("--check-every", type=int, default=100)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
