"""The servers the fan-out benchmark measures, each started as real processes on a free loopback port.

* ``ticker``: the distributed path: a private ``redis-server``, ``ticker hub`` (``--workers N`` when N > 1) and
  ``ticker worker``, with an editor token from ``ticker token create``; flashes go through ``POST /v1/flashes``.
* ``nchan``: Debian's nginx with ``libnginx-mod-nchan`` (installed with apt-get when missing), configured from
  ``peers/nchan.conf``: POST ``/pub``, readers on ``/sub`` (WebSocket or EventSource).
* ``node``: ``peers/node-ws/server.js``, Node.js with the ``ws`` library (npm-installed into ``peers/node-ws``
  when missing): POST ``/pub``, readers on any WebSocket path or ``GET /sse``.

Every server delivers the same bytes: ticker publishes a flash whose headline carries the message's marker, and the
peers publish what ticker's readers get for that flash (``peer_body``): the WebSocket message (a ninjs document in
its event envelope) or, for SSE, the ninjs document that ticker's ``data:`` field carries. (``--peer-body padded``
gives the peers the bare marker padded to ``--payload-bytes`` instead, as the first versions of this benchmark did.)

Each target names the processes to measure: ``hub`` (the ones holding the readers' connections) and ``path``
(everything a message goes through: for ticker the hub(s), the worker and Redis; for the peers the same as ``hub``);
ticker's ``worker`` and ``redis`` are also measured on their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from ticker_service.events import Event, make_event_id, new_epoch
from ticker_service.flashes import FlashIn, new_document
from ticker_service.keys import LIVE_CHANNEL
from ticker_service.settings import Settings

from .latency import STARTUP_TIMEOUT, Stack, free_port, redis_version, wait_for

PEERS = Path(__file__).resolve().parent / "peers"
NODE_DIR = PEERS / "node-ws"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")
TARGETS = ("ticker", "nchan", "node")
_EPOCH = new_epoch()


def ticker_body(headline: str) -> bytes:
    """ticker's ``POST /v1/flashes`` body for a flash with this headline."""
    return orjson.dumps({"headline": headline, "language": "en", "category": "politics", "urgency": 1})


def peer_body(headline: str, transport: str, settings: Settings) -> bytes:
    """What ticker delivers for that flash: the WebSocket message, or the SSE event's data (the ninjs document)."""
    doc = new_document(FlashIn.model_validate_json(ticker_body(headline)), settings)
    if transport == "sse":
        return orjson.dumps(doc)
    return Event(make_event_id(_EPOCH, f"{time.time_ns() // 1_000_000}-0"), "flash", doc).to_message()


@dataclass
class Target:
    """A running server: where readers connect, how to publish, which processes to measure."""

    name: str
    base_url: str
    reader_paths: dict[str, str]  # transport -> path (and query)
    pub_path: str
    format: str  # "ticker": JSON events, the marker in the headline; "raw": the message is the payload
    groups: dict[str, list[int]]  # "hub", "path" -> root pids
    pub_headers: dict[str, str] = field(default_factory=dict)
    pub_ok: tuple[int, ...] = (200,)
    # The peers' bodies: "ticker" (what ticker delivers for the same flash, per transport) or "padded" (the text).
    peer_body: str = "ticker"
    transport: str = "ws"
    # (Redis URL, channel) on which the hub receives every event: the bench subscribes too, to time its arrival.
    live: tuple[str, str] | None = None
    # Where flashes are posted when not to the readers' server: a ticker hub holding no readers (``ingest_hub``).
    pub_base_url: str | None = None
    _settings: Settings = field(default_factory=Settings)

    def reader_url(self, transport: str) -> str:
        base = self.base_url.replace("http://", "ws://", 1) if transport == "ws" else self.base_url
        return base + self.reader_paths[transport]

    def body(self, text: str) -> bytes:
        if self.format == "ticker":
            return ticker_body(text)
        if self.peer_body == "ticker":
            return peer_body(text, self.transport, self._settings)
        return text.encode()

    def text_size(self, payload_bytes: int) -> int:
        """How long the marker + padding may be: ticker's POST body is ``payload_bytes`` long, and the peers
        publish the same headline in ticker's message (or, padded, a body of ``payload_bytes``)."""
        if self.format == "ticker" or self.peer_body == "ticker":
            return min(280, payload_bytes - len(ticker_body("")))  # 280: the longest headline ticker accepts
        return payload_bytes

    async def publish(self, client: httpx.AsyncClient, text: str) -> None:
        url = (self.pub_base_url or self.base_url) + self.pub_path
        response = await client.post(url, content=self.body(text), headers=self.pub_headers)
        if response.status_code not in self.pub_ok:
            raise RuntimeError(f"{self.name}: POST {self.pub_path} answered {response.status_code}: {response.text}")


