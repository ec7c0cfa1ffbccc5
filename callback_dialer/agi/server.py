"""The FastAGI server, in the dialer's own asyncio loop.

A script is a plain function from the request to the channel variables to set; it answers from
memory (never awaits Redis), so a caller never waits on the queue. Each script also names its
safe answer, which the server sends when the script fails or the request is bad: the dialplan
then takes its plain branch ("we will call you back" on the caller ID), and the log has one
line saying why. Asterisk never sees a traceback, and an exchange that takes longer than
``timeout`` (a stuck peer) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..logs import get_logger
from .protocol import AgiProtocolError, AgiRequest, read_request, read_result, set_variable

log = get_logger(__name__)

# Set on every answer: "ok", or why the dialplan should take its plain branch.
STATUS_VAR = "CALLBACK_AGI_STATUS"


@dataclass(frozen=True, slots=True)
class AgiScript:
    handle: Callable[[AgiRequest], Mapping[str, str]]
    safe: Mapping[str, str]  # the answer when anything goes wrong


class FastAgiServer:
    def __init__(
        self,
        scripts: Mapping[str, AgiScript],
        *,
        host: str = "127.0.0.1",
        port: int = 4573,
        timeout: float = 5.0,
    ) -> None:
        self.scripts = dict(scripts)
        self.host = host
        self.port = port
        self.timeout = timeout
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.counters: dict[str, int] = {}

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the real port when started with port 0)."""
        if self._server is not None and self._server.sockets:
            host, port = self._server.sockets[0].getsockname()[:2]
            return host, port
        return self.host, self.port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, self.host, self.port)
        host, port = self.address
        log.info("FastAGI server listening", address=f"agi://{host}:{port}")

    async def run(self) -> None:
        if self._server is None:
            await self.start()
        assert self._server is not None
        await self._server.serve_forever()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        for task in list(self._connections):
            task.cancel()

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._connections.add(task)
        peer = writer.get_extra_info("peername")
        try:
            await asyncio.wait_for(self._exchange(reader, writer), self.timeout)
        except TimeoutError:
            self._count("timeout")
            log.warning("FastAGI exchange too slow; dropped", peer=str(peer), after=self.timeout)
        except AgiProtocolError as exc:
            self._count("protocol_error")
            log.warning("FastAGI exchange broken", peer=str(peer), problem=str(exc))
        except (ConnectionError, OSError) as exc:
            self._count("connection_error")
            log.warning("FastAGI connection lost", peer=str(peer), problem=str(exc))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            if task is not None:
                self._connections.discard(task)

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        script = self.scripts.get(request.script)
        if script is None:
            self._count("unknown_script")
            log.warning(
                "FastAGI request for an unknown script",
                script=request.script[:60],
                known=",".join(sorted(self.scripts)),
                channel=request.channel,
            )
            await self._answer(reader, writer, {STATUS_VAR: "unknown_script"})
            return
        try:
            answer = dict(script.handle(request))
            answer.setdefault(STATUS_VAR, "ok")
            self._count("ok")
        except Exception as exc:
            self._count("script_error")
            log.error(
                "FastAGI script failed; safe answer sent",
                script=request.script,
                channel=request.channel,
                error=f"{type(exc).__name__}: {exc}",
            )
            answer = {**script.safe, STATUS_VAR: "error"}
        await self._answer(reader, writer, answer)

    async def _answer(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        variables: Mapping[str, str],
    ) -> None:
        # The status last: the dialplan trusts the other variables only once it reads "ok".
        items = [(k, v) for k, v in variables.items() if k != STATUS_VAR]
        items.append((STATUS_VAR, variables.get(STATUS_VAR, "ok")))
        for name, value in items:
            writer.write(set_variable(name, value))
            await writer.drain()
            result = await read_result(reader)
            if not result.ok:
                raise AgiProtocolError(
                    f"SET VARIABLE {name} answered {result.code} {result.result} {result.rest}"
                )
