"""A real Redis Cluster of three masters on loopback, for tests (docs/REDIS_CLUSTER.md).

Three `redis-server --cluster-enabled yes` processes, each with its own scratch
directory and a free port (and the port + 10000 its cluster bus uses), joined by
`redis-cli --cluster create`. `move_slot` reshards one slot by hand, key by key, the way
`redis-cli --cluster reshard` does it (SETSLOT IMPORTING/MIGRATING, MIGRATE, SETSLOT
NODE), with a hook between keys so a test can hold the slot half-migrated under traffic.
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from tests.support.processes import LogTail

MASTERS = 3
READY_TIMEOUT_SECONDS = 20.0
# Ports whose cluster bus port (+10000) is below 65536 and outside the ephemeral range.
PORT_RANGE = (20000, 29999)


def available() -> bool:
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose bus port (+10000) is free too."""
    while True:
        port = random.randint(*PORT_RANGE)
        if _free(port) and _free(port + 10000):
            return port


class RedisClusterNodes:
    """Three masters and the slots between them; `url` is a seed for `REDIS_URL`."""

    def __init__(self) -> None:
        self.ports: list[int] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        self.directory = Path(tempfile.mkdtemp(prefix="nzgw-redis-cluster-"))

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> RedisClusterNodes:
        for index in range(MASTERS):
            self._start_node(index)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._wait_until_ok()
        return self

    def add_replica(self, master: int) -> int:
        """Start one more node as a replica of the master at port `master`; its port,
        once it has the master's data."""
        self._start_node(len(self.ports))
        port = self.ports[-1]
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "add-node",
                f"127.0.0.1:{port}",
                f"127.0.0.1:{master}",
                "--cluster-slave",
                "--cluster-master-id",
                self.node_id(master),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self._wait_for(
            lambda: self.command(port, "INFO", "replication").get("master_link_status") == "up",
            "replica never in sync",
        )
        return port

    def kill(self, port: int) -> None:
        """SIGKILL the node: it answers nothing and refuses connections."""
        process = self.processes[self.ports.index(port)]
        process.kill()
        process.wait()

    def take_over(self, replica: int) -> None:
        """Promote `replica` at once (CLUSTER FAILOVER TAKEOVER, no vote), and wait
        until every live master sees it as the owner of its slots."""
        self.command(replica, "CLUSTER FAILOVER", "TAKEOVER")
        alive = [
            p for p, proc in zip(self.ports, self.processes, strict=True) if proc.poll() is None
        ]
        self._wait_for(
            lambda: all(
                any(int(entry[2][1]) == replica for entry in self.command(p, "CLUSTER SLOTS"))
                for p in alive
            ),
            "the replica was never promoted",
        )

    def _wait_for(self, condition: Callable[[], bool], failure: str) -> None:
        """The nodes announce nothing to a client: ask until `condition` holds."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(failure)
            time.sleep(0.05)

    def _start_node(self, index: int) -> None:
        port = cluster_port()
        directory = self.directory / str(port)
        directory.mkdir()
        options = {
            "port": str(port),
            "bind": "127.0.0.1",
            "cluster-enabled": "yes",
            "cluster-config-file": "nodes.conf",
            "cluster-node-timeout": "15000",
            "save": "",
            "appendonly": "no",
            "dir": str(directory),
        }
        process = subprocess.Popen(
            ["redis-server", *(part for name, v in options.items() for part in (f"--{name}", v))],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        tail = LogTail(directory / "redis.log")
        assert process.stdout is not None
        threading.Thread(target=tail.follow, args=(process.stdout,), daemon=True).start()
        self.ports.append(port)
        self.processes.append(process)
        ready = tail.wait_for(lambda line: "Ready to accept connections" in line, 10)
        if ready is None:
            raise RuntimeError(f"redis-server {index} did not start:\n{tail.text()}")

    def _wait_until_ok(self) -> None:
        """Until every node reports cluster_state:ok and the same slot map (the nodes
        gossip it; nothing announces the moment, so this asks)."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while True:
            states = [self.command(port, "CLUSTER INFO")["cluster_state"] for port in self.ports]
            maps = {str(sorted(self.command(port, "CLUSTER SLOTS"))) for port in self.ports}
            if set(states) == {"ok"} and len(maps) == 1:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"cluster not ready: {states}")
            time.sleep(0.1)

    def node(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

    def command(self, port: int, *args: str | int) -> Any:
        """A raw command to one node (redis-py's parsed reply)."""
        node = self.node(port)
        return node.execute_command(*args)  # type: ignore[no-untyped-call]  # untyped in redis-py

    def node_id(self, port: int) -> str:
        return str(self.command(port, "CLUSTER MYID"))

    def owner(self, slot: int) -> int:
        """The port of the master serving `slot`, as the first node sees it."""
        for start, end, master, *_ in self.command(self.ports[0], "CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise LookupError(f"slot {slot} is not served")

    def keys_at(self, port: int, slot: int) -> list[str]:
        return list(self.command(port, "CLUSTER GETKEYSINSLOT", slot, 1000))

    def move_slot(
        self,
        slot: int,
        target: int,
        between_keys: Callable[[int], None] | None = None,
        before_handover: Callable[[], None] | None = None,
    ) -> None:
        """Move `slot` to the master at port `target`, one key per MIGRATE. After the
        n-th key `between_keys(n)` runs while the slot is half-migrated; after the last
        one `before_handover()`, while the keys are all at the target and the slot still
        belongs to the source."""
        source = self.owner(slot)
        source_id, target_id = self.node_id(source), self.node_id(target)
        self.command(target, "CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        self.command(source, "CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        moved = 0
        while keys := self.command(source, "CLUSTER GETKEYSINSLOT", slot, 1):
            self.command(source, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
            moved += 1
            if between_keys is not None:
                between_keys(moved)
        if before_handover is not None:
            before_handover()
        for port in (target, source, *(p for p in self.ports if p not in (source, target))):
            self.command(port, "CLUSTER SETSLOT", slot, "NODE", target_id)

    def pause(self, port: int) -> None:
        """Freeze the node (SIGSTOP): it accepts connections and answers nothing."""
        self.processes[self.ports.index(port)].send_signal(signal.SIGSTOP)

    def resume(self, port: int) -> None:
        self.processes[self.ports.index(port)].send_signal(signal.SIGCONT)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
