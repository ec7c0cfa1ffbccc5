"""After every (re)connect: learn again what changed while nobody was listening.

Events sent while the link was down are gone. Asterisk's own lists tell the present:
QueueStatus rebuilds every agent (and drops members who left) and the live queue (its
QueueEntry items: callers who joined or left unseen); CoreShowChannels tells which
calls are still up, so the tracker can settle the ones that ended unseen.
"""

from __future__ import annotations

from ..ami.client import AmiClient
from ..clock import Clock
from ..logs import get_logger
from .pipeline import Pipeline

log = get_logger(__name__)


async def resync_agents(ami: AmiClient, pipeline: Pipeline) -> int:
    pipeline.agents.begin_resync()
    pipeline.live.begin_resync()
    # The QueueMember and QueueEntry events reach the agent book and the live queue through
    # the router as they arrive.
    items = await ami.send_list({"Action": "QueueStatus"})
    members = sum(1 for m in items if m.event == "QueueMember")
    entries = sum(1 for m in items if m.event == "QueueEntry")
    log.info(
        "agents and live queue resynchronised",
        members=members,
        agents=len(pipeline.agents.agents),
        live_callers=entries,
    )
    return members


async def resync_calls(ami: AmiClient, pipeline: Pipeline, clock: Clock) -> int:
    known_before = pipeline.tracker.call_ids()
    items = await ami.send_list({"Action": "CoreShowChannels"})
    channels = [m.fields for m in items if m.event == "CoreShowChannel"]
    pipeline.tracker.reconcile(channels, clock.now(), known_before)
    return len(channels)
