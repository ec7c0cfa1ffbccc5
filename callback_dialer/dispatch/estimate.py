"""How long until a caller is called back, for the "we will call you in about N minutes" SMS.

From what the dialer knows right now: callbacks ahead in the order agents will take them,
agents who serve the category (not paused), how long a callback keeps an agent busy, and the
calling hours. It is a promise to a customer, so it errs late rather than early.
"""

from __future__ import annotations

from ..clock import Clock
from ..config import Config
from ..detect.agents import AgentBook
from ..hours import CallingHours
from ..queue.models import Callback
from ..queue.store import CallbackQueue

# Ring, talk and wrap-up of one callback, when nothing better is known.
MINUTES_PER_CALLBACK = 5.0


async def estimate_minutes(
    callback: Callback,
    *,
    queue: CallbackQueue,
    agents: AgentBook,
    config: Config,
    clock: Clock,
    fallback: int = 60,
) -> int:
    serving = [
        v
        for v in agents.views()
        if callback.category in v.categories and v.state not in ("paused", "unavailable")
    ]
    waiting = await queue.waiting(limit=500)
    ahead = 0
    for other in waiting:
        if other.id == callback.id:
            break
        if any(other.category in v.categories for v in serving):
            ahead += 1
    per_agent = len(serving) or 1
    minutes = (ahead + 1) * MINUTES_PER_CALLBACK / per_agent if serving else float(fallback)
    now = clock.now()
    opening = CallingHours(config.hours).next_open(now)
    if opening is not None and opening > now:
        minutes += (opening - now) / 60
    # Rounded up to five minutes: "about 10 minutes", never an oddly precise promise.
    return max(5, int(-(-minutes // 5) * 5))
