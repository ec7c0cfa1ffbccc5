"""The Asterisk side of FastAGI, as Asterisk 22.9.0 speaks it (the dialer's
tests/fixtures/agi_offer_*.jsonl): what the generated dialplan's ``AGI(agi://host:port/script,
args)`` does, so the simulator can play the callback offer against the dialer's server.

Asterisk connects, sends its ``agi_*`` header block and an empty line, answers each command
with ``200 result=1`` (we only see ``SET VARIABLE``; anything else gets ``510``) and is done
when the server closes. ``AGISTATUS`` is ``SUCCESS`` then, ``FAILURE`` when the connection
could not be made or broke: the dialplan's plain branch. Written here, not imported from the
product: the simulator speaks the wire, it does not share the dialer's code.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field

_SET = re.compile(r'^SET VARIABLE ([A-Za-z_][A-Za-z0-9_]*) "((?:[^"\\]|\\.)*)"$')


@dataclass
class AgiOutcome:
    status: str  # SUCCESS | FAILURE (AGISTATUS)
    variables: dict[str, str] = field(default_factory=dict)


def header_block(
    script: str,
    args: tuple[str, ...],
    *,
    address: str,
    channel: str,
    uniqueid: str,
    caller_id: str,
    caller_name: str,
    context: str,
    language: str = "en",
) -> bytes:
    lines = [
        ("agi_network", "yes"),
        ("agi_network_script", script),
        ("agi_request", f"agi://{address}/{script}"),
        ("agi_channel", channel),
        ("agi_language", language),
        ("agi_type", channel.split("/", 1)[0]),
        ("agi_uniqueid", uniqueid),
        ("agi_version", "22.9.0"),
        ("agi_callerid", caller_id or "unknown"),
        ("agi_calleridname", caller_name or "unknown"),
        ("agi_callingpres", "0"),
        ("agi_callingani2", "0"),
        ("agi_callington", "0"),
        ("agi_callingtns", "0"),
        ("agi_dnid", "unknown"),
        ("agi_rdnis", "unknown"),
        ("agi_context", context),
        ("agi_extension", "s"),
        ("agi_priority", "2"),
        ("agi_enhanced", "0.0"),
        ("agi_accountcode", ""),
        ("agi_threadid", "140000000000000"),
    ]
    lines += [(f"agi_arg_{i}", a) for i, a in enumerate(args, 1)]
    return "".join(f"{k}: {v}\n" for k, v in lines).encode() + b"\n"


async def run_agi(address: str, block: bytes, *, timeout: float = 5.0) -> AgiOutcome:
    host, _, port = address.rpartition(":")
    try:
        return await asyncio.wait_for(_exchange(host, int(port), block), timeout)
    except (OSError, TimeoutError, ValueError):
        return AgiOutcome("FAILURE")


async def _exchange(host: str, port: int, block: bytes) -> AgiOutcome:
    reader, writer = await asyncio.open_connection(host, port)
    out = AgiOutcome("SUCCESS")
    try:
        writer.write(block)
        await writer.drain()
        while line := await reader.readline():
            text = line.decode("utf-8", errors="replace").rstrip("\n")
            m = _SET.match(text)
            if m:
                out.variables[m.group(1)] = re.sub(r"\\(.)", r"\1", m.group(2))
                writer.write(b"200 result=1\n")
            else:
                writer.write(b"510 Invalid or unknown command\n")
            await writer.drain()
    finally:
        writer.close()
    return out
