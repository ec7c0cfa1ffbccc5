"""The FastAGI wire format, as Asterisk 22 speaks it (checked against a real 22.9.0: the
exchanges in tests/fixtures/agi_*.jsonl).

Asterisk connects, sends ``agi_<name>: <value>`` lines and one empty line, then waits for
commands; each command gets one answer line (``200 result=1``), or ``HANGUP`` when the caller
hung up meanwhile, then the answer. We only ever send ``SET VARIABLE`` (and ``VERBOSE``), so
a whole exchange is: read the request, set a few variables, close.

Why not panoramisk's ``fast_agi.Application``: on Python 3.11+ it cannot register a plain
function (``asyncio.coroutine`` is gone); its header reader spins for ever on a connection
that closes before the empty line (``read()`` returning ``b""`` never ends the loop), drops
any bytes after the empty line, and raises ``UnicodeDecodeError`` (uncaught, the socket left
open) on a caller name that is not UTF-8; ``parse_agi_result`` raises ``ValueError`` on the
empty line an early close gives; a failing route is logged with a traceback and the socket
closed without an answer, so the dialplan reads whatever variables were left over; nothing
bounds how long one exchange may take. This module has none of those: every fault is a
``AgiProtocolError`` with a one-line reason, and the server answers safely.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

MAX_HEADER_BYTES = 16 * 1024
MAX_HEADERS = 200
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_RESULT = re.compile(r"^(\d{3})[ -](.*)$")


class AgiProtocolError(Exception):
    """The other side broke the protocol or went away; the message says how, in one line."""


class AgiHangup(AgiProtocolError):
    """Asterisk said HANGUP: the caller is gone (the exchange may still be finished)."""


@dataclass(frozen=True, slots=True)
class AgiRequest:
    headers: dict[str, str]
    args: tuple[str, ...] = field(default_factory=tuple)

    @property
    def script(self) -> str:
        """``agi_network_script``: the path after host:port, without a query string."""
        return self.headers.get("agi_network_script", "").split("?", 1)[0].strip("/")

    @property
    def uniqueid(self) -> str:
        return self.headers.get("agi_uniqueid", "")

    @property
    def channel(self) -> str:
        return self.headers.get("agi_channel", "")

    @property
    def caller_id(self) -> str:
        return self.headers.get("agi_callerid", "")

    @property
    def language(self) -> str:
        return self.headers.get("agi_language", "")

    def arg(self, index: int) -> str:
        """The ``index``-th argument (1-based), "" when not given."""
        return self.args[index - 1] if 0 < index <= len(self.args) else ""


def parse_headers(lines: list[str]) -> AgiRequest:
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        name = name.strip()
        if not sep or not name.startswith("agi_"):
            raise AgiProtocolError(f"not an AGI header line: {line[:80]!r}")
        # "agi_arg_1: " (an empty argument) and "agi_arg_1:" are both an empty value.
        headers[name] = value[1:] if value.startswith(" ") else value
    if "agi_network_script" not in headers and "agi_request" not in headers:
        raise AgiProtocolError("no agi_network_script or agi_request header")
    if "agi_network_script" not in headers:
        # agi_request is the whole URL: agi://host:port/script?query
        url = headers["agi_request"]
        path = url.split("://", 1)[-1].partition("/")[2]
        headers["agi_network_script"] = path
    args: list[str] = []
    n = 1
    while f"agi_arg_{n}" in headers:
        args.append(headers[f"agi_arg_{n}"])
        n += 1
    return AgiRequest(headers=headers, args=tuple(args))


async def read_request(reader: asyncio.StreamReader) -> AgiRequest:
    """The request's header block, up to its empty line."""
    lines: list[str] = []
    size = 0
    while True:
        raw = await reader.readline()
        if not raw:
            raise AgiProtocolError(f"connection closed after {len(lines)} header lines")
        if not raw.endswith(b"\n"):
            raise AgiProtocolError("header line without an end (connection closed mid-line)")
        size += len(raw)
        if size > MAX_HEADER_BYTES or len(lines) > MAX_HEADERS:
            raise AgiProtocolError(f"header block larger than {MAX_HEADER_BYTES} bytes")
        # A caller name may be in any encoding: it must not stop the exchange.
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line == "":
            if not lines:
                continue  # stray empty line before the block
            return parse_headers(lines)
        lines.append(line)


def quote(value: str) -> str:
    """An AGI command argument: in double quotes, with ``\\`` and ``"`` escaped."""
    if "\n" in value or "\r" in value or "\x00" in value:
        raise ValueError("an AGI argument cannot hold a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def set_variable(name: str, value: str) -> bytes:
    if not _VAR_NAME.match(name):
        raise ValueError(f"not a channel variable name: {name!r}")
    return f"SET VARIABLE {name} {quote(value)}\n".encode()


@dataclass(frozen=True, slots=True)
class AgiResult:
    code: int
    result: str
    rest: str

    @property
    def ok(self) -> bool:
        return self.code == 200 and self.result != "-1"


def parse_result(line: str) -> AgiResult:
    """``200 result=1``, ``200 result=0 (timeout)``, ``510 Invalid or unknown command``,
    ``520-Invalid command syntax...`` (the first line of a usage text)."""
    m = _RESULT.match(line)
    if not m:
        raise AgiProtocolError(f"not an AGI result line: {line[:80]!r}")
    code, rest = int(m.group(1)), m.group(2)
    result = ""
    if rest.startswith("result="):
        result, _, rest = rest[len("result=") :].partition(" ")
    return AgiResult(code=code, result=result, rest=rest.strip())


async def read_result(reader: asyncio.StreamReader) -> AgiResult:
    hung_up = False
    while True:
        raw = await reader.readline()
        if not raw:
            raise (
                AgiHangup("connection closed")
                if hung_up
                else AgiProtocolError("connection closed while waiting for a result")
            )
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line == "HANGUP":
            # The caller hung up; Asterisk still answers the command in flight.
            hung_up = True
            continue
        if line == "":
            continue
        result = parse_result(line)
        if result.code == 520 and line.startswith("520-"):
            # A usage text follows, ending with "520 End of proper usage.".
            while True:
                more = await reader.readline()
                if not more or more.startswith(b"520 "):
                    break
        return result
