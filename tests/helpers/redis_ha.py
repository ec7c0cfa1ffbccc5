"""Redis as it runs for high availability, on loopback, in a test's folder: a master with a
replica watched by three sentinels (``SentinelSet``), or a three-master cluster
(``ClusterSet``). Real ``redis-server``/``redis-sentinel`` processes (Debian's packages,
which scripts/test installs), on ports of their own, killed with SIGKILL to fail.

Sentinel's timing is tight so a failover takes two or three seconds: the master is "down"
after 1 s without an answer, and a failover that stalls is tried again after 3 s. (300 ms made
the sentinels flap between master and replica on a loaded 2-core machine, losing writes.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import redis

from .ports import free_cluster_ports, free_ports

SERVICE = "ha-test"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


def _binary(name: str) -> str:
    found = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else "")
    assert found, f"{name} is missing: scripts/test installs it (apt-get install redis-sentinel)"
    return found


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(redis.RedisError, OSError):
            if predicate():
                return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(0.05)


class _Processes:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: dict[int, subprocess.Popen] = {}

    def spawn(self, port: int, args: list[str]) -> None:
        log = (self.folder / f"{port}.log").open("w")
        self.processes[port] = subprocess.Popen(
            args, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT
        )
        _wait(lambda: self.client(port).ping(), 10, f"redis on port {port}")

    def client(self, port: int, **kwargs) -> redis.Redis:  # type: ignore[no-untyped-def]
        return redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1, **kwargs)

    def kill(self, port: int) -> None:
        process = self.processes.pop(port)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()

    def stop(self) -> None:
        for port in list(self.processes):
            self.kill(port)


class SentinelSet(_Processes):
    """A master, one replica and three sentinels watching them as ``SERVICE``."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        ports = free_ports(5)
        self.master_port, self.replica_port = ports[0], ports[1]
        self.sentinel_ports = ports[2:]

    @property
    def sentinels(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.sentinel_ports]

    def _server(self, port: int, *extra: str) -> None:
        data = self.folder / f"data-{port}"
        data.mkdir(exist_ok=True)
        self.spawn(
            port,
            [
                _binary("redis-server"),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(data),
                *extra,
            ],
        )

    def start(self) -> SentinelSet:
        self._server(self.master_port)
        self._server(self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port))
        _wait(
            lambda: (
                self.client(self.replica_port).info("replication")["master_link_status"] == "up"
            ),
            10,
            "the replica in sync",
        )
        for port in self.sentinel_ports:
            conf = self.folder / f"sentinel-{port}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.folder}\n"
                f"sentinel monitor {SERVICE} 127.0.0.1 {self.master_port} 2\n"
                f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {SERVICE} 1\n"
            )
            self.spawn(port, [_binary("redis-sentinel"), str(conf)])
        # Every sentinel knows the replica and the other sentinels: a failover can happen.
        for port in self.sentinel_ports:
            _wait(
                lambda p=port: (
                    int(self.client(p).sentinel_master(SERVICE)["num-slaves"]) == 1
                    and int(self.client(p).sentinel_master(SERVICE)["num-other-sentinels"]) == 2
                ),
                15,
                f"sentinel {port} seeing the replica and its peers",
            )
        return self

    def master_now(self) -> int:
        """The port of the master as the sentinels name it now."""
        _, port = self.client(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(SERVICE)
        return int(port)

    def kill_master(self) -> int:
        """SIGKILL the master; returns the port that was killed."""
        port = self.master_now()
        self.kill(port)
        return port

    def wait_failover(self, old: int, timeout: float = 15) -> int:
        """Until the sentinels name a new master and it answers as one; its port."""
        _wait(
            lambda: (
                self.master_now() != old
                and self.client(self.master_now()).info("replication")["role"] == "master"
            ),
            timeout,
            "the failover",
        )
        return self.master_now()

    def restart_as_replica(self, port: int) -> None:
        """The failed master comes back (empty, as after a disk loss): the sentinels make it
        a replica of the new master."""
        self._server(port, "--replicaof", "127.0.0.1", str(self.master_now()))


class ClusterSet(_Processes):
    """Three masters, no replicas, all 16384 slots covered."""

    def __init__(self, folder: Path) -> None:
        super().__init__(folder)
        self.ports = free_cluster_ports(3)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> ClusterSet:
        for port in self.ports:
            data = self.folder / f"node-{port}"
            data.mkdir(exist_ok=True)
            self.spawn(
                port,
                [
                    _binary("redis-server"),
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(data),
                ],
            )
        done = subprocess.run(
            [_binary("redis-cli"), "--cluster", "create"]
            + [f"127.0.0.1:{p}" for p in self.ports]
            + ["--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        for port in self.ports:
            _wait(
                lambda p=port: (
                    self.client(p).execute_command("CLUSTER INFO")["cluster_state"] == "ok"
                ),
                15,
                f"cluster node {port} ok",
            )
        return self


class FailoverDrill:
    """``kill`` SIGKILLs the master at once; in the background the sentinels' failover is
    awaited and the old master comes back as a replica of the new one (as an operator would
    bring it back), so writes that wait for a replica have one again."""

    def __init__(self, sentinels: SentinelSet) -> None:
        self.sentinels = sentinels
        self.old_master: int | None = None
        self.new_master: int | None = None
        self.failover_seconds = 0.0
        self._thread: threading.Thread | None = None

    def kill(self) -> None:
        self.old_master = self.sentinels.kill_master()
        started = time.monotonic()

        def recover() -> None:
            assert self.old_master is not None
            self.new_master = self.sentinels.wait_failover(self.old_master)
            self.failover_seconds = time.monotonic() - started
            self.sentinels.restart_as_replica(self.old_master)

        self._thread = threading.Thread(target=recover, daemon=True)
        self._thread.start()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=30)