def _env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKER_") and k != "REDIS_URL"}
    env.update(TICKER_LOG_LEVEL="warning", TICKER_DATA_DIR=str(workdir / "data"), PYTHONUNBUFFERED="1", **extra)
    # BENCH_TICKER_X=v runs ticker's processes with TICKER_X=v: a setting tried side by side with its default.
    env.update(
        {"TICKER_" + k.removeprefix("BENCH_TICKER_"): v for k, v in os.environ.items() if k.startswith("BENCH_TICKER_")}
    )
    return env


def _wait_http(url: str, stack: Stack, name: str) -> None:
    proc = dict(stack.procs)[name]

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {stack.log_tail(name)}")
        return httpx.get(url, timeout=1).status_code == 200

    wait_for(up, f"{name} at {url}")


@contextlib.contextmanager
def ticker(hub_workers: int = 1, ingest_hub: bool = False, **extra_env: str) -> Iterator[Target]:
    """``ingest_hub``: editors post to one more ``ticker hub`` that holds no readers (as docs/capacity.md suggests
    for hubs near their connection limit, which would refuse the POST's connection with a 503)."""
    with tempfile.TemporaryDirectory(prefix="ticker-fanout-") as tmp:
        redis_port, port = free_port(), free_port()
        # The benchmark opens tens of thousands of readers from a few loopback addresses at once: the hub's
        # connection limits (docs/security.md) are raised past that, as the peers have none.
        limits = {
            "TICKER_MAX_CONNECTIONS": "1000000",
            "TICKER_MAX_CONNECTIONS_PER_IP": "1000000",
            "TICKER_NEW_CONNECTIONS_PER_SECOND": "1000000",
            **extra_env,
        }
        stack = Stack(Path(tmp), _env(Path(tmp), REDIS_URL=f"redis://127.0.0.1:{redis_port}/0", **limits))
        try:
            store = stack.redis(redis_port)
            stack.create_token()
            workers = ["--workers", str(hub_workers)] if hub_workers > 1 else []
            hub = stack.ticker("hub", "hub", "--port", str(port), *workers)
            stack.base_url = f"http://127.0.0.1:{port}"
            _wait_all_hubs(stack, hub_workers)
            worker = stack.ticker("worker", "worker")
            ingest: list[int] = []
            pub_base_url = None
            if ingest_hub:
                ingest_port = free_port()
                ingest = [stack.ticker("ingest", "hub", "--port", str(ingest_port)).pid]
                pub_base_url = f"http://127.0.0.1:{ingest_port}"
                _wait_http(f"{pub_base_url}/readyz", stack, "ingest")
            yield Target(
                name="ticker",
                base_url=stack.base_url,
                reader_paths={"ws": "/v1/stream?lang=en", "sse": "/v1/events?lang=en"},
                pub_path="/v1/flashes",
                format="ticker",
                groups={
                    "hub": [hub.pid],
                    "path": [hub.pid, worker.pid, store.pid, *ingest],
                    "worker": [worker.pid],
                    "redis": [store.pid],
                    **({"ingest": ingest} if ingest else {}),
                },
                pub_headers={"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"},
                pub_ok=(201,),
                live=(f"redis://127.0.0.1:{redis_port}/0", LIVE_CHANNEL),
                pub_base_url=pub_base_url,
            )
        finally:
            stack.close()


def _wait_all_hubs(stack: Stack, count: int) -> None:
    """Wait until ``count`` hub processes have each answered ``/readyz`` with 200 (each names its pid)."""
    hub = dict(stack.procs)["hub"]
    ready: set[int] = set()

    def all_ready() -> bool:
        if hub.poll() is not None:
            raise RuntimeError(f"ticker hub exited: {stack.log_tail('hub')}")
        response = httpx.get(f"{stack.base_url}/readyz", timeout=1)
        if response.status_code == 200:
            ready.add(int(response.json()["pid"]))
        return len(ready) >= count

    wait_for(all_ready, f"{count} ticker hub process(es) on {stack.base_url}", timeout=STARTUP_TIMEOUT * 2)


# -- peers ---------------------------------------------------------------------------------------------------------


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0:
        raise RuntimeError(f"missing {' '.join(packages)}: install with `sudo apt-get install {' '.join(packages)}`")
    print(f"# apt-get install {' '.join(packages)}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", *packages]
    if subprocess.run(install, env=env, capture_output=True, timeout=600, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=True)
        subprocess.run(install, env=env, capture_output=True, timeout=600, check=True)


