"""The reader transports below ASGI: uvicorn's protocol class answers readers' requests itself and writes
the hub's bytes straight to their sockets. Same file names as ``transports/asgi/`` for the same roles.

The seam: ``serve.py`` gives uvicorn :class:`~.front.FrontProtocol` as its ``http`` class, and the app's lifespan
yields one :class:`NativeState` under :data:`STATE_KEY`; uvicorn hands that state to each protocol it creates, and
:meth:`NativeState.of` is the one place it is read back. Only ``http.py`` imports uvicorn or httptools
(``tests/unit/test_layers.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ...hub import Hub
from ...security.policy import Security
from ...settings import Settings
from .deadline import Deadlines

STATE_KEY = "ticker_native"


@dataclass(frozen=True, slots=True)
class NativeState:
    """What the native protocols need of the app: its hub and security, and the socket-level settings."""

    hub: Hub
    security: Security
    handshake_timeout: float  # seconds a client has to send each request's head and body (against slowloris)
    send_buffer: int  # SO_SNDBUF for readers' sockets (0: the kernel's default)
    # The front protocol's request-head deadlines, on one timer (``handshake_timeout`` each).
    deadlines: Deadlines = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "deadlines", Deadlines(self.handshake_timeout))

    @classmethod
    def from_settings(cls, hub: Hub, security: Security, settings: Settings) -> NativeState:
        return cls(hub, security, settings.handshake_timeout_seconds, settings.socket_send_buffer_bytes)

    def lifespan_state(self) -> dict[str, Any]:
        """The lifespan state to yield: uvicorn copies it into each connection's protocol."""
        return {STATE_KEY: self}

    @staticmethod
    def of(app_state: Mapping[str, Any]) -> NativeState | None:
        """The state an app's lifespan yielded; ``None`` under an app that yields none (then uvicorn serves all)."""
        state = app_state.get(STATE_KEY)
        return state if isinstance(state, NativeState) else None
