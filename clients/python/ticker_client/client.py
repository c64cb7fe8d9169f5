"""``TickerClient``: an async iterator of events that survives disconnects, hub restarts and failover."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from .backoff import close_rule, delay, hint_from_reason
from .events import Event


class TerminalError(Exception):
    """The service refused this subscription for good (a bad filter, say): reconnecting would not help."""


class TickerClient:
    """Follow flashes. Give several base URLs to fail over between hubs; the client resumes by event id.

    ``transport`` is ``"ws"`` (WebSocket) or ``"sse"`` (Server-Sent Events). ``last_event_id`` resumes from a
    known point (e.g. the ``last_event_id`` of ``GET /v1/flashes``). ``reconnects`` counts reconnections.
    ``token`` is a reader JWT for private topics, sent as ``Authorization: Bearer``; give a function to get a fresh
    one on each connection, and the client reconnects when a token expires instead of stopping. ``lang`` may be a
    list: two or more languages are an order of preference (one version of each story, see ``Event.replaces``).
    """

    def __init__(
        self,
        url: str | Sequence[str],
        *,
        lang: str | Sequence[str] | None = None,
        category: str | None = None,
        region: str | None = None,
        max_urgency: int | None = None,
        transport: Literal["ws", "sse"] = "ws",
        last_event_id: str | None = None,
        max_delay: float = 20.0,
        token: str | Callable[[], str] | None = None,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        if not self.urls:
            raise ValueError("give at least one URL")
        languages = lang if lang is None or isinstance(lang, str) else ",".join(lang)
        params = {"lang": languages, "category": category, "region": region, "max_urgency": max_urgency}
        self.query = {k: str(v) for k, v in params.items() if v is not None}
        self.transport = transport
        self.last_event_id = last_event_id
        self.max_delay = max_delay
        self.token = token
        self.reconnects = 0
        self._http: httpx.AsyncClient | None = None
        self._iterators: list[AsyncGenerator[Event, None]] = []

    async def __aenter__(self) -> TickerClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Close the connection of an iteration that was left early (``break``, a timeout).
        for iterator in self._iterators:
            await iterator.aclose()
        if self._http is not None:
            await self._http.aclose()

    def __aiter__(self) -> AsyncIterator[Event]:
        iterator = self._events()
        self._iterators.append(iterator)
        return iterator

    async def _events(self) -> AsyncGenerator[Event, None]:
        attempt = 0
        turn = 0
        while True:
            base = self.urls[turn % len(self.urls)].rstrip("/")
            hint: float | None = None
            try:
                stream = self._websocket(base) if self.transport == "ws" else self._sse(base)
                async with contextlib.aclosing(stream):  # closes the connection even if the caller stops early
                    async for event in stream:
                        attempt = 0
                        self.last_event_id = event.event_id
                        yield event
            except ConnectionClosed as exc:
                code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")
                rule = close_rule(code)
                if rule == "terminal" or (rule == "refresh" and not callable(self.token)):
                    raise TerminalError(f"closed with {code}: {reason}") from exc
                hint = hint_from_reason(reason)
            except InvalidStatus as exc:
                status = exc.response.status_code
                if 400 <= status < 500 and status != 429:
                    raise TerminalError(f"refused with HTTP {status}") from exc
            except _HintedEnd as end:
                hint = end.hint
            except (TimeoutError, OSError, websockets.WebSocketException, httpx.HTTPError):
                pass
            attempt += 1
            turn += 1  # try the next hub
            self.reconnects += 1
            await asyncio.sleep(delay(attempt, cap=self.max_delay, hint=hint))

    async def receipt(
        self,
        event: Event,
        *,
        shown_at: datetime | None = None,
        surface: Literal["ws", "sse", "webpush", "fcm", "apns"] | None = None,
        rate: float = 1.0,
    ) -> bool:
        """Tell the service this reader showed ``event``'s flash version (``POST /v1/receipts``), for the newsroom's
        time to screen; ``shown_at`` defaults to now, ``surface`` to this client's transport. Sample: call it for a
        share ``rate`` of your readers, and say so. True when the service counted it (a receipt is never retried)."""
        if event.flash is None or event.type not in ("flash", "update"):
            return False
        shown = shown_at or datetime.now(UTC)
        body = {
            "flash": re.split(r"[/:]", str(event.flash["uri"]))[-1],
            "version": str(event.flash["version"]),
            "surface": surface or self.transport,
            "shown_at": shown.isoformat(),
            "sent_at": datetime.now(UTC).isoformat(),
            "rate": rate,
        }
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
        try:
            response = await self._http.post(f"{self.urls[0].rstrip('/')}/v1/receipts", json=body, timeout=5)
        except httpx.HTTPError:
            return False
        return response.status_code == 204

    def _auth(self) -> dict[str, str]:
        token = self.token() if callable(self.token) else self.token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _params(self) -> dict[str, str]:
        params = dict(self.query)
        if self.last_event_id:
            params["last_event_id"] = self.last_event_id
        return params

    async def _websocket(self, base: str) -> AsyncGenerator[Event, None]:
        url = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        async with websockets.connect(
            f"{url}/v1/stream?{urlencode(self._params())}", open_timeout=10, additional_headers=self._auth()
        ) as ws:
            async for message in ws:
                yield Event.from_json(json.loads(message))

    async def _sse(self, base: str) -> AsyncGenerator[Event, None]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(10, read=None))
        headers = {"Accept": "text/event-stream", **self._auth()}
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        async with self._http.stream("GET", f"{base}/v1/events", params=self.query, headers=headers) as response:
            if 400 <= response.status_code < 500 and response.status_code != 429:
                raise TerminalError(f"refused with HTTP {response.status_code}: {(await response.aread())[:200]!r}")
            response.raise_for_status()
            retry: float | None = None
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        yield _sse_event(fields)
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "retry" and value.isdigit():
                        retry = int(value) / 1000
                    elif name in ("id", "event", "data"):
                        fields[name] = fields[name] + "\n" + value if name == "data" and name in fields else value
            raise _HintedEnd(retry)


class _HintedEnd(Exception):
    """The server ended the event stream (restart, slow reader); reconnect after its ``retry:`` hint."""

    def __init__(self, hint: float | None) -> None:
        super().__init__("stream ended")
        self.hint = hint


def _sse_event(fields: dict[str, str]) -> Event:
    data: dict[str, Any] = json.loads(fields["data"])
    kind = fields.get("event", "message")
    if kind == "reset":
        return Event(type="reset", event_id=fields.get("id", ""), flashes=data.get("flashes", []))
    if "replaces" in data and "flash" in data:  # a replacing update: {"flash", "replaces"} (never a ninjs document)
        return Event(type=kind, event_id=fields.get("id", ""), flash=data["flash"], replaces=data["replaces"])  # type: ignore[arg-type]
    return Event(type=kind, event_id=fields.get("id", ""), flash=data)  # type: ignore[arg-type]
