"""Redis Sentinel failover mid-stream: one master, one replica and three sentinels (``redis-server --sentinel``, the
program Debian's ``redis-sentinel`` runs). A hub and a worker that only know the sentinels follow a forced
``SENTINEL FAILOVER`` without a restart: a connected reader keeps receiving, and flashes posted after it arrive."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from .support.flashes import flash_body
from .support.processes import TIMEOUT, Service, base_env, free_port, run_ticker, start_hub, wait_until
from .support.readers import next_ws_event, ws_reader

MASTER_NAME = "ticker-test"
FAILOVER_TIMEOUT = 30.0


class RedisNode:
    """A redis-server (or sentinel) on a free loopback port with its own directory and arguments."""

    def __init__(self, directory: Path, *args: str) -> None:
        self.port = free_port()
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def start(self, config: str | None = None) -> None:
        command = ["redis-server"]
        if config is not None:
            path = self.directory / "sentinel.conf"
            path.write_text(f"port {self.port}\n{config}")
            command += [str(path), "--sentinel"]
        else:
            command += ["--port", str(self.port), "--save", "", "--appendonly", "no", "--dir", str(self.directory)]
        command += ["--bind", "127.0.0.1", "--protected-mode", "no", *self.args]
        with (self.directory / "server.log").open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)

        def ping() -> bool:
            with self.client() as client:
                return bool(client.ping())

        wait_until(ping, f"redis on {self.port}")

    def role(self) -> str:
        with self.client() as client:
            return str(client.info("replication")["role"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=TIMEOUT)


@pytest.fixture(scope="module")
def sentinel_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, list[RedisNode]]]:
    tmp = tmp_path_factory.mktemp("sentinel")
    master = RedisNode(tmp / "master")
    nodes = [master]
    try:
        master.start()
        replica = RedisNode(tmp / "replica", "--replicaof", "127.0.0.1", str(master.port))
        nodes.append(replica)
        replica.start()
        with replica.client() as client:
            wait_until(lambda: client.info("replication")["master_link_status"] == "up", "the replica in sync")
        sentinels = [RedisNode(tmp / f"sentinel{i}") for i in range(3)]
        for sentinel in sentinels:
            nodes.append(sentinel)
            sentinel.start(
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 1000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            )

        def sentinels_ready() -> bool:
            for sentinel in sentinels:
                with sentinel.client() as client:
                    replicas = client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME)
                    peers = client.execute_command("SENTINEL", "SENTINELS", MASTER_NAME)
                    if len(replicas) != 1 or len(peers) != 2:
                        return False
            return True

        wait_until(sentinels_ready, "three sentinels that know the replica and each other", timeout=20)
        env = base_env(
            TICKER_REDIS_SENTINELS=",".join(f"127.0.0.1:{s.port}" for s in sentinels),
            TICKER_REDIS_SENTINEL_MASTER=MASTER_NAME,
        )
        created = run_ticker(env, "token", "create", "--name", "tests")
        assert created.returncode == 0, created.stderr
        service = Service("sentinel", "", created.stdout.strip().splitlines()[-1], env)
        try:
            service.base_url, _ = start_hub(service, tmp)
            worker = start_worker_on(service, tmp, master)
            assert worker.proc is not None
            yield service, nodes
        finally:
            service.stop()
    finally:
        for node in reversed(nodes):
            node.stop()


def start_worker_on(service: Service, tmp: Path, master: RedisNode) -> Any:
    """``start_worker`` waits on ``service.redis``; here the worker's first poll shows on the master."""
    from .support.processes import Process, ticker

    worker = Process(ticker("worker"), service.env, tmp / "worker.log")
    worker.start()
    service.processes.append(worker)
    with master.client() as client:
        wait_until(lambda: bool(client.exists("arq:queue:health-check")), "the worker's first poll")
    return worker


async def post_until_accepted(client: httpx.AsyncClient, service: Service, headline: str) -> dict[str, Any]:
    """Publish with one Idempotency-Key, retrying 503s and dropped connections (as ``ticker publish`` does)."""
    key = str(uuid.uuid4())
    deadline = asyncio.get_running_loop().time() + FAILOVER_TIMEOUT
    while True:
        try:
            response = await client.post(
                f"{service.base_url}/v1/flashes",
                json=flash_body(headline),
                headers=service.headers(**{"Idempotency-Key": key}),
            )
            if response.status_code == 201:
                return response.json()  # type: ignore[no-any-return]
            assert response.status_code in (409, 503), response.text
        except httpx.TransportError:
            pass
        assert asyncio.get_running_loop().time() < deadline, f"{headline!r} never accepted"
        await asyncio.sleep(0.1)


async def test_hub_and_worker_follow_a_sentinel_failover(sentinel_setup: tuple[Service, list[RedisNode]]) -> None:
    service, (master, replica, first_sentinel, *_) = sentinel_setup
    hub, worker = service.processes
    async with httpx.AsyncClient(timeout=TIMEOUT) as client, ws_reader(service, "lang=en") as ws:
        before = [await post_until_accepted(client, service, f"before failover {i}") for i in range(3)]
        for doc in before:
            assert (await next_ws_event(ws))["flash"]["uri"] == doc["uri"]

        with first_sentinel.client() as sentinel:
            assert sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

        def switched() -> bool:
            with first_sentinel.client() as sentinel:
                address = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
            return int(address[1]) == replica.port and replica.role() == "master" and master.role() == "slave"

        await asyncio.to_thread(wait_until, switched, "the replica promoted and the old master demoted", 20)
        after = [await post_until_accepted(client, service, f"after failover {i}") for i in range(3)]
        for doc in after:
            assert (await next_ws_event(ws, FAILOVER_TIMEOUT))["flash"]["uri"] == doc["uri"]

    # Same processes throughout, now on the new master: it holds the history and the worker's heartbeat.
    assert hub.proc is not None and hub.proc.poll() is None
    assert worker.proc is not None and worker.proc.poll() is None
    with replica.client() as client:
        assert client.xlen("ticker:events") == 6
    ready = httpx.get(f"{service.base_url}/readyz", timeout=TIMEOUT)
    assert ready.status_code == 200, ready.text
