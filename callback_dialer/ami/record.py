"""``callback-dialer record OUT.jsonl``: live AMI traffic into a capture file.

The file has the format of ../shared/ami-captures (one message a line, the secret masked), so
``callback-dialer replay`` can play it back to tune the configuration on your own traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from ..config import Config
from ..logs import configure_logging, get_logger
from .capture import CaptureWriter
from .client import AmiClient
from .router import EventRouter

log = get_logger(__name__)


async def record(
    config: Config, out: Path, *, seconds: float | None = None, stop: asyncio.Event | None = None
) -> int:
    """Record until ``seconds`` pass or ``stop`` is set; returns messages written."""
    stop = stop or asyncio.Event()
    with out.open("w", encoding="utf-8") as handle:
        writer = CaptureWriter(handle)
        client = AmiClient(config.ami, EventRouter(), name="recorder")
        client.recorder = writer
        task = asyncio.create_task(client.run())
        try:
            if seconds is None:
                await stop.wait()
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), seconds)
        finally:
            await client.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return writer.count


async def record_command(config: Config, out: Path, *, seconds: float | None = None) -> int:
    configure_logging(config.logging)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.touch()
    except OSError as exc:
        print(f"error: cannot write {out}: {exc.strerror}", file=sys.stderr)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    log.info(
        "recording AMI traffic; Ctrl-C to stop",
        out=str(out),
        ami=f"{config.ami.host}:{config.ami.port}",
    )
    count = await record(config, out, seconds=seconds, stop=stop)
    print(f"{count} messages written to {out}", file=sys.stderr)
    return 0
