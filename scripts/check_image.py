"""The container image and the compose topology, built and run with podman (``scripts/check-image`` runs this).

It needs no registry: the base is Debian bookworm made with ``debootstrap --variant=minbase`` plus Debian's Python,
imported with ``podman import``; Redis and nginx are Debian's, built on the same base (``deploy/debian/``).
Then it proves, as a user would see it:

* the image builds (``Dockerfile`` with ``--build-arg BASE_IMAGE``);
* a container of it, as its non-root user, serves ``/healthz``, the demo page and every browser script the page
  loads from ``/static/js/``; ``ticker token create``, ``ticker publish`` and ``ticker tail`` (a WebSocket reader)
  work inside it, and a reader outside gets the flash too; on SIGTERM the hub closes its readers with 1012 and exits;
* docker-compose.yml's services, with their commands, variables, mounts, healthchecks and ``depends_on`` order,
  run as containers, and a flash posted through the proxy reaches WebSocket and SSE readers on both hubs; a hub
  stopped with SIGTERM sends its readers 1012 and they resume on the other one, missing nothing.

Containers share the host's network (``--network host``): every service listens on loopback, and the ports the
compose file gives (all hubs on 8000, Redis on 6379) become the ports chosen here (``CHECK_IMAGE_*_PORT``), with
``--add-host`` so that the services' names (``redis``, ``hub1``…) resolve. Those are the only changes made to the
compose file's commands, variables and nginx configuration, and each is asserted to apply exactly once.

The debootstrap'd root filesystem and the images are cached (``$XDG_CACHE_HOME/ticker-image`` and podman's
storage), so a second run builds only what changed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import resource
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import websockets
import yaml
from websockets.asyncio.client import ClientConnection

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ticker-image"
SUITE = "bookworm"
MIRROR = os.environ.get("CHECK_IMAGE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("CHECK_IMAGE_DEBIAN_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates")
PREFIX = "localhost/ticker-check"
# This machine's podman: crun cannot run in its hybrid cgroup layout, and a container may not ask for more open
# files or processes than the machine allows (podman's defaults do). Other hosts may choose their runtime.
RUNTIME = os.environ.get("CHECK_IMAGE_RUNTIME", "runc")
LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")  # for builds
# Containers run as Docker 25 and later start them: a soft open-files limit of 1024 under a high hard one (here, this
# machine's), which the hub and nginx must raise themselves to hold more than ~1,000 readers.
NOFILE = os.environ.get("CHECK_IMAGE_NOFILE") or f"1024:{min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1 << 20)}"
RUN_OPTIONS = ("--ulimit", f"nofile={NOFILE}", "--ulimit", "nproc=1024:1024", "--network", "host")
PORTS = {  # what listens on the host's loopback, each port chosen by its variable
    "hub": ("CHECK_IMAGE_HUB_PORT", 18000),  # the image alone
    "proxy": ("CHECK_IMAGE_PROXY_PORT", 8000),  # the compose topology's public port
    "hub1": ("CHECK_IMAGE_HUB1_PORT", 18001),
    "hub2": ("CHECK_IMAGE_HUB2_PORT", 18002),
    "redis": ("CHECK_IMAGE_REDIS_PORT", 16379),
}
TIMEOUT = float(os.environ.get("CHECK_IMAGE_TIMEOUT", "60"))
NAME = "ticker-check"  # every container and volume made here starts with it


class Failure(Exception):
    """A check that did not hold; the message says what was seen."""


# --- running things ------------------------------------------------------------------------------------------------


def podman(*args: str, check: bool = True, timeout: float = 600, log: Path | None = None) -> str:
    """Run podman, return its stdout; a failure raises with its command and the end of its output."""
    cmd = ["podman", "--runtime", RUNTIME, *args]
    if log is not None:
        with log.open("w") as out:
            done = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        output = log.read_text()
    else:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        output = done.stdout + done.stderr
    if check and done.returncode != 0:
        tail = "\n".join(output.strip().splitlines()[-25:])
        raise Failure(f"{shlex.join(cmd)} exited {done.returncode}:\n{tail}")
    return done.stdout if log is None else output


def exists(kind: str, name: str) -> bool:
    return subprocess.run(["podman", kind, "exists", name], capture_output=True).returncode == 0


def remove_containers(names: Sequence[str]) -> None:
    if names:
        subprocess.run(["podman", "rm", "--force", "--ignore", "--time", "0", *names], capture_output=True)


def state(container: str) -> str:
    return podman("inspect", "--format", "{{.State.Status}}", container, check=False).strip() or "gone"


def logs(container: str, lines: int = 30) -> str:
    return subprocess.run(
        ["podman", "logs", "--tail", str(lines), container], capture_output=True, text=True
    ).stdout.strip()


async def until(check: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    """Poll ``check`` (sync or async) until it returns something true; that value is returned."""
    end = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > end:
            raise Failure(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.2)


def port_free(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def chosen_ports() -> dict[str, int]:
    ports = {name: int(os.environ.get(var, default)) for name, (var, default) in PORTS.items()}
    if len(set(ports.values())) != len(ports):
        raise Failure(f"the ports must differ: {ports}")
    taken = [f"{port} ({PORTS[name][0]})" for name, port in ports.items() if not port_free(port)]
    if taken:
        raise Failure(f"port {', '.join(taken)} is taken on this machine: choose a free one with that variable")
    return ports


# --- steps, each timed ---------------------------------------------------------------------------------------------


@dataclass
class Checks:
    passed: int = 0
    started: float = field(default_factory=time.monotonic)

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        except BaseException:
            print(f"FAIL {what} ({time.monotonic() - began:.1f} s)", flush=True)
            raise
        self.passed += 1
        print(f"ok   {what} ({time.monotonic() - began:.1f} s)", flush=True)


# --- images --------------------------------------------------------------------------------------------------------


def base_image(checks: Checks) -> str:
    """Debian bookworm from debootstrap (minbase + Python), with the security updates: built once, then cached."""
    recipe = f"{SUITE} {MIRROR} {SECURITY_MIRROR} {' '.join(BASE_PACKAGES)} 1"
    key = hashlib.sha256(recipe.encode()).hexdigest()[:12]
    tag = f"{PREFIX}/debian:{SUITE}-{key}"
    with checks.step(f"base image {tag}: debootstrap --variant=minbase {SUITE} + {', '.join(BASE_PACKAGES)}"):
        if exists("image", tag):
            print(f"     cached (delete with: podman rmi {tag}; rm -r {CACHE})")
            return tag
        if os.geteuid() != 0:
            raise Failure("debootstrap needs root to make the base image (run this as root once; it is cached)")
        if shutil.which("debootstrap") is None:
            raise Failure("debootstrap is not installed (apt-get install debootstrap)")
        CACHE.mkdir(parents=True, exist_ok=True)
        tarball = CACHE / f"rootfs-{SUITE}-{key}.tar"
        if not tarball.exists():
            rootfs = CACHE / f"rootfs-{SUITE}-{key}"
            shutil.rmtree(rootfs, ignore_errors=True)
            cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(rootfs)]
            with (CACHE / "debootstrap.log").open("w") as out:
                if subprocess.run([*cmd, MIRROR], stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                    raise Failure(f"debootstrap failed: see {CACHE / 'debootstrap.log'}")
            # What belongs to the host it was made on, and the package cache, stay out of the image.
            for path in ("var/cache/apt/archives", "var/lib/apt/lists"):
                for item in (rootfs / path).glob("*"):
                    if item.is_file():
                        item.unlink()
            for name in ("etc/hostname", "etc/resolv.conf"):
                (rootfs / name).write_text("")
            (rootfs / "etc/apt/sources.list").write_text(
                f"deb {MIRROR} {SUITE} main\ndeb {MIRROR} {SUITE}-updates main\n"
                f"deb {SECURITY_MIRROR} {SUITE}-security main\n"
            )
            partial = tarball.with_suffix(".part")
            subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
            partial.rename(tarball)
            shutil.rmtree(rootfs)
        raw = f"{PREFIX}/debian-rootfs:{SUITE}-{key}"
        changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "ENV LANG=C.UTF-8"]
        podman("import", *(arg for change in changes for arg in ("--change", change)), str(tarball), raw)
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / "Containerfile").write_text(
                f"FROM {raw}\n"
                "RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get -y upgrade"
                " && apt-get clean && rm -rf /var/lib/apt/lists/*\n"
                'CMD ["/bin/bash"]\n'
            )
            build(tag, Path(tmp), log="base")
        podman("rmi", raw, check=False)
    return tag


def pip_mounts(tmp: Path) -> list[str]:
    """Give pip in the build this machine's way to its index: its CA bundle and index URL (as /etc/pip.conf)."""

    def configured(key: str) -> str:
        done = subprocess.run([sys.executable, "-m", "pip", "config", "get", key], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    lines = ["[global]"]
    mounts: list[str] = []
    cert = next(
        (
            c
            for c in (
                os.environ.get("PIP_CERT"),
                configured("global.cert"),
                os.environ.get("REQUESTS_CA_BUNDLE"),
                os.environ.get("SSL_CERT_FILE"),
                "/etc/ssl/certs/ca-certificates.crt",
            )
            if c and Path(c).is_file()
        ),
        None,
    )
    if cert:
        mounts += ["--volume", f"{cert}:/etc/pip-ca.pem:ro"]
        lines.append("cert = /etc/pip-ca.pem")
    index = os.environ.get("PIP_INDEX_URL") or configured("global.index-url")
    if index.startswith(("http://", "https://")):  # a file:// index on this machine is not in the container
        lines.append(f"index-url = {index}")
    (tmp / "pip.conf").write_text("\n".join(lines) + "\n")
    return [*mounts, "--volume", f"{tmp / 'pip.conf'}:/etc/pip.conf:ro"]


def build(tag: str, context: Path, *, log: str, args: Sequence[str] = ()) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    podman("build", "--network", "host", *LIMITS, "--tag", tag, *args, str(context), log=CACHE / f"build-{log}.log")


# --- the image alone -----------------------------------------------------------------------------------------------


def metric_readers(text: str) -> dict[str, float]:
    """``ticker_readers`` summed by transport, from a Prometheus text page."""
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(r'ticker_readers\{[^}]*transport="([a-z]+)"[^}]*\}\s+(\S+)', line)
        if match:
            counts[match[1]] = counts.get(match[1], 0.0) + float(match[2])
    return counts


async def readers_of(client: httpx.AsyncClient, base: str) -> dict[str, float]:
    response = await client.get(f"{base}/metrics")
    if response.status_code != 200:
        raise Failure(f"GET {base}/metrics answered {response.status_code}")
    return metric_readers(response.text)


async def wait_healthy(client: httpx.AsyncClient, url: str, container: str) -> None:
    async def up() -> bool:
        if state(container) != "running":
            raise Failure(f"{container} is {state(container)}:\n{logs(container)}")
        with contextlib.suppress(httpx.TransportError):
            return (await client.get(url)).status_code == 200
        return False

    await until(up, f"{url} to answer 200")


async def page_scripts(client: httpx.AsyncClient, base: str) -> list[str]:
    """Load the demo page, then every module it imports, transitively, as a browser would; return their URLs."""
    page = await client.get(f"{base}/")
    if page.status_code != 200 or not page.headers["content-type"].startswith("text/html"):
        raise Failure(f"GET / answered {page.status_code} {page.headers.get('content-type')}")
    todo = re.findall(r'<script[^>]*\bsrc="(/static/js/[^"]+)"', page.text)
    if not todo:
        raise Failure("the demo page loads no script from /static/js/")
    seen: list[str] = []
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.append(path)
        response = await client.get(f"{base}{path}")
        if response.status_code != 200 or response.headers["content-type"].split(";")[0] != "text/javascript":
            raise Failure(f"GET {path} answered {response.status_code} {response.headers.get('content-type')}")
        directory = path.rsplit("/", 1)[0]
        for name in re.findall(r"""(?:from|import)\s*\(?\s*["']\./([a-z0-9-]+\.js)["']""", response.text):
            todo.append(f"{directory}/{name}")
    return seen


async def check_image(checks: Checks, image: str, port: int) -> None:
    container = f"{NAME}-hub"
    base, ws_base = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}"
    remove_containers([container])
    podman("run", "--detach", "--name", container, *RUN_OPTIONS, image, "ticker", "run", "--port", str(port))
    async with contextlib.AsyncExitStack() as stack:
        stack.callback(remove_containers, [container])
        client = await stack.enter_async_context(httpx.AsyncClient(timeout=10))
        with checks.step(f"image: `ticker run` serves /healthz on :{port} as a non-root user"):
            await wait_healthy(client, f"{base}/healthz", container)
            users = podman("top", container, "user", "args").splitlines()[1:]
            server = [line for line in users if "ticker run" in line]
            if not server or not all(line.split()[0] == "ticker" for line in server):
                raise Failure(f"the hub does not run as the image's user ticker: {users}")
            uid = podman("exec", container, "id", "-u").strip()
            if uid != "10001":
                raise Failure(f"the image's user is uid {uid}, not 10001")
            limits = podman("exec", container, "cat", "/proc/1/limits")
            soft, hard = re.findall(r"Max open files\s+(\d+)\s+(\d+)", limits)[0]
            if soft != hard:
                raise Failure(f"the hub left its open-files limit at {soft} (hard limit {hard}; started {NOFILE})")
            print(f"     uid 10001; open-files limit raised from {NOFILE.split(':')[0]} to {soft}")

        with checks.step("image: the demo page and every browser script it imports, from /static/js/"):
            loaded = await page_scripts(client, base)
            plain = await client.get(f"{base}/static/js/ticker.js")
            if plain.status_code != 200:
                raise Failure(f"GET /static/js/ticker.js answered {plain.status_code}")
            print(f"     {len(loaded)} modules: {', '.join(sorted(p.rsplit('/', 1)[1] for p in loaded))}")

        with checks.step("image: `ticker token create`, `ticker publish` and WebSocket readers inside it"):
            created = podman("exec", container, "ticker", "token", "create", "--name", "check")
            token = created.strip().splitlines()[-1]
            tail = await asyncio.create_subprocess_exec(
                "podman", "exec", container, "ticker", "tail", "--server", base,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            )  # fmt: skip
            stack.push_async_callback(_end, tail)
            ws = await stack.enter_async_context(websockets.connect(f"{ws_base}/v1/stream", open_timeout=10))
            await until(lambda: _at_least(client, base, "websocket", 2), "both readers to be connected")
            headline = f"BREAKING: the image works ({os.urandom(3).hex()})"
            published = podman(
                "exec", container, "ticker", "publish", headline, "--lang", "en",
                "--category", "politics", "--urgency", "1", "--token", token, "--server", base,
            )  # fmt: skip
            doc = json.loads(published)
            event = json.loads(await asyncio.wait_for(ws.recv(), 10))
            if event.get("type") != "flash" or event["flash"]["uri"] != doc["uri"]:
                raise Failure(f"the reader outside got {event}, not the flash {doc['uri']}")
            assert tail.stdout is not None
            line = (await asyncio.wait_for(tail.stdout.readline(), 10)).decode()
            if not line.startswith("flash") or headline not in line:
                raise Failure(f"`ticker tail` inside the image printed {line!r}")
            print(f"     `ticker tail` in the container: {line.strip()}")

        with checks.step("image: SIGTERM drains the hub: its readers get 1012, it exits 0"):
            began = time.monotonic()
            podman("kill", "--signal", "TERM", container)
            code = await _close_code(ws)
            if code != 1012:
                raise Failure(f"the reader was closed with {code}, not 1012")
            exit_code = podman("wait", container, timeout=30).strip()
            took = time.monotonic() - began
            if exit_code != "0":
                raise Failure(f"the hub exited {exit_code}:\n{logs(container)}")
            print(f"     closed with 1012, exited 0 {took:.2f} s after SIGTERM")