def nginx_binary() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found is None or not NCHAN_MODULE.exists():
        apt_install("nginx", "libnginx-mod-nchan")
        found = shutil.which("nginx") or "/usr/sbin/nginx"
    return found


@contextlib.contextmanager
def nchan(workers: int = 1) -> Iterator[Target]:
    nginx = nginx_binary()
    with tempfile.TemporaryDirectory(prefix="nchan-fanout-") as tmp:
        port = free_port()
        conf = (PEERS / "nchan.conf").read_text()
        for key, value in {
            "@PORT@": str(port),
            "@PREFIX@": tmp,
            "@WORKERS@": str(workers),
            "@MODULE@": str(NCHAN_MODULE),
        }.items():
            conf = conf.replace(key, value)
        (Path(tmp) / "nginx.conf").write_text(conf)
        stack = Stack(Path(tmp), dict(os.environ))
        try:
            proc = stack.spawn("nginx", [nginx, "-p", tmp, "-c", f"{tmp}/nginx.conf", "-e", f"{tmp}/error.log"])
            _wait_http(f"http://127.0.0.1:{port}/healthz", stack, "nginx")
            yield Target(
                name="nchan",
                base_url=f"http://127.0.0.1:{port}",
                reader_paths={"ws": "/sub", "sse": "/sub"},
                pub_path="/pub",
                format="raw",
                groups={"hub": [proc.pid], "path": [proc.pid]},
                pub_headers={"Content-Type": "text/plain"},
                pub_ok=(200, 201, 202),
            )
        finally:
            stack.close()


def node_binary() -> str:
    if shutil.which("node") is None or shutil.which("npm") is None:
        apt_install("nodejs", "npm")
    if not (NODE_DIR / "node_modules" / "ws" / "package.json").exists():
        print("# npm ci (bench/peers/node-ws)", file=sys.stderr, flush=True)
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--omit=dev"],  # the committed lock file pins ws
            cwd=NODE_DIR,
            capture_output=True,
            timeout=600,
            check=True,
        )
    return shutil.which("node") or "node"


@contextlib.contextmanager
def node() -> Iterator[Target]:
    binary = node_binary()
    with tempfile.TemporaryDirectory(prefix="node-fanout-") as tmp:
        port = free_port()
        stack = Stack(Path(tmp), dict(os.environ))
        try:
            proc = stack.spawn("node", [binary, str(NODE_DIR / "server.js"), "--port", str(port)])
            _wait_http(f"http://127.0.0.1:{port}/healthz", stack, "node")
            yield Target(
                name="node",
                base_url=f"http://127.0.0.1:{port}",
                reader_paths={"ws": "/", "sse": "/sse"},
                pub_path="/pub",
                format="raw",
                groups={"hub": [proc.pid], "path": [proc.pid]},
                pub_headers={"Content-Type": "text/plain"},
            )
        finally:
            stack.close()


def start(name: str, *, hub_workers: int = 1, nchan_workers: int = 1) -> contextlib.AbstractContextManager[Target]:
    if name == "ticker":
        return ticker(hub_workers)
    if name == "nchan":
        return nchan(nchan_workers)
    if name == "node":
        return node()
    raise ValueError(f"unknown target {name!r}")


def prepare(names: list[str]) -> None:
    """Install what the chosen peers need before anything is timed."""
    if "nchan" in names:
        nginx_binary()
    if "node" in names:
        node_binary()


def _run(*args: str) -> str:
    try:
        done = subprocess.run(list(args), capture_output=True, text=True, timeout=30, check=False)
    except OSError:
        return "not found"
    return (done.stdout + done.stderr).strip()


def versions(names: list[str]) -> dict[str, str]:
    found = {"python": sys.version.split()[0]}
    if "ticker" in names:
        found["redis-server"] = redis_version()
    if "nchan" in names:
        found["nginx"] = _run(nginx_binary(), "-v").rsplit("/", 1)[-1]
        package = _run("dpkg-query", "-W", "-f=${Version}", "libnginx-mod-nchan")  # e.g. 1:1.3.6+dfsg-2
        found["nchan"] = package.rsplit(":", 1)[-1].split("+", 1)[0]
    if "node" in names:
        found["node"] = _run(node_binary(), "--version").lstrip("v")
        with contextlib.suppress(OSError, ValueError):
            found["ws"] = json.loads((NODE_DIR / "node_modules" / "ws" / "package.json").read_text())["version"]
    return found
