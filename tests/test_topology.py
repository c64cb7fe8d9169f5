"""The docker-compose topology as plain processes: one Redis, two hubs, one worker, with the compose commands and env.

The commands and variables are defined once here (``HUB_ARGS``, ``WORKER_ARGS``, ``topology_env``);
``test_compose_file_matches_this_topology`` checks docker-compose.yml against them, so the two cannot drift apart.
The only differences are the ones a test must make: ``python -m ticker_service`` for the ``ticker`` script (the
same entry point, checked below), 127.0.0.1 and free ports for 0.0.0.0:8000, and a private Redis for ``redis``.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from .support.flashes import publish
from .support.processes import (
    ROOT,
    Process,
    RedisServer,
    Service,
    base_env,
    free_port,
    run_ticker,
    ticker,
    wait_ready,
    wait_until,
)
from .support.readers import next_ws_event, sse_reader, ws_reader

HUB_ARGS = ("hub", "--host", "{host}", "--port", "{port}")
WORKER_ARGS = ("worker",)
COMPOSE_HOST, COMPOSE_PORT = "0.0.0.0", 8000


def hub_args(host: str, port: int) -> list[str]:
    return [arg.format(host=host, port=port) for arg in HUB_ARGS]


def topology_env(redis_url: str) -> dict[str, str]:
    """The variables every ticker process of the topology gets (in compose: ``environment:``)."""
    # Behind the proxy every reader comes from its address: the per-address limit is the proxy's business.
    return {"REDIS_URL": redis_url, "TICKER_LOG_LEVEL": "info", "TICKER_MAX_CONNECTIONS_PER_IP": "50000"}


@dataclass
class Topology:
    redis: RedisServer
    hub_a: Service
    hub_b: Service
    processes: list[Process]

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.redis.stop()


def _start_hub(env: dict[str, str], tmp: Path, name: str, processes: list[Process]) -> str:
    port = free_port()
    hub = Process(ticker(*hub_args("127.0.0.1", port)), env, tmp / f"{name}.log")
    processes.append(hub)
    hub.start()
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, hub)
    return url


def _start_worker(redis_server: RedisServer, env: dict[str, str], tmp: Path, processes: list[Process]) -> None:
    worker = Process(ticker(*WORKER_ARGS), env, tmp / "worker.log")
    processes.append(worker)
    worker.start()
    with redis_server.client() as client:
        wait_until(lambda: bool(client.exists("arq:queue:health-check")), "the worker's first poll")


@pytest.fixture(scope="module")
def topology(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Topology]:
    tmp = tmp_path_factory.mktemp("topology")
    redis_server = RedisServer(tmp, persistent=True)
    redis_server.start()
    processes: list[Process] = []
    try:
        env = base_env(**topology_env(redis_server.url))
        created = run_ticker(env, "token", "create", "--name", "topology")
        assert created.returncode == 0, created.stderr
        token = created.stdout.strip().splitlines()[-1]
        url_a = _start_hub(env, tmp, "hub-a", processes)
        url_b = _start_hub(env, tmp, "hub-b", processes)
        _start_worker(redis_server, env, tmp, processes)
        top = Topology(
            redis_server, Service("redis", url_a, token, env), Service("redis", url_b, token, env), processes
        )
    except BaseException:
        for proc in reversed(processes):
            proc.stop()
        redis_server.stop()
        raise
    yield top
    top.stop()


async def test_flash_posted_to_one_hub_reaches_readers_on_both(topology: Topology, client: httpx.AsyncClient) -> None:
    """POST to hub A: a WebSocket reader on A, and an SSE and a WebSocket reader on B, all get it."""
    a, b = topology.hub_a, topology.hub_b
    async with ws_reader(a, "lang=en") as ws_a, sse_reader(b, "lang=en") as sse_b, ws_reader(b, "lang=en") as ws_b:
        # Readers are attached before the WebSocket handshake and the SSE response headers complete.
        doc = await publish(client, a, "BREAKING: one hub in, every hub out")
        got_ws_a, got_sse_b, got_ws_b = await asyncio.gather(
            next_ws_event(ws_a), sse_b.next_event(), next_ws_event(ws_b)
        )
    assert got_ws_a["type"] == got_ws_b["type"] == got_sse_b["event"] == "flash"
    assert got_ws_a["flash"] == got_ws_b["flash"] == got_sse_b["flash"] == doc
    assert got_ws_a["event_id"] == got_ws_b["event_id"] == got_sse_b["id"]


async def test_correction_posted_to_other_hub_reaches_both(topology: Topology, client: httpx.AsyncClient) -> None:
    """Either hub takes writes: a flash published on A and corrected on B reaches readers on both, in order."""
    a, b = topology.hub_a, topology.hub_b
    async with ws_reader(a) as ws_a, sse_reader(b) as sse_b:
        doc = await publish(client, a, "BREAKING: first take")
        flash_id = str(doc["uri"]).rsplit(":", 1)[-1]
        response = await client.patch(
            f"{b.base_url}/v1/flashes/{flash_id}", json={"headline": "BREAKING: second"}, headers=b.headers()
        )
        assert response.status_code == 200, response.text
        ws_events = [await next_ws_event(ws_a) for _ in range(2)]
        sse_events = [await sse_b.next_event() for _ in range(2)]
    assert [e["type"] for e in ws_events] == [e["event"] for e in sse_events] == ["flash", "update"]
    assert ws_events[1]["flash"]["headlines"][0]["value"] == "BREAKING: second"
    assert [e["event_id"] for e in ws_events] == [e["id"] for e in sse_events]


async def test_reader_resumes_on_the_other_hub(topology: Topology, client: httpx.AsyncClient) -> None:
    """A reader that was on A and comes back through the proxy to B with Last-Event-ID misses nothing."""
    a, b = topology.hub_a, topology.hub_b
    async with ws_reader(a) as ws_a:
        await publish(client, a, "BREAKING: seen on A")
        seen = await next_ws_event(ws_a)
    missed = [await publish(client, a, f"BREAKING: missed {n}") for n in range(3)]
    async with sse_reader(b, headers={"Last-Event-ID": seen["event_id"]}) as sse_b:
        replayed = [await sse_b.next_event() for _ in missed]
    assert [e["flash"]["uri"] for e in replayed] == [d["uri"] for d in missed]


# --- docker-compose.yml and deploy/nginx.conf must describe what the tests above run ---------------------------


def _compose() -> dict[str, Any]:
    with (ROOT / "docker-compose.yml").open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict)
    return data


def _argv(command: Any) -> list[str]:
    assert isinstance(command, list), f"use the exec (list) form for commands, not {command!r}"
    return [str(part) for part in command]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_compose_file_matches_this_topology() -> None:
    services = _compose()["services"]
    assert set(services) == {"redis", "hub1", "hub2", "worker", "proxy"}

    # `ticker` in the image is the same entry point as `python -m ticker_service` here.
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert tomllib.load(f)["project"]["scripts"]["ticker"] == "ticker_service.cli:main"
    assert ticker("x") == [sys.executable, "-m", "ticker_service", "x"]
    assert "from .cli import main" in (ROOT / "ticker_service" / "__main__.py").read_text()

    for name in ("hub1", "hub2"):
        assert _argv(services[name]["command"]) == ["ticker", *hub_args(COMPOSE_HOST, COMPOSE_PORT)], name
    assert _argv(services["worker"]["command"]) == ["ticker", *WORKER_ARGS]

    redis_port = 6379
    expected = topology_env(f"redis://redis:{redis_port}/0")
    for name in ("hub1", "hub2", "worker"):
        service = services[name]
        assert service.get("build") == ".", name
        env = _env(service)
        assert set(env) == set(expected), name
        assert env == expected, name
        url = urlsplit(env["REDIS_URL"])
        assert (url.hostname, url.port) == ("redis", redis_port), name
        # The tests' private Redis is addressed the same way apart from host and port (database 0).
        assert url.scheme == "redis" and url.path == urlsplit(RedisServer(ROOT).url).path == "/0", name

    redis_cmd = " ".join(_argv(services["redis"]["command"]))
    assert str(services["redis"]["image"]).split(":")[0] == "redis"
    for option in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction"):
        assert option in redis_cmd
    assert "healthcheck" in services["redis"]

    proxy = services["proxy"]
    assert any(str(p).split(":")[-2:] == ["8000", "8000"] for p in proxy["ports"])
    assert any(str(v).startswith("./deploy/nginx.conf:") for v in proxy["volumes"])
    assert set(proxy["depends_on"]) >= {"hub1", "hub2"}


def test_dockerfile_installs_the_project_and_runs_unprivileged() -> None:
    """The base is a build argument whose default is the official Python image (scripts/check-image builds and runs
    the image on Debian's own Python; this checks the file where podman is not there)."""
    lines = [line.strip() for line in (ROOT / "Dockerfile").read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[:2] == ["ARG BASE_IMAGE=python:3.11-slim", "FROM ${BASE_IMAGE}"]
    # Dependencies in a layer of their own, then the project without them (see the Dockerfile).
    # ... pinned: the image installs what the tests ran with.
    assert any(re.match(r"(RUN|&&) pip install -c constraints\.txt \.(\s|$)", line) for line in instructions)
    assert any(re.match(r"RUN pip install --no-deps \.(\s|$)", line) for line in instructions)
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert "EXPOSE 8000" in instructions


Block = list[tuple[str, list[str], "Block | None"]]


def _parse_nginx(text: str) -> Block:
    """A small nginx config parser: ``(directive, args, block-or-None)`` trees (enough for this file)."""
    tokens = re.findall(r'"[^"]*"|\'[^\']*\'|[{};]|[^\s{};]+', re.sub(r"#[^\n]*", "", text))
    pos = 0

    def block() -> Block:
        nonlocal pos
        out: Block = []
        words: list[str] = []
        while pos < len(tokens):
            token = tokens[pos]
            pos += 1
            if token == ";":
                out.append((words[0], words[1:], None))
                words = []
            elif token == "{":
                out.append((words[0], words[1:], block()))
                words = []
            elif token == "}":
                return out
            else:
                words.append(token)
        assert not words, words
        return out

    return block()


def _effective(chain: list[Block], directive: str) -> list[list[str]]:
    """The values of ``directive`` in force at the innermost block, with nginx's inheritance (innermost wins)."""
    for level in reversed(chain):
        found = [args for name, args, _ in level if name == directive]
        if found:
            return found
    return []


def test_nginx_passes_websocket_upgrades_and_does_not_buffer_sse() -> None:
    config = _parse_nginx((ROOT / "deploy" / "nginx.conf").read_text())
    http = next(b for name, _, b in config if name == "http")
    assert http is not None
    server = next(b for name, _, b in http if name == "server")
    assert server is not None
    locations = {" ".join(args): b for name, args, b in server if name == "location" and b is not None}
    maps = {args[1]: b for name, args, b in http if name == "map" and b is not None and args[0] == "$http_upgrade"}

    def check(location: str) -> list[Block]:
        chain = [http, server, locations[location]]
        assert _effective(chain, "proxy_pass") == [["http://ticker_hubs"]], location
        return chain

    for path in ("= /v1/stream", "= /v1/events", "/"):
        chain = check(path)
        assert _effective(chain, "proxy_http_version") == [["1.1"]]
        headers = {args[0].lower(): args[1] for args in _effective(chain, "proxy_set_header")}
        assert headers["upgrade"] == "$http_upgrade"
        assert headers["connection"] in maps, "Connection must come from a map of $http_upgrade"
        assert headers["last-event-id"] == "$http_last_event_id"
        assert headers["host"] == "$http_host"  # with the port, as in the browser's Origin
        assert _effective(chain, "proxy_buffering") == [["off"]], path

    sse = [http, server, locations["= /v1/events"]]
    assert _effective(sse, "proxy_cache") == [["off"]]
    assert _effective(sse, "chunked_transfer_encoding") in ([], [["on"]])
    for path in ("= /v1/stream", "= /v1/events"):
        timeout = _effective([http, server, locations[path]], "proxy_read_timeout")
        assert timeout and timeout[0][0] in ("1h", "3600", "3600s"), path

    upstream = next(b for name, args, b in http if name == "upstream" and args == ["ticker_hubs"])
    assert upstream is not None
    compose_hubs = {f"{name}:{COMPOSE_PORT}" for name in ("hub1", "hub2")}
    assert {args[0] for name, args, _ in upstream if name == "server"} == compose_hubs
