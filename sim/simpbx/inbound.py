"""An inbound call through the dialplan of ../shared/ami-captures/asterisk/extensions.conf.

``[ivr-in]`` answers, sets CALLBACK_CATEGORY=unknown and waits 6 s for a key: 1 new_connection
-> Queue(sales), 2 support and 3 billing -> Queue(support), nothing -> ``t``: other ->
Queue(support), 7 -> sales for 4 s then support. When Queue() gives up (timeout),
``[after-queue]`` raises ``UserEvent: CallbackRequested`` with ``Reason: TIMEOUT`` while the
caller is still on the line, waits 1 s and hangs up; ``*`` pressed in a queue leaves through
``[queue-exit]`` with ``Reason: KEYPRESS``. A caller who hangs up produces the captures'
abandon sequence; a served caller is hung up when the agent hangs up (Queue() without ``c``).

Ringing a member and the talk that follows are app_queue's (appqueue.py): it drives this call
only through the steps at the end of the class (``QueuedCall`` in switch.py).

Every event sequence below is the captures' (abandon_in_queue, answered_by_agent,
hangup_in_ivr, keypress_callback, queue_timeout, busy_hour), in their order.

With ``PbxSpec.agi_address`` the call plays the generated dialplan's callback offer instead
(the dialer's ``callback-door`` and ``callback-offer`` contexts, recorded in the dialer's
tests/fixtures/offer_*.jsonl): the door check before the first queue, the offer on ``*`` and
on a queue timeout, each step a real FastAGI exchange with the dialer (agi.py), the caller's
keys from ``CallerScript.offer``, and after a taken offer the ``CallbackRequested`` user event
with the ``Number`` the dialer registered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from callback_dialer.ami.asterisk import (
    CATEGORY_VAR,
    SKIP_VAR,
    ChannelState,
    DeviceState,
    HangupCause,
)

from . import wire
from .agi import AgiOutcome, header_block, run_agi
from .appqueue import poll
from .astdb import ms
from .channels import Channel
from .model import CallerScript, IvrOption
from .observe import (
    CallbackAsked,
    CallbackOffered,
    CallChose,
    CallEnded,
    CallQueued,
    CallStarted,
)
from .scheduler import Timer
from .switch import QueueEntry, QueueRing, Switch


class InboundCall:
    def __init__(
        self,
        pbx: Switch,
        number: str,
        script: CallerScript,
        *,
        tag: str = "",
        internal: bool = False,
    ) -> None:
        self.pbx = pbx
        self.number = number
        self.script = script
        self.tag = tag
        self.internal = internal
        self.phase = "new"  # ivr | queue | talk | goodbye | done
        self.channel: Channel
        self.option: IvrOption | None = None
        self.key = ""
        self.step = 0
        self.entry: QueueEntry | None = None
        self.first_join: float | None = None
        self.connection: QueueRing | None = None  # the member talking to the caller
        self.outcome = ""
        self._timers: list[Timer] = []
        self._agi_tasks: set[asyncio.Task[None]] = set()
        # The offer in progress: why (DOOR, KEYPRESS, TIMEOUT), the keys left, the number
        # typed and accepted (E.164), tries at typing, choices not made.
        self.offer_why = ""
        self._keys: list[str] = []
        self.offer_target = ""
        self._tries = 0
        self._asks = 0
        # What the shipped dialplan's record of this call holds (astdb.py).
        self.started_at = 0.0
        self.queue_name = ""
        self.request = ""
        self.answered_at: float | None = None
        self.answered_by = ""

    @property
    def call_id(self) -> str:
        return self.channel.uniqueid

    def owns(self, ch: Channel) -> bool:
        if ch is self.channel:
            return True
        ring = self.connection or (self.entry.ring if self.entry else None)
        return ring is not None and ch in ring.channels()

    def _later(self, delay: float, fn: Callable[..., object], *args: object) -> None:
        # The caller's own timers: all cancelled when the call ends.
        self._timers.append(self.pbx.scheduler.call_later(delay, fn, *args))

    # ------------------------------------------------------------------ the IVR

    def start(self) -> None:
        p, s = self.pbx, self.script
        ivr = p.spec.ivr
        if self.internal:
            now = p.clock.now()
            uid = p.ids.uniqueid(now)
            name = f"PJSIP/{self.number}-{p.ids.local_suffix()}"
            ch = p.new_channel(
                name,
                uid,
                uid,
                p.spec.internal_context,
                p.spec.ivr_extension,
                state=ChannelState.RING,
                tech="PJSIP",
            )
        else:
            ch = p.trunk_channel("", outbound=False)
        self.channel = ch
        self.started_at = p.clock.now()
        ch.caller_num, ch.caller_name = self.number, s.name
        ch.dnid = p.spec.ivr_extension
        p.calls[ch.uniqueid] = self
        p.emit(wire.newchannel(ch))
        if self.internal:
            p.emit(wire.newexten(ch, "Goto", f"{ivr.context},s,1"))
            ch.at(ivr.context, "s", 1)
        p.emit(wire.newexten(ch, "NoOp", f"inbound from {self.number}"))
        ch.priority = 2
        p.emit(wire.newexten(ch, "Answer", ""))
        ch.state = ChannelState.UP
        p.emit(wire.newstate(ch))
        self._device(DeviceState.INUSE)
        self.phase = "ivr"
        p.notify(
            CallStarted(
                call_id=ch.uniqueid,
                number=self.number,
                tag=self.tag,
                internal=self.internal,
                at=p.clock.now(),
            )
        )
        self._later(ivr.prompt_delay, self._menu)

    def _device(self, state: DeviceState) -> None:
        if self.internal:
            self.pbx.emit(wire.device_state_change(f"PJSIP/{self.number}", state))
        else:
            self.pbx.trunk_state()

    def _set_var(self, name: str, value: str) -> None:
        self.channel.variables[name] = value
        self.pbx.emit(wire.varset(self.channel, name, value))

    def _menu(self) -> None:
        if self.phase != "ivr":
            return
        p, ch, s, ivr = self.pbx, self.channel, self.script, self.pbx.spec.ivr
        ch.priority = 3
        p.emit(wire.newexten(ch, "Set", f"{CATEGORY_VAR}=unknown"))
        self._set_var(CATEGORY_VAR, "unknown")
        ch.priority = 4
        p.emit(wire.newexten(ch, "WaitExten", wire.app_seconds(ivr.wait_exten)))
        if s.choice == "hangup":
            self._later(s.choice_after, self.hangup_requested, ch, HangupCause.NORMAL_CLEARING)
        elif s.choice is not None and s.choice_after < ivr.wait_exten:
            self._later(s.choice_after, self._choose, s.choice)
        else:
            self._later(ivr.wait_exten, self._choose, "t")

    def _choose(self, key: str) -> None:
        if self.phase != "ivr":
            return
        p, ch = self.pbx, self.channel
        options = p.spec.ivr.options
        if key not in options:
            ch.at(exten="i", priority=1)
            p.emit(wire.newexten(ch, "Goto", "t,1"))
            key = "t"
        option = options[key]
        self.key, self.option = key, option
        ch.at(exten=key, priority=1)
        p.emit(wire.newexten(ch, "Set", f"{CATEGORY_VAR}={option.category}"))
        self._set_var(CATEGORY_VAR, option.category)
        p.notify(
            CallChose(call_id=ch.uniqueid, choice=key, category=option.category, at=p.clock.now())
        )
        self.step = 0
        self._door()

    # ------------------------------------------------------------------ the callback offer

    def _agi(self, script: str, *args: str, then: Callable[[AgiOutcome], None]) -> None:
        """AGI(${CALLBACK_AGI_URL}/script,args): a real exchange with the dialer; ``then``
        runs on the simulator's clock once Asterisk would go on with the dialplan."""
        p, ch = self.pbx, self.channel
        address = p.spec.agi_address
        p.emit(wire.newexten(ch, "AGI", f"agi://{address}/{script},{','.join(args)}"))
        block = header_block(
            script,
            args,
            address=address,
            channel=ch.name,
            uniqueid=ch.uniqueid,
            caller_id=ch.caller_num,
            caller_name=ch.caller_name,
            context=ch.context,
            language=ch.language,
        )
        self._spawn(run_agi(address, block), then)

    def _spawn(self, coro: Coroutine[Any, Any, AgiOutcome], then: Callable[..., None]) -> None:
        async def go() -> None:
            outcome = await coro
            if self.phase != "done":
                self.pbx.scheduler.run(then, outcome)

        task = asyncio.get_running_loop().create_task(go())
        self._agi_tasks.add(task)
        task.add_done_callback(self._agi_tasks.discard)

    @staticmethod
    def _ok(out: AgiOutcome) -> bool:
        return out.status == "SUCCESS" and out.variables.get("CALLBACK_AGI_STATUS") == "ok"

    def _category_now(self) -> str:
        return self.channel.variables.get(CATEGORY_VAR, "")

    def _door(self) -> None:
        if not self.pbx.spec.agi_address:
            self._enter_queue()
            return
        queue, _ = self._queue_args()
        self._agi("door", queue, self._category_now(), then=self._door_answer)

    def _door_answer(self, out: AgiOutcome) -> None:
        if self.phase != "ivr":
            return
        if self._ok(out) and out.variables.get("CALLBACK_OFFER") == "yes":
            self.request = "DOOR"
            self._offer("DOOR")
        else:
            self._enter_queue()

    def _offer(self, why: str) -> None:
        self.phase = "offer"
        self.offer_why = why
        self._keys = list(self.script.offer or ())
        self._tries = self._asks = 0
        self.offer_target = ""
        self._agi("offer", self._category_now(), why, then=self._offer_answer)

    def _offer_answer(self, out: AgiOutcome) -> None:
        if self.phase != "offer":
            return
        if not self._ok(out) or not out.variables.get("CALLBACK_ETA"):
            self._offer_back()
            return
        self.pbx.notify(
            CallbackOffered(
                call_id=self.call_id,
                why=self.offer_why,
                eta_minutes=int(out.variables["CALLBACK_ETA"]),
                at=self.pbx.clock.now(),
            )
        )
        if out.variables.get("CALLBACK_READBACK"):
            self._later(self.pbx.spec.offer_prompt_seconds, self._choice)
        else:
            self._typing()

    def _key(self) -> str:
        return self._keys.pop(0) if self._keys else ""

    def _choice(self) -> None:
        if self.phase != "offer":
            return
        key = self._key()
        self._asks += 1
        if key == "1":
            self._agi(
                "register",
                self._category_now(),
                self.offer_why,
                self.offer_target,
                then=self._registered,
            )
        elif key == "2":
            self._typing()
        elif self._asks < 2:
            self._later(self.pbx.spec.offer_prompt_seconds, self._choice)
        else:
            self._offer_back()

    def _typing(self) -> None:
        self._tries += 1
        self._asks = 0
        typed = self._key()

        def check() -> None:
            if self.phase == "offer":
                self._agi("number", typed, then=self._number_answer)

        self._later(self.pbx.spec.typing_seconds, check)

    def _number_answer(self, out: AgiOutcome) -> None:
        if self.phase != "offer":
            return
        if not self._ok(out):
            self._offer_back()
        elif out.variables.get("CALLBACK_TYPED_OK") == "1":
            self.offer_target = out.variables.get("CALLBACK_TYPED_NUMBER", "")
            self._later(self.pbx.spec.offer_prompt_seconds, self._choice)
        elif self._tries >= self.pbx.spec.offer_number_tries:
            # im-sorry, callback-number-refused, vm-goodbye, Hangup()
            self.outcome = "offer_refused"
            self._hang_up_after_offer("im-sorry&callback-number-refused&vm-goodbye")
        else:
            self._typing()

    def _registered(self, out: AgiOutcome) -> None:
        if self.phase != "offer":
            return
        if not self._ok(out) or out.variables.get("CALLBACK_REGISTERED") != "1":
            self._offer_back()
            return
        self._user_event(self.offer_why, out.variables.get("CALLBACK_NUMBER", ""))
        self.outcome = "callback_accepted"
        self._hang_up_after_offer("auth-thankyou&callback-we-will-call-you")

    def _hang_up_after_offer(self, prompts: str) -> None:
        p, ch = self.pbx, self.channel
        ch.priority += 1
        p.emit(wire.newexten(ch, "Playback", prompts))
        self.phase = "goodbye"
        self._later(p.spec.goodbye_seconds, self._goodbye)

    def _offer_back(self) -> None:
        """callback-offer returned: at the door on into the queue, elsewhere the plain request
        (with the number typed, if any)."""
        if self.offer_why == "DOOR":
            self.phase = "ivr"
            self.request = ""
            self._enter_queue()
        else:
            self._plain_request(self.offer_why, self.offer_target)

    # ------------------------------------------------------------------ the queues

    def _queue_args(self) -> tuple[str, float]:
        assert self.option is not None
        name, timeout = self.option.queues[self.step]
        return name, timeout if timeout is not None else self.pbx.spec.ivr.queue_timeout

    def _enter_queue(self) -> None:
        p, ch, s = self.pbx, self.channel, self.script
        name, timeout = self._queue_args()
        self.queue_name = name
        ch.priority = 2 + self.step
        p.emit(wire.newexten(ch, "Queue", f"{name},,,,{wire.app_seconds(timeout)}"))
        for var in (
            "ANSWEREDTIME",
            "ANSWEREDTIME_MS",
            "DIALEDTIME",
            "DIALEDTIME_MS",
            "QUEUEWAIT",
            "QUEUEWAIT_MS",
        ):
            self._set_var(var, "")
        queue = p.queues[name]
        now = p.clock.now()
        entry = QueueEntry(self, queue, now, len(queue.entries) + 1)
        queue.entries.append(entry)
        self.entry = entry
        self.phase = "queue"
        p.queue_changed(queue)
        p.emit(wire.queue_caller_join(ch, name, len(queue.entries), len(queue.entries)))
        p.log_queue(
            name, ch.uniqueid, "NONE", "ENTERQUEUE", f"|{ch.caller_num}|{len(queue.entries)}"
        )
        p.notify(CallQueued(call_id=ch.uniqueid, queue=name, at=now))
        entry.timeout = p.scheduler.call_later(timeout, self._queue_timeout, entry)
        if self.first_join is None:
            self.first_join = now
            if s.patience is not None:
                self._later(s.patience, self._patience_over)
            if s.star_after is not None:
                self._later(s.star_after, self._press_star)
        poll(p, entry)

    def _waited(self, entry: QueueEntry) -> int:
        return int(self.pbx.clock.now()) - int(entry.joined_at)

    def _wait_vars(self, entry: QueueEntry) -> None:
        waited = self._waited(entry)
        dialed = self.pbx.clock.now() - self.channel.created_at
        self._set_var("QUEUEWAIT", str(waited))
        self._set_var("QUEUEWAIT_MS", str(waited * 1000))
        self._set_var("DIALEDTIME", str(int(dialed)))
        self._set_var("DIALEDTIME_MS", str(int(dialed * 1000)))
        self._set_var("ANSWEREDTIME", "0")
        self._set_var("ANSWEREDTIME_MS", "0")

    def _leave_queue(self, entry: QueueEntry) -> None:
        p, queue = self.pbx, entry.queue
        position = queue.position(entry)
        queue.entries.remove(entry)
        entry.left = True
        entry.stop_timers()
        p.queue_changed(queue)
        p.emit(wire.queue_caller_leave(self.channel, queue.name, position, len(queue.entries)))
        self._set_var("QUEUEPOSITION", str(position))
        self.entry = None

    def _abandon_event(self, entry: QueueEntry) -> None:
        queue = entry.queue
        queue.abandoned += 1
        self.pbx.log_queue(
            queue.name,
            self.channel.uniqueid,
            "NONE",
            "ABANDON",
            f"{queue.position(entry)}|{entry.original_position}|{self._waited(entry)}",
        )
        self.pbx.emit(
            wire.queue_caller_abandon(
                self.channel,
                queue.name,
                queue.position(entry),
                entry.original_position,
                self._waited(entry),
            )
        )

    def _queue_timeout(self, entry: QueueEntry) -> None:
        if self.phase != "queue" or self.entry is not entry:
            return
        if entry.ring is not None:
            entry.ring.cancel()
        self._set_var("ABANDONED", "TRUE")
        self._abandon_event(entry)
        self._wait_vars(entry)
        self._leave_queue(entry)
        self._set_var("QUEUESTATUS", "TIMEOUT")
        assert self.option is not None
        if self.step + 1 < len(self.option.queues):
            self.step += 1
            self._enter_queue()
            return
        p, ch = self.pbx, self.channel
        ch.priority = 2 + len(self.option.queues)
        p.emit(wire.newexten(ch, "Goto", "after-queue,s,1"))
        ch.at("after-queue", "s", 1)
        p.emit(wire.newexten(ch, "NoOp", "queue status TIMEOUT"))
        self._request_callback("TIMEOUT")

    def _press_star(self) -> None:
        entry = self.entry
        if self.phase != "queue" or entry is None:
            return
        if entry.ring is not None:
            entry.ring.cancel()
        p, ch = self.pbx, self.channel
        _, timeout = self._queue_args()
        self._wait_vars(entry)
        ch.at("queue-exit", "*", 0)
        p.emit(wire.newexten(ch, "Queue", f"{entry.queue.name},,,,{wire.app_seconds(timeout)}"))
        self._leave_queue(entry)
        self._request_callback("KEYPRESS")

    def _request_callback(self, reason: str) -> None:
        """after-queue / queue-exit: the offer (with the dialer's FastAGI server), or the plain
        UserEvent, Wait(1), Hangup()."""
        self.request = reason
        if self.pbx.spec.agi_address:
            self._offer(reason)
        else:
            self._plain_request(reason)

    def _user_event(self, reason: str, number: str | None) -> None:
        p, ch = self.pbx, self.channel
        category = ch.variables.get(CATEGORY_VAR, "")
        headers = [("Reason", reason), ("Category", category)]
        if number is not None:  # the generated dialplan's: Number: ${CALLBACK_TARGET}
            headers.append(("Number", number))
        ch.priority += 1
        p.emit(
            wire.newexten(
                ch, "UserEvent", "CallbackRequested," + ",".join(f"{k}: {v}" for k, v in headers)
            )
        )
        p.emit(wire.user_event(ch, "CallbackRequested", headers))
        p.notify(CallbackAsked(call_id=ch.uniqueid, reason=reason, at=p.clock.now()))

    def _plain_request(self, reason: str, number: str | None = None) -> None:
        p, ch = self.pbx, self.channel
        self._user_event(reason, number)
        ch.priority += 1
        goodbye = p.spec.goodbye_seconds
        p.emit(wire.newexten(ch, "Wait", wire.app_seconds(goodbye)))
        self.phase = "goodbye"
        self.outcome = "callback_requested"
        self._later(goodbye, self._goodbye)

    def _goodbye(self) -> None:
        if self.phase != "goodbye":
            return
        p, ch = self.pbx, self.channel
        ch.priority += 1
        p.emit(wire.newexten(ch, "Hangup", ""))
        p.emit(wire.soft_hangup_request(ch, HangupCause.NORMAL_CLEARING))
        p.emit(wire.hangup_request(ch, HangupCause.NORMAL_CLEARING))
        self._hangup_caller(HangupCause.NORMAL_CLEARING, by="pbx")

    def _patience_over(self) -> None:
        if self.phase == "queue":
            self.hangup_requested(self.channel, HangupCause.NORMAL_CLEARING)

    # ------------------------------------------------------------------ ending

    def hangup_requested(self, ch: Channel, cause: int = HangupCause.NORMAL_CLEARING) -> None:
        """Somebody hangs up ``ch`` (the caller, or the Hangup action)."""
        if self.phase == "done":
            return
        if ch is not self.channel:
            if self.connection is not None and ch in self.connection.channels():
                self.connection.agent_hangs_up()
            elif self.entry is not None and self.entry.ring is not None:
                self.entry.ring.ring_no_answer()
            return
        p = self.pbx
        if self.phase in ("ivr", "offer"):
            p.emit(wire.hangup_request(ch, cause))
            p.emit(wire.soft_hangup_request(ch, cause))
            p.emit(wire.hangup_request(ch, cause))
            self.outcome = "ivr_hangup" if self.phase == "ivr" else "offer_hangup"
            self._hangup_caller(cause, by="caller")
        elif self.phase == "queue":
            self._abandon(cause)
        elif self.phase == "talk" and self.connection is not None:
            self.connection.caller_hangs_up()
        elif self.phase == "goodbye":
            p.emit(wire.hangup_request(ch, cause))
            p.emit(wire.soft_hangup_request(ch, cause))
            self._hangup_caller(cause, by="caller")
        elif self.phase == "new":
            self._hangup_caller(cause, by="caller")

    def _abandon(self, cause: int) -> None:
        entry = self.entry
        assert entry is not None
        p, ch = self.pbx, self.channel
        p.emit(wire.hangup_request(ch, cause))
        if entry.ring is not None:
            entry.ring.cancel()
        self._wait_vars(entry)
        self._set_var("ABANDONED", "TRUE")
        self._abandon_event(entry)
        self._leave_queue(entry)
        p.emit(wire.soft_hangup_request(ch, cause))
        p.emit(wire.hangup_request(ch, cause))
        self.outcome = "abandoned"
        self._hangup_caller(cause, by="caller")

    def _hangup_caller(self, cause: int, *, by: str) -> None:
        p, ch = self.pbx, self.channel
        p.emit(wire.hangup(ch, cause))
        p.gone(ch)
        self._device(DeviceState.NOT_INUSE)
        self._finish(by)

    def _finish(self, by: str) -> None:
        p = self.pbx
        self.phase = "done"
        self._record()
        for timer in self._timers:
            timer.cancel()
        p.calls.pop(self.channel.uniqueid, None)
        p.notify(
            CallEnded(
                call_id=self.channel.uniqueid,
                outcome=self.outcome or "abandoned",
                hung_up_by=by,
                at=p.clock.now(),
            )
        )

    def _record(self) -> None:
        """The hangup handler of the shipped dialplan (callback-record-call): one AstDB entry."""
        spec, ch = self.pbx.spec, self.channel
        if not spec.records_family or self.internal:
            return
        now = self.pbx.clock.now()
        if self.answered_at is not None:
            answered = str(int((now - self.answered_at) * 1000))
        else:  # what Queue() left: "" while waiting, "0" once it let the caller go
            answered = ch.variables.get("ANSWEREDTIME_MS", "")
        self.pbx.astdb.record_call(
            spec.records_family,
            ch.uniqueid,
            {
                "num": ch.caller_num,
                "name": ch.caller_name,
                "cat": ch.variables.get(CATEGORY_VAR, ""),
                "start": ms(self.started_at),
                "end": ms(now),
                "answered": answered,
                "agent": self.answered_by,
                "peer": "",
                "queue": self.queue_name,
                "status": ch.variables.get("QUEUESTATUS", ""),
                "abandoned": ch.variables.get("ABANDONED", ""),
                "req": self.request,
                "skip": ch.variables.get(SKIP_VAR, ""),
            },
            spec.records_index,
        )

    # ------------------------------------------------------------------ what app_queue does to it

    @property
    def talking(self) -> bool:
        return self.phase == "talk"

    def leave_answered(self, entry: QueueEntry) -> int:
        """A member answered: Queue() lets the caller out of ``entry``; the seconds waited."""
        hold = self._waited(entry)
        self._leave_queue(entry)
        self._set_var("QUEUEWAIT", str(hold))
        self._set_var("QUEUEWAIT_MS", str(hold * 1000))
        return hold

    def talk_started(self, ring: QueueRing) -> None:
        """Bridged with the member ``ring`` reached: patience and ``*`` no longer apply."""
        self.phase = "talk"
        self.connection = ring
        self.answered_at = self.pbx.clock.now()
        self.answered_by = ring.agent.interface
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()

    def set_answered_vars(self, answered_at: float) -> None:
        """Queue() returns after a talk that began at ``answered_at``."""
        now = self.pbx.clock.now()
        dialed = now - self.channel.created_at
        self._set_var("ANSWEREDTIME", str(int(now - answered_at)))
        self._set_var("ANSWEREDTIME_MS", str(int((now - answered_at) * 1000)))
        self._set_var("DIALEDTIME", str(int(dialed)))
        self._set_var("DIALEDTIME_MS", str(int(dialed * 1000)))

    def hang_up(self, cause: int, *, outcome: str, by: str) -> None:
        """The dialplan hangs the caller up (Queue() without ``c`` after the agent hung up)."""
        self.outcome = outcome
        self._hangup_caller(cause, by=by)

    def line_free(self) -> None:
        self._device(DeviceState.NOT_INUSE)

    def finish(self, *, outcome: str, by: str) -> None:
        self.outcome = outcome
        self._finish(by)
