"""One dialer in a process of its own, to be killed with SIGKILL or frozen with SIGSTOP.

    python tests/helpers/dialer_process.py CONFIG.json SPOOL SPEED REAL_AT CLOCK_AT

``CONFIG.json``: the config as ``Config.model_dump(mode="json")``. The dialer's clock runs
``SPEED`` times real time and read ``CLOCK_AT`` when the real time was ``REAL_AT``, so it
agrees with the test's ScaledClock (the simulated PBX's) to within a few milliseconds. It runs
until SIGTERM (an orderly stop), or until it is killed.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path


async def main(config_path: str, spool: str, speed: str, real_at: str, clock_at: str) -> int:
    from callback_dialer.app import build_dialer
    from callback_dialer.clock import ScaledClock
    from callback_dialer.config import parse_config

    config = parse_config(json.loads(Path(config_path).read_text("utf-8")), config_path)
    rate = float(speed)
    clock = ScaledClock(rate, start=float(clock_at) + (time.time() - float(real_at)) * rate)
    dialer = build_dialer(config, clock=clock, spool=Path(spool))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, dialer.request_stop)
    await dialer.start()
    try:
        await dialer.wait()
    finally:
        await dialer.stop()
    return dialer.exit_code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:6])))
