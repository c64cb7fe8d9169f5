"""Redis Sentinel on loopback: one master, one replica and three sentinels (``redis-server --sentinel``, the program
Debian's ``redis-sentinel`` runs), each on a free port in its own directory."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from .processes import TIMEOUT, base_env, free_port, wait_until

MASTER_NAME = "ticker-test"


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


@dataclass
class SentinelGroup:
    """The nodes, and the environment with which ``ticker`` finds the master through the sentinels."""

    master: RedisNode
    replica: RedisNode
    sentinels: list[RedisNode]
    env: dict[str, str]

    @property
    def nodes(self) -> list[RedisNode]:
        return [self.master, self.replica, *self.sentinels]

    def current_master(self) -> RedisNode:
        with self.sentinels[0].client() as sentinel:
            address = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER_NAME)
        return self.master if int(address[1]) == self.master.port else self.replica

    def failover(self, timeout: float = 30) -> RedisNode:
        """``SENTINEL FAILOVER``, then wait until the replica is master and the old master its replica (and in
        sync); returns the new master."""
        old = self.current_master()
        new = self.replica if old is self.master else self.master
        with self.sentinels[0].client() as sentinel:
            assert sentinel.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)

        def switched() -> bool:
            if self.current_master() is not new or new.role() != "master" or old.role() != "slave":
                return False
            with old.client() as client:
                return bool(client.info("replication")["master_link_status"] == "up")

        wait_until(switched, "the replica promoted and the old master following it", timeout)
        return new

    def crash_master(self, timeout: float = 30) -> RedisNode:
        """Kill the master (-9) and wait until the sentinels have promoted the replica; then start the old master
        again, empty, as the new one's replica, and wait until it is in sync. Returns the new master."""
        old = self.current_master()
        new = self.replica if old is self.master else self.master
        assert old.proc is not None
        old.proc.kill()
        old.proc.wait()
        wait_until(lambda: self.current_master() is new and new.role() == "master", "the sentinels' failover", timeout)
        own = old.args[: old.args.index("--replicaof")] if "--replicaof" in old.args else old.args
        old.args = (*own, "--replicaof", "127.0.0.1", str(new.port))
        old.start()

        def in_sync() -> bool:
            with old.client() as client:
                return bool(client.info("replication")["master_link_status"] == "up")

        wait_until(in_sync, "the old master back, as a replica in sync", timeout)
        return new

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


def start_sentinels(tmp: Path, *, min_replicas_to_write: int = 0, **extra_env: str) -> SentinelGroup:
    """A master, its replica in sync, and three sentinels that know both and each other. ``min_replicas_to_write``:
    the Redis setting of both nodes (a master refuses writes with fewer replicas in sync)."""
    safety = ("--min-replicas-to-write", str(min_replicas_to_write), "--min-replicas-max-lag", "10")
    master = RedisNode(tmp / "master", *safety)
    replica = RedisNode(tmp / "replica", *safety, "--replicaof", "127.0.0.1", str(master.port))
    sentinels = [RedisNode(tmp / f"sentinel{i}") for i in range(3)]
    group = SentinelGroup(master, replica, sentinels, {})
    try:
        master.start()
        replica.start()
        with replica.client() as client:
            wait_until(lambda: client.info("replication")["master_link_status"] == "up", "the replica in sync")
        for sentinel in sentinels:
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
    except BaseException:
        group.stop()
        raise
    group.env = base_env(
        TICKER_REDIS_SENTINELS=",".join(f"127.0.0.1:{s.port}" for s in sentinels),
        TICKER_REDIS_SENTINEL_MASTER=MASTER_NAME,
        **extra_env,
    )
    return group
