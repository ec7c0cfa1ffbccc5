"""The simulated PBX on an AMI socket: its events to every client, its answers to their actions.

``PbxAmi`` puts a SimPbx behind an ``AmiServer`` (which does the greeting, login, logoff and
the framing): events are broadcast as they happen, and Originate, QueueStatus, QueueSummary,
CoreShowChannels, Status (with Variables), Hangup, Ping, QueuePause, QueueAdd and QueueRemove
are answered from the PBX's state the way Asterisk 22 answers them.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable

import structlog

from callback_dialer.ami.asterisk import DeviceState, HangupCause, OriginateReason
from callback_dialer.ami.frames import AmiMessage, encode_message

from . import wire
from .amiserver import AmiServer, AmiSession, response
from .channels import Channel
from .originate import OriginateRequest, Origination
from .pbx import SimPbx

log = structlog.get_logger(__name__)

Tap = Callable[[str, bytes], None]


class PbxAmi:
    def __init__(self, pbx: SimPbx, server: AmiServer) -> None:
        self.pbx = pbx
        self.server = server
        self.taps: list[Tap] = []  # ("in"/"out", bytes): recorders
        pbx.listeners.append(self._broadcast)
        server.action_taps.append(self._action_seen)
        for name, handler in (
            ("originate", self.originate),
            ("queuestatus", self.queue_status),
            ("queuesummary", self.queue_summary),
            ("coreshowchannels", self.core_show_channels),
            ("status", self.status),
            ("hangup", self.hangup),
            ("ping", self.ping),
            ("queuepause", self.queue_pause),
            ("queueadd", self.queue_add),
            ("queueremove", self.queue_remove),
            ("queuelog", self.queue_log),
            ("dbget", self.db_get),
            ("dbgettree", self.db_get_tree),
            ("dbput", self.db_put),
            ("dbdel", self.db_del),
            ("dbdeltree", self.db_del_tree),
        ):
            server.on_action(name, self._guarded(handler))

    @classmethod
    async def serve(
        cls,
        pbx: SimPbx,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        username: str = "dialer",
        secret: str = "secret",
    ) -> PbxAmi:
        """Start an AMI server for ``pbx`` (port 0: any free port, see ``.port``)."""
        server = AmiServer(username=username, secret=secret, host=host, port=port)
        await server.start()
        return cls(pbx, server)

    @property
    def port(self) -> int:
        return self.server.port

    async def stop(self) -> None:
        await self.server.stop()

    async def cut(self, down_for: float = 0.0) -> None:
        """The AMI link cut (a network fault, an AMI-only restart): every session dropped, new
        ones refused for ``down_for`` real seconds; the calls go on."""
        await self.server.stop_listening()
        if down_for > 0:
            await asyncio.sleep(down_for)
        await self.server.start()

    async def restart(self, down_for: float = 1.0) -> None:
        """``core restart now`` as Asterisk 22.9.0 does it (tests/fixtures/restart_mid_talk
        .jsonl): every channel hung up first, then ``Shutdown: Cleanly`` / ``Restart: True``,
        then the link closes; AMI is back ``down_for`` real seconds later. Call it on one of a
        PBX's AMI servers; the others only lose their link (``cut``)."""
        for ch in list(self.pbx.channels.values()):
            self.pbx.hangup_channel(ch, HangupCause.NORMAL_CLEARING)
        self.pbx.emit(
            [
                ("Event", "Shutdown"),
                ("Privilege", "system,all"),
                ("Shutdown", "Cleanly"),
                ("Restart", "True"),
            ]
        )
        await asyncio.sleep(0.05)  # the events reach the sockets before they close
        await self.cut(down_for)

    # ------------------------------------------------------------------ plumbing

    def _guarded(
        self,
        handler: Callable[[AmiSession, AmiMessage], None],
    ) -> Callable[[AmiSession, AmiMessage], None]:
        # AmiServer drops a connection whose handler raises; a fault of ours must not look
        # like Asterisk hanging up on the client.
        def run(session: AmiSession, message: AmiMessage) -> None:
            try:
                handler(session, message)
            except Exception:
                log.exception(
                    "simulated PBX failed to answer an action", action=message.get("Action")
                )
                self._reply(session, message.get("ActionID"), "Internal error", "Error")

        return run

    def _broadcast(self, data: bytes) -> None:
        self.server.broadcast_nowait(data)

    def _action_seen(self, session_index: int, message: AmiMessage) -> None:
        if self.taps:
            data = encode_message(message.pairs())
            for tap in self.taps:
                tap("out", data)

    def _write(self, session: AmiSession, data: bytes) -> None:
        session.write(data)
        for tap in self.taps:
            tap("in", data)

    def _reply(
        self,
        session: AmiSession,
        action_id: str,
        message: str,
        status: str = "Success",
        **extra: str,
    ) -> None:
        self._write(session, response(action_id, message, status, **extra))

    # ------------------------------------------------------------------ actions

    def originate(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        channel = message.get("Channel")
        if not channel:
            self._reply(session, action_id, "Channel not specified", "Error")
            return
        if "/" not in channel:
            self._reply(session, action_id, "Invalid channel", "Error")
            return
        if not message.get("Exten") and not message.get("Application"):
            self._reply(session, action_id, "Exten not specified", "Error")
            return
        req = OriginateRequest.from_message(message)
        reply = None
        if req.is_async:
            self._reply(session, action_id, "Originate successfully queued")
        else:

            def reply(pairs: list[tuple[str, str]]) -> None:
                self._write(session, encode_message(pairs))

        origination = Origination(self.pbx, req, reply)
        if req.channel_id and req.channel_id in self.pbx.channels:
            # Asterisk refuses to create a channel whose Uniqueid is taken.
            self.pbx.scheduler.run(
                lambda: origination.respond(OriginateReason.FAILED, channel=None)
            )
            return
        self.pbx.scheduler.run(origination.start)

    def _list(
        self, session: AmiSession, action: str, action_id: str, items: list[list[tuple[str, str]]]
    ) -> None:
        self._write(session, self.server.list_response(action, action_id, items))

    def queue_log(self, session: AmiSession, message: AmiMessage) -> None:
        """app_queue's manager_queue_log_custom: Queue and Event required, the rest as given."""
        action_id = message.get("ActionID")
        queue, event = message.get("Queue"), message.get("Event")
        if not queue or not event:
            self._reply(session, action_id, "Need 'Queue' and 'Event' parameters.", "Error")
            return
        self.pbx.log_queue(
            queue,
            message.get("UniqueId") or "NONE",
            message.get("Interface"),
            event,
            message.get("Message"),
        )
        self._reply(session, action_id, "Event added successfully")

    def queue_status(self, session: AmiSession, message: AmiMessage) -> None:
        wanted_queue = message.get("Queue")
        wanted_member = message.get("Member")
        p = self.pbx
        now = p.clock.now()
        items: list[list[tuple[str, str]]] = []
        for name in p.queue_order:
            queue = p.queues[name]
            if wanted_queue and name != wanted_queue:
                continue
            done = queue.completed
            total = done + queue.abandoned
            items.append(
                wire.queue_params(
                    queue=name,
                    max_callers=queue.spec.max_callers,
                    strategy=queue.spec.strategy,
                    calls=len(queue.entries),
                    holdtime=_avg(queue.hold_total, done),
                    talktime=_avg(queue.talk_total, done),
                    completed=done,
                    abandoned=queue.abandoned,
                    service_level=0,
                    service_level_perf=100.0 if done else 0.0,
                    service_level_perf2=100.0 * done / total if total else 0.0,
                    weight=queue.spec.weight,
                )
            )
            for member in reversed(queue.members):
                if wanted_member and member.agent.interface != wanted_member:
                    continue
                items.append(wire.queue_member_item(member.view()))
            for position, entry in enumerate(queue.entries, 1):
                items.append(
                    wire.queue_entry_item(
                        entry.call.channel, name, position, int(now - entry.joined_at)
                    )
                )
        self._list(session, "queuestatus", message.get("ActionID"), items)

    def queue_summary(self, session: AmiSession, message: AmiMessage) -> None:
        wanted = message.get("Queue")
        p = self.pbx
        now = p.clock.now()
        items = []
        for name in p.queue_order:
            queue = p.queues[name]
            if wanted and name != wanted:
                continue
            available = sum(
                1 for m in queue.members if not m.paused and m.agent.status == DeviceState.NOT_INUSE
            )
            longest = max((int(now - e.joined_at) for e in queue.entries), default=0)
            items.append(
                wire.queue_summary_item(
                    queue=name,
                    logged_in=len(queue.members),
                    available=available,
                    callers=len(queue.entries),
                    hold_time=_avg(queue.hold_total, queue.completed),
                    talk_time=_avg(queue.talk_total, queue.completed),
                    longest_hold_time=longest,
                )
            )
        self._list(session, "queuesummary", message.get("ActionID"), items)

    def core_show_channels(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        now = self.pbx.clock.now()
        start = encode_message(
            [
                ("Response", "Success"),
                ("ActionID", action_id),
                ("EventList", "start"),
                ("Message", "Channels will follow"),
            ]
        )
        items = [
            encode_message(
                wire.core_show_channel(
                    ch,
                    action_id,
                    ch.bridge.uniqueid if ch.bridge else "",
                    ch.application,
                    ch.app_data,
                    wire.hms(now - ch.created_at),
                )
            )
            for ch in self.pbx.channels.values()
        ]
        tail = encode_message(
            [
                ("Event", "CoreShowChannelsComplete"),
                ("ActionID", action_id),
                ("EventList", "Complete"),
                ("ListItems", str(len(items))),
            ]
        )
        self._write(session, start + b"".join(items) + tail)

    def status(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        name = message.get("Channel")
        wanted = [v.strip() for v in message.get("Variables").split(",") if v.strip()]
        channels: list[Channel] = list(self.pbx.channels.values())
        if name:
            channels = [ch for ch in channels if ch.name == name]
            if not channels:
                self._reply(session, action_id, "No such channel", "Error")
                return
        now = self.pbx.clock.now()
        items = [
            wire.status_item(
                ch,
                channel_type=ch.tech,
                dnid=ch.dnid,
                bridge_id=ch.bridge.uniqueid if ch.bridge else "",
                application=ch.application,
                data=ch.app_data,
                seconds=int(now - ch.created_at),
                variables=[(v, ch.variables.get(v, "")) for v in wanted],
            )
            for ch in channels
        ]
        self._list(session, "status", action_id, items)

    def hangup(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        target = message.get("Channel")
        try:
            cause = int(message.get("Cause") or HangupCause.NORMAL_CLEARING)
        except ValueError:
            cause = HangupCause.NORMAL_CLEARING
        if target.startswith("/") and target.endswith("/") and len(target) > 1:
            try:
                pattern = re.compile(target[1:-1])
            except re.error:
                self._reply(session, action_id, "Invalid regex", "Error")
                return
            matches = [ch for ch in self.pbx.channels.values() if pattern.search(ch.name)]
        else:
            matches = [ch for ch in self.pbx.channels.values() if ch.name == target]
        if not matches:
            self._reply(session, action_id, "No such channel", "Error")
            return
        self._reply(session, action_id, "Channel Hungup")
        for ch in matches:
            if not ch.hung_up:
                self.pbx.hangup_channel(ch, cause)

    def ping(self, session: AmiSession, message: AmiMessage) -> None:
        self._reply(
            session,
            message.get("ActionID"),
            "",
            Ping="Pong",
            Timestamp=f"{self.pbx.clock.now():.6f}",
        )

    def queue_pause(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        paused = message.get("Paused", "true").lower() in ("true", "yes", "1", "on")
        ok = self.pbx.scheduler.run(
            self.pbx.pause,
            message.get("Interface"),
            paused,
            message.get("Reason"),
            message.get("Queue") or None,
        )
        if not ok:
            self._reply(session, action_id, "Interface not found", "Error")
            return
        text = "paused" if paused else "unpaused"
        self._reply(session, action_id, f"Interface {text} successfully")

    def queue_add(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        queue = message.get("Queue")
        if queue not in self.pbx.queues:
            self._reply(
                session, action_id, "Unable to add interface to queue: No such queue", "Error"
            )
            return
        paused = message.get("Paused", "false").lower() in ("true", "yes", "1", "on")
        ok = self.pbx.scheduler.run(
            functools.partial(
                self.pbx.add_member,
                message.get("Interface"),
                queue,
                paused=paused,
                reason=message.get("Reason"),
            )
        )
        if not ok:
            self._reply(session, action_id, "Unable to add interface: Already there", "Error")
            return
        self._reply(session, action_id, "Added interface to queue")

    def queue_remove(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        ok = self.pbx.scheduler.run(
            self.pbx.remove_member, message.get("Interface"), message.get("Queue")
        )
        if not ok:
            self._reply(session, action_id, "Unable to remove interface: Not there", "Error")
            return
        self._reply(session, action_id, "Removed interface from queue")

    # ------------------------------------------------------------------ AstDB (main/db.c)
    # The replies of Asterisk 20.20.1 and 22.9.0 (db.c is the same in both), messages to the
    # full stop: a list for the reads (items Event, Key, Val, then ActionID), one response
    # for the writes, and for a version before DBGetTree (16.28, 18.14, 19.6) manager.c's
    # answer to an action it does not know.

    def db_get(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        family, key = message.get("Family"), message.get("Key")
        if not family:
            self._reply(session, action_id, "No family specified.", "Error")
            return
        if not key:
            self._reply(session, action_id, "No key specified.", "Error")
            return
        value = self.pbx.astdb.get(family, key)
        if value is None:
            self._reply(session, action_id, "Database entry not found", "Error")
            return
        item = [("Event", "DBGetResponse"), ("Family", family), ("Key", key), ("Val", value)]
        self._list(session, "dbget", action_id, [item])

    def db_get_tree(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        if not self.pbx.spec.has_dbgettree:
            self._reply(
                session,
                action_id,
                "Invalid/unknown command: DBGetTree. "
                "Use Action: ListCommands to show available commands.",
                "Error",
            )
            return
        rows = self.pbx.astdb.tree(message.get("Family"), message.get("Key"))
        items = [[("Event", "DBGetTreeResponse"), ("Key", k), ("Val", v)] for k, v in rows]
        self._list(session, "dbgettree", action_id, items)

    def db_put(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        family, key = message.get("Family"), message.get("Key")
        if not family:
            self._reply(session, action_id, "No family specified", "Error")
        elif not key:
            self._reply(session, action_id, "No key specified", "Error")
        else:
            self.pbx.astdb.put(family, key, message.get("Val"))
            self._reply(session, action_id, "Updated database successfully")

    def db_del(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        family, key = message.get("Family"), message.get("Key")
        if not family:
            self._reply(session, action_id, "No family specified.", "Error")
        elif not key:
            self._reply(session, action_id, "No key specified.", "Error")
        elif not self.pbx.astdb.delete(family, key):
            self._reply(session, action_id, "Database entry could not be deleted", "Error")
        else:
            self._reply(session, action_id, "Key deleted successfully")

    def db_del_tree(self, session: AmiSession, message: AmiMessage) -> None:
        action_id = message.get("ActionID")
        family = message.get("Family")
        if not family:
            self._reply(session, action_id, "No family specified.", "Error")
        elif not self.pbx.astdb.delete_tree(family, message.get("Key")):
            self._reply(session, action_id, "Database entry not found", "Error")
        else:
            self._reply(session, action_id, "Key tree deleted successfully")


def _avg(total: float, count: int) -> int:
    return int(total / count) if count else 0
