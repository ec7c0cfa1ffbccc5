"""A redis-server of our own, to take away and give back in the middle of a test."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from callback_dialer.embedded_redis import find_redis_server, redis_answers


class RedisProcess:
    """A redis-server on a Unix socket in a test's folder. ``stop`` is an outage that loses
    the data (as a restarted server without persistence would); ``pause`` freezes the process,
    so clients time out, and ``resume`` brings it back with everything it held."""

    def __init__(self, folder: Path) -> None:
        self.socket = folder / "redis.sock"
        self.folder = folder
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self) -> None:
        binary = find_redis_server()
        if binary is None:
            pytest.skip("no redis-server binary to start and stop")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                str(self.socket),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (self.socket.exists() and redis_answers(self.url, 0.2)):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None:
            self.resume()  # a frozen process would not die of SIGKILL any later than now
            self.process.kill()
            self.process.wait()
            self.process = None
        self.socket.unlink(missing_ok=True)
