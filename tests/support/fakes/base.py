"""What the three fakes share: a record of accepted messages, scripted answers per device, an optional delay."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Received:
    address: str  # token or subscription id
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class Fake:
    """Answers are scripted per address: ``script[address] = [429, 200]`` answers 429 first, then accepts."""

    received: list[Received] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    script: dict[str, list[int]] = field(default_factory=dict)
    delay: float = 0.0
    keep: bool = True  # False: only count accepted messages (benchmarks)
    total: int = 0
    accepted: Counter[str] = field(default_factory=Counter)  # per address, kept even when ``keep`` is off
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def next_status(self, address: str) -> int:
        """Count the attempt, wait ``delay`` (holding the request open), and pop the scripted status."""
        with self.lock:
            self.attempts[address] += 1
            queue = self.script.get(address)
            status = queue.pop(0) if queue else 200
        if self.delay:
            await asyncio.sleep(self.delay)
        return status

    def record(self, address: str, headers: dict[str, str], body: dict[str, Any]) -> None:
        with self.lock:
            self.total += 1
            self.accepted[address] += 1
            if self.keep:
                self.received.append(Received(address, headers, body))

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.address == address]

    def counts(self) -> Counter[str]:
        with self.lock:
            return Counter(r.address for r in self.received)
