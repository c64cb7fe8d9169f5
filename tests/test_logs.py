"""Structured logs of a real ``ticker hub`` and ``ticker worker``: every line is one JSON object, requests carry
their id, the level follows TICKER_LOG_LEVEL, and no token ever reaches a log."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from .support.flashes import flash_body
from .support.processes import TIMEOUT, Service, ServiceFactory, wait_until


@pytest.fixture(scope="module")
def logged(service_factory: ServiceFactory) -> tuple[Service, Path]:
    service = service_factory("redis", name="logs", TICKER_LOG_LEVEL="info")
    assert service.directory is not None
    return service, service.directory


def lines(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict), line
        assert {"time", "level", "logger", "message"} <= record.keys(), line
        records.append(record)
    return records


def test_one_json_line_per_request_with_its_id_and_no_secrets(logged: tuple[Service, Path]) -> None:
    service, tmp = logged
    forged = "tkr_" + "x" * 32
    with httpx.Client(base_url=service.base_url, timeout=TIMEOUT) as client:
        published = client.post("/v1/flashes", json=flash_body(), headers=service.headers(**{"X-Request-ID": "req-1"}))
        assert published.status_code == 201
        assert published.headers["x-request-id"] == "req-1"
        refused = client.post("/v1/flashes", json=flash_body(), headers={"Authorization": f"Bearer {forged}"})
        assert refused.status_code == 401
        generated = refused.headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", generated)
        assert client.get("/healthz").status_code == 200

    def requests() -> list[dict[str, Any]]:
        return [r for r in lines(tmp / "hub.log") if r["message"] == "request"]

    wait_until(lambda: {r.get("request_id") for r in requests()} >= {"req-1", generated}, "both request lines")
    by_id = {r["request_id"]: r for r in requests()}
    assert by_id["req-1"] | {"ms": 0} == by_id["req-1"] | {
        "level": "INFO",
        "logger": "ticker.http",
        "method": "POST",
        "path": "/v1/flashes",
        "status": 201,
        "ms": 0,
    }
    assert by_id[generated]["status"] == 401
    hub_records = lines(tmp / "hub.log")
    assert any(r["logger"].startswith("uvicorn") for r in hub_records)  # uvicorn's own lines are JSON too
    assert not any(r["level"] == "DEBUG" for r in hub_records)  # /healthz is logged at debug: below the level
    wait_until(lambda: any(r["logger"].startswith("arq") for r in lines(tmp / "worker.log")), "the worker's lines")
    for log in tmp.glob("*.log"):
        text = log.read_text()
        assert service.token not in text and forged not in text, log
        assert service.token[4:] not in text