async def _end(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.kill()
    await process.wait()


async def _at_least(client: httpx.AsyncClient, base: str, transport: str, count: int) -> bool:
    return (await readers_of(client, base)).get(transport, 0.0) >= count


async def _close_code(ws: ClientConnection, timeout: float = 20) -> int | None:
    """Read until the server closes the connection; its close code."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    return ws.close_code


# --- the compose topology ------------------------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    image: str
    command: list[str] | None
    env: dict[str, str]
    volumes: list[str]
    healthcheck: list[str] | None
    depends_on: dict[str, str]
    stop_seconds: int
    container: str = ""


def _argv(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise Failure(f"use the exec (list) form in docker-compose.yml, not {value!r}")
    return [str(part) for part in value]


def _replace_once(text: str, old: str, new: str, where: str) -> str:
    if text.count(old) != 1:
        raise Failure(f"{where}: expected {old!r} exactly once, found it {text.count(old)} times")
    return text.replace(old, new)


def _seconds(value: Any) -> int:
    match = re.fullmatch(r"(\d+)s?", str(value or "10s"))
    if not match:
        raise Failure(f"stop_grace_period {value!r}: only seconds are understood here")
    return int(match[1])


def plan_compose(images: dict[str, str], ports: dict[str, int], tmp: Path) -> list[Service]:
    """docker-compose.yml's services as podman containers on the host's loopback (see the module's docstring)."""
    with (ROOT / "docker-compose.yml").open() as fh:
        compose = yaml.safe_load(fh)
    services: dict[str, Any] = compose["services"]
    compose_ports: dict[str, int] = {}  # the port each service listens on in compose
    plans: list[Service] = []
    for name, spec in services.items():
        listens = "ports" in spec or str(spec.get("command", "")).startswith(("['ticker', 'hub'", "['redis-server'"))
        if listens and name not in ports:
            raise Failure(f"docker-compose.yml has a service {name!r} that listens: give it a port in PORTS")
        port = str(ports.get(name, ""))
        if "build" in spec:
            if spec["build"] != ".":
                raise Failure(f"{name}: build {spec['build']!r}, expected the repository's Dockerfile")
            image = images["ticker"]
        else:
            image = images[str(spec["image"]).split(":")[0]]
        command = _argv(spec["command"]) if "command" in spec else None
        health = spec.get("healthcheck", {}).get("test")
        healthcheck = _argv(health)[1:] if health else None
        if health and _argv(health)[0] != "CMD":
            raise Failure(f"{name}: healthcheck test must be [CMD, ...]")
        if command and command[:2] == ["ticker", "hub"]:
            compose_ports[name] = int(command[command.index("--port") + 1])
            command[command.index("--host") + 1] = "127.0.0.1"
            command[command.index("--port") + 1] = port
            if healthcheck:
                old = f"127.0.0.1:{compose_ports[name]}/"
                _replace_once("\n".join(healthcheck), old, "", f"{name}'s healthcheck")
                healthcheck = [part.replace(old, f"127.0.0.1:{port}/") for part in healthcheck]
        elif command and command[0] == "redis-server":
            compose_ports[name] = 6379
            command += ["--port", port, "--bind", "127.0.0.1"]
            if healthcheck and healthcheck[0] == "redis-cli":
                healthcheck[1:1] = ["-p", port]
        env = {str(k): str(v) for k, v in (spec.get("environment") or {}).items()}
        volumes = [str(v) for v in spec.get("volumes", [])]
        depends = spec.get("depends_on") or {}
        if isinstance(depends, list):
            depends = {dep: {"condition": "service_started"} for dep in depends}
        plans.append(
            Service(
                name,
                image,
                command,
                env,
                volumes,
                healthcheck,
                {dep: str(how.get("condition", "service_started")) for dep, how in depends.items()},
                _seconds(spec.get("stop_grace_period")),
            )
        )

    for plan in plans:
        # A URL naming a service (REDIS_URL) keeps the name and gets the service's port here.
        for key, value in plan.env.items():
            url = urlsplit(value)
            if url.scheme and url.hostname in compose_ports:
                if url.port != compose_ports[url.hostname]:
                    raise Failure(f"{plan.name}: {key} {value} is not the port {url.hostname} listens on")
                netloc = url.netloc.rsplit(":", 1)[0] + f":{ports[url.hostname]}"
                plan.env[key] = urlunsplit(url._replace(netloc=netloc))
        mounts = []
        for volume in plan.volumes:
            source, target, *mode = volume.split(":")
            if source.startswith("./"):
                path = ROOT / source
                if target == "/etc/nginx/nginx.conf":
                    path = _nginx_conf(path, plan.name, services[plan.name], compose_ports, ports, tmp)
                mounts.append(":".join([str(path), target, *mode]))
            else:  # a named volume, fresh for each run
                mounts.append(":".join([f"{NAME}-{source}", target, *mode]))
        plan.volumes = mounts
        plan.container = f"{NAME}-{plan.name}"
    return plans


def _nginx_conf(
    path: Path, name: str, spec: dict[str, Any], compose_ports: dict[str, int], ports: dict[str, int], tmp: Path
) -> Path:
    text = path.read_text()
    published = [str(p).split(":") for p in spec.get("ports", [])]
    if len(published) != 1:
        raise Failure(f"{name}: expected one published port, got {spec.get('ports')}")
    text = _replace_once(text, f"listen {published[0][-1]};", f"listen 127.0.0.1:{ports[name]};", str(path))
    for hub, port in compose_ports.items():
        if hub != "redis":
            text = _replace_once(text, f"server {hub}:{port};", f"server {hub}:{ports[hub]};", str(path))
    out = tmp / "nginx.conf"
    out.write_text(text)
    return out


def start_order(plans: list[Service]) -> list[Service]:
    by_name = {plan.name: plan for plan in plans}
    order: list[Service] = []

    def visit(plan: Service, path: tuple[str, ...]) -> None:
        if plan in order:
            return
        if plan.name in path:
            raise Failure(f"depends_on has a cycle: {' -> '.join((*path, plan.name))}")
        for dep in plan.depends_on:
            visit(by_name[dep], (*path, plan.name))
        order.append(plan)

    for plan in plans:
        visit(plan, ())
    return order


async def healthy(plan: Service) -> None:
    test = plan.healthcheck
    assert test is not None

    def passes() -> bool:
        if state(plan.container) != "running":
            raise Failure(f"{plan.name} is {state(plan.container)}:\n{logs(plan.container)}")
        return subprocess.run(["podman", "exec", plan.container, *test], capture_output=True).returncode == 0

    await until(passes, f"{plan.name}'s healthcheck ({shlex.join(test)})")


@contextlib.asynccontextmanager
async def compose_up(plans: list[Service]) -> AsyncIterator[dict[str, Service]]:
    hosts = [arg for plan in plans for arg in ("--add-host", f"{plan.name}:127.0.0.1")]
    names = [plan.container for plan in plans]
    volumes = sorted({v.split(":")[0] for plan in plans for v in plan.volumes if v.startswith(NAME)})
    remove_containers(names)
    for volume in volumes:
        subprocess.run(["podman", "volume", "rm", "--force", volume], capture_output=True)
    try:
        for plan in start_order(plans):
            for dep, condition in plan.depends_on.items():
                dependency = next(p for p in plans if p.name == dep)
                if condition == "service_healthy":
                    await healthy(dependency)
            options = [*RUN_OPTIONS, *hosts, "--stop-timeout", str(plan.stop_seconds)]
            options += [arg for key, value in plan.env.items() for arg in ("--env", f"{key}={value}")]
            options += [arg for volume in plan.volumes for arg in ("--volume", volume)]
            podman("run", "--detach", "--name", plan.container, *options, plan.image, *(plan.command or []))
        for plan in plans:
            if plan.healthcheck:
                await healthy(plan)
        yield {plan.name: plan for plan in plans}
    except BaseException:
        for name in names:
            print(f"--- {name} ({state(name)}), last lines:\n{logs(name)}", file=sys.stderr)
        raise
    finally:
        remove_containers(names)
        for volume in volumes:
            subprocess.run(["podman", "volume", "rm", "--force", volume], capture_output=True)


class SSE:
    """The few lines of an event stream this check reads: ``id`` and ``data`` of each event."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.aiter_lines()

    async def next_event(self) -> dict[str, Any]:
        event: dict[str, Any] = {}
        async with asyncio.timeout(10):
            async for line in self.lines:
                if not line and "data" in event:
                    return event
                name, _, value = line.partition(":")
                if name in ("id", "event", "data"):
                    event[name] = value.removeprefix(" ")
        raise Failure("the event stream ended")


async def check_compose(checks: Checks, images: dict[str, str], ports: dict[str, int]) -> None:
    proxy = f"http://127.0.0.1:{ports['proxy']}"
    ws_proxy = f"ws://127.0.0.1:{ports['proxy']}"
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as tmp:
        plans = plan_compose(images, ports, Path(tmp))
        order = ", ".join(plan.name for plan in start_order(plans))
        async with contextlib.AsyncExitStack() as stack:
            with checks.step(f"compose: {order} started in depends_on order, every healthcheck passing"):
                services = await stack.enter_async_context(compose_up(plans))
            client = await stack.enter_async_context(httpx.AsyncClient(timeout=httpx.Timeout(10, read=None)))
            hubs = {name: f"http://127.0.0.1:{ports[name]}" for name in ("hub1", "hub2")}

            with checks.step(f"compose: the proxy on :{ports['proxy']} serves /healthz and the page, not /metrics"):
                await wait_healthy(client, f"{proxy}/healthz", services["proxy"].container)
                await page_scripts(client, proxy)
                hidden = await client.get(f"{proxy}/metrics")
                if hidden.status_code != 404:
                    raise Failure(f"GET /metrics through the proxy answered {hidden.status_code}, not 404")

            with checks.step(
                "compose: a flash posted through the proxy reaches WebSocket and SSE readers on both hubs"
            ):
                created = podman("exec", services["hub1"].container, "ticker", "token", "create", "--name", "check")
                token = created.strip().splitlines()[-1]
                headers = {"Authorization": f"Bearer {token}"}
                readers = [
                    await stack.enter_async_context(websockets.connect(f"{ws_proxy}/v1/stream", open_timeout=10))
                    for _ in range(2)
                ]
                stream = await stack.enter_async_context(client.stream("GET", f"{proxy}/v1/events"))
                if stream.status_code != 200:
                    raise Failure(f"GET /v1/events through the proxy answered {stream.status_code}")
                sse = SSE(stream)

                async def spread() -> dict[str, dict[str, float]] | None:
                    counts = {name: await readers_of(client, url) for name, url in hubs.items()}
                    total = sum(sum(c.values()) for c in counts.values())
                    return counts if total == 3 and all(sum(c.values()) >= 1 for c in counts.values()) else None

                counts = await until(spread, "the three readers to be connected, on both hubs")
                body = {"headline": "BREAKING: through the proxy", "language": "en", "category": "politics"}
                response = await client.post(f"{proxy}/v1/flashes", json=body, headers=headers)
                if response.status_code != 201:
                    raise Failure(f"POST /v1/flashes through the proxy answered {response.status_code}")
                uri = response.json()["uri"]
                got = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for ws in readers]
                event = await sse.next_event()
                if any(e["flash"]["uri"] != uri for e in got) or json.loads(event["data"])["uri"] != uri:
                    raise Failure(f"the readers got {got} and {event}, not {uri}")
                last_id = got[0]["event_id"]
                print(f"     readers per hub: {json.dumps(counts)}")

            with checks.step("compose: no service logged an error, and each one's warnings are shown"):
                bad: list[str] = []
                for name, plan in services.items():
                    text = subprocess.run(["podman", "logs", plan.container], capture_output=True, text=True)
                    for line in (text.stdout + text.stderr).splitlines():
                        level = _level(line)
                        if level in ("warning", "error"):
                            print(f"     {name}: {line[:200]}")
                        if level == "error":
                            bad.append(f"{name}: {line}")
                if bad:
                    raise Failure("errors in the logs:\n" + "\n".join(bad))

            # The hub without the SSE reader (there is one: each hub has a reader), so that the stream stays open.
            draining = next(name for name in hubs if not counts[name].get("sse"))
            with checks.step(
                f"compose: {draining} stopped with SIGTERM sends its readers 1012; they resume on the other"
            ):
                began = time.monotonic()
                stop = asyncio.create_task(
                    asyncio.to_thread(podman, "stop", "--time", str(services[draining].stop_seconds),
                                      services[draining].container)
                )  # fmt: skip
                expected = int(counts[draining]["websocket"])
                closers = {ws: asyncio.create_task(_closes_within(ws, TIMEOUT)) for ws in readers}
                await stop
                took = time.monotonic() - began

                def finished() -> list[ClientConnection]:
                    return [ws for ws, task in closers.items() if task.done() and task.result()]

                # The drained hub closed its readers before it exited; the other hub's stay open.
                closed = await until(lambda: len(finished()) >= expected and finished(), "the drained readers")
                for task in closers.values():
                    task.cancel()
                codes = [ws.close_code for ws in closed]
                if len(closed) != expected or set(codes) != {1012}:
                    raise Failure(f"{len(closed)} readers closed with {codes}, expected {expected} with 1012")
                if took > services[draining].stop_seconds:
                    raise Failure(f"{draining} took {took:.1f} s to stop, past its stop_grace_period")
                print(f"     {len(closed)} closed with 1012; {draining} gone {took:.2f} s after SIGTERM")
                response = await client.post(
                    f"{proxy}/v1/flashes", json={**body, "headline": "BREAKING: after the drain"}, headers=headers
                )
                if response.status_code != 201:
                    raise Failure(f"POST after the drain answered {response.status_code}")
                uri = response.json()["uri"]
                for _ in closed:
                    resumed = await stack.enter_async_context(
                        websockets.connect(f"{ws_proxy}/v1/stream?last_event_id={last_id}", open_timeout=10)
                    )
                    event = json.loads(await asyncio.wait_for(resumed.recv(), 10))
                    if event["flash"]["uri"] != uri:
                        raise Failure(f"a resumed reader got {event}, not the flash posted after the drain")
                if json.loads((await sse.next_event())["data"])["uri"] != uri:
                    raise Failure("the SSE reader did not get the flash posted after the drain")
                for ws in readers:
                    if ws not in closed:
                        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
                        if event["flash"]["uri"] != uri:
                            raise Failure(f"a reader on the other hub got {event}")
                first_uri = got[0]["flash"]["uri"]

            with checks.step("compose: Redis restarted keeps every flash (AOF on the redis-data volume)"):
                redis = services["redis"]
                podman("restart", "--time", str(redis.stop_seconds), redis.container)
                await healthy(redis)

                async def kept() -> bool:
                    with contextlib.suppress(httpx.TransportError):
                        listed = await client.get(f"{proxy}/v1/flashes?limit=10")
                        if listed.status_code == 200:
                            return {first_uri, uri} <= {f["uri"] for f in listed.json()["flashes"]}
                    return False

                await until(kept, "both flashes listed through the proxy after Redis restarted")
                files = podman("exec", redis.container, "ls", "-R", "/data")
                if ".aof" not in files:
                    raise Failure(f"no AOF file in Redis's /data: {files}")
                if state(services["worker"].container) != "running":
                    raise Failure(f"the worker is {state(services['worker'].container)}")


def _level(line: str) -> str:
    """How bad a log line is: ticker's JSON lines carry a level; nginx writes ``[warn]``, ``[error]``…; Redis
    marks warnings with ``#``; a Python traceback is an error."""
    if line.startswith("{"):
        with contextlib.suppress(ValueError):
            level = str(json.loads(line).get("level", "")).lower()
            return {"critical": "error", "warn": "warning"}.get(level, level)
    match = re.search(r"\[(emerg|alert|crit|error|warn)\]", line)
    if match:
        return "warning" if match[1] == "warn" else "error"
    if re.search(r"^\d+:[A-Z] .* # ", line) or line.startswith("WARNING"):
        return "warning"
    if line.startswith(("Traceback", "ERROR")):
        return "error"
    return "info"


async def _closes_within(ws: ClientConnection, timeout: float) -> bool:
    """Whether the server closes ``ws`` within ``timeout`` (events that arrive before are dropped)."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except websockets.ConnectionClosed:
        return True
    except TimeoutError:
        return False


# --- main ----------------------------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, checks: Checks) -> None:
    with checks.step("podman works here (`podman info`), and the ports are free"):
        podman("info", "--format", "{{.Host.OCIRuntime.Name}}")
        ports = chosen_ports()
        print(f"     ports: {ports}")
    base = base_image(checks)
    images = {name: f"{PREFIX}/{name}:latest" for name in ("ticker", "redis", "nginx")}
    with tempfile.TemporaryDirectory(prefix=f"{NAME}-") as tmp:
        with checks.step(f"image: Dockerfile builds on {base} (--build-arg BASE_IMAGE)"):
            build(
                images["ticker"], ROOT, log="ticker", args=["--build-arg", f"BASE_IMAGE={base}", *pip_mounts(Path(tmp))]
            )
    await check_image(checks, images["ticker"], ports["hub"])
    if args.image_only:
        return
    with checks.step("images: Redis and nginx from Debian on the same base (deploy/debian/)"):
        for name in ("redis", "nginx"):
            context = ROOT / "deploy" / "debian"
            options = ["--build-arg", f"BASE_IMAGE={base}", "--file", str(context / f"{name}.Dockerfile")]
            build(images[name], context, log=name, args=options)
    await check_compose(checks, images, ports)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-only", action="store_true", help="check the image alone, not the compose topology")
    args = parser.parse_args()
    began = time.monotonic()
    checks = Checks()
    failed = 0
    try:
        asyncio.run(run(args, checks))
    except (Failure, OSError, subprocess.SubprocessError, TimeoutError, AssertionError) as exc:
        print(f"check-image: {type(exc).__name__}: {exc}", file=sys.stderr)
        failed = 1
    print(f"check-image took {time.monotonic() - began:.1f} s")
    print(f"check-image: {checks.passed} passed, {failed} failed")
    return failed


if __name__ == "__main__":
    sys.exit(main())
