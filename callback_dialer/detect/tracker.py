"""The call tracker: AMI events in, facts out (missed, served, not queued).

An inbound call is the first channel of its call (``Uniqueid == Linkedid``) that enters one of
the configured inbound contexts or whose name matches a trunk pattern; outbound legs and agents'
channels never are, nor are channels of our own callbacks.

A call is decided when its channel hangs up, never earlier: on a queue timeout Asterisk sends
``QueueCallerAbandon`` while the caller is still on the line, and the dialplan may send them to
another queue where somebody answers. At the end:

- connected to an agent at any point (``AgentConnect``, or bridged with an agent's channel):
  served, already reported the moment it happened (``Served``, closes any open callback);
- marked as served by the IVR (``CALLBACK_SKIP=<reason>`` on the channel, or seen in a
  ``[detection] self_service`` context/extension) and not asking for a callback with a key:
  ``SelfServed`` (counted by reason, never queued);
- a ``CallbackRequested`` user event: missed, source ``explicit`` or ``timeout``;
- the IVR's offer taken over FastAGI (``accept_offer``): missed at once, before the hangup, to
  the number the caller typed (the caller ID kept beside it) or to the caller ID; the hangup
  then adds nothing. A ``Number`` header on the user event (validated again) does the same
  for a dialer that did not serve the AGI request (a standby);
- lasted at least ``min_call_seconds``: missed, ``abandon`` if it waited in a queue, else
  ``ivr_hangup``;
- otherwise: not queued (``too_short``).

The caller ID is validated first; anonymous, internal, blocked or garbage numbers are reported
as ``NotQueued`` with the reason and go nowhere else.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ami.asterisk import CALLBACK_ID_VAR, CATEGORY_VAR, SKIP_VAR, unescape_c
from ..ami.frames import AmiMessage
from ..config import Config
from ..logs import get_logger
from ..phone import NumberPolicy, PhoneNumber, clean_name
from ..queue.models import Source
from .callrecord import CallRecord
from .categories import CategoryResolver
from .facts import Fact, MissedCall, NotQueued, SelfServed, Served
from .requests import source_for_request

log = get_logger(__name__)

_ENDED_MEMORY = 20_000  # call ids remembered after their end (late events are ignored)
_REASON = re.compile(r"[a-z][a-z0-9_]{0,31}")
DEFAULT_SKIP_REASON = "self_service"


def skip_reason(value: str) -> str:
    """The reason a dialplan gave in CALLBACK_SKIP, as counted: lower case a-z0-9_ (at most
    32); anything else (a typo, a quoted string) still skips, as ``self_service``."""
    text = value.strip().lower()
    return text if _REASON.fullmatch(text) else DEFAULT_SKIP_REASON


# What the tracker concluded of a call it saw end, kept with its id (``_ended``) so that the
# dialplan's record of the same call (detect/records.py) is a cross-check, not a second fact.
SERVED = "served"
MISSED = "missed"
# Concluded without the call's end (it vanished while the link was down, or only its record
# told it): a record read later is applied, never compared.
UNDECIDED = frozenset({"not_queued:fate_unknown", "record"})


@dataclass(frozen=True, slots=True)
class RecordVerdict:
    """What a call's AstDB record adds: the facts to store (none when the call was followed
    live), and for a call followed live what the events said beside what the record says."""

    facts: tuple[Fact, ...] = ()
    live: str = ""  # the live verdict ("" when the call was not followed live)
    recorded: str = ""  # the record's verdict

    @property
    def seen_live(self) -> bool:
        return bool(self.live)

    @property
    def agrees(self) -> bool:
        return self.live == self.recorded


@dataclass(frozen=True, slots=True)
class CallSnapshot:
    call_id: str
    channel: str
    number: str  # E.164, or "" when the caller ID is not a usable number
    category: str
    queues: tuple[str, ...]
    in_queue: bool
    connected: bool
    callback_requested: str
    started_at: float


@dataclass(slots=True)
class _Call:
    call_id: str
    channel: str
    started_at: float
    raw_number: str = ""
    number: PhoneNumber | None = None
    name: str = ""
    category_var: str = ""
    requested_category: str = ""
    queues: list[str] = field(default_factory=list)
    in_queue: bool = False
    connected: bool = False
    request_reason: str = ""
    served_reported: bool = False
    skip_var: str = ""  # CALLBACK_SKIP as last seen ("" : not set, or cleared)
    skip_rule: str = ""  # the reason of a [detection] self_service rule that matched
    typed: PhoneNumber | None = None  # the number the caller asked to be called back on
    offer_reported: bool = False  # the IVR's offer registered it already


def _var(message: AmiMessage, name: str) -> str | None:
    """A channel variable from the ChanVariable headers (None when absent)."""
    values = message.getall("ChanVariable")
    prefix = name + "="
    for item in values:
        if item.startswith(prefix):
            return unescape_c(item[len(prefix) :])
    return None


class CallTracker:
    HANDLERS = {
        "Newchannel": "on_channel",
        "Newstate": "on_channel",
        "NewCallerid": "on_channel",
        "VarSet": "on_varset",
        "QueueCallerJoin": "on_queue_join",
        "QueueCallerAbandon": "on_queue_abandon",
        "QueueCallerLeave": "on_queue_leave",
        "AgentConnect": "on_agent_connect",
        "BridgeEnter": "on_bridge_enter",
        "BridgeLeave": "on_bridge_leave",
        "UserEvent": "on_user_event",
        "DialEnd": "on_dial_end",
        "Hangup": "on_hangup",
    }

    def __init__(
        self,
        config: Config,
        emit: Callable[[Fact], None],
        *,
        is_agent_channel: Callable[[str], bool] | None = None,
    ) -> None:
        self.config = config
        self.emit = emit
        self.numbers = NumberPolicy(config.phone)
        self.categories = CategoryResolver(config)
        self.min_seconds = config.detection.min_call_seconds
        self.inbound_contexts = frozenset(config.detection.inbound_contexts)
        self.request_event = config.detection.callback_request_event
        self._trunks = self._compile(config.detection.trunk_channels)
        self._self_service = tuple(
            (
                re.compile(fnmatch.translate(rule.context)),
                re.compile(fnmatch.translate(rule.exten)),
                rule.reason,
            )
            for rule in config.detection.self_service
        )
        self._agent_patterns = self._compile(config.detection.agent_channels)
        self._is_agent_extra = is_agent_channel
        self.calls: dict[str, _Call] = {}
        self._ended: OrderedDict[str, str] = OrderedDict()  # call id -> verdict
        self._ours: set[str] = set()  # channel/call ids of our own callbacks
        self._bridges: dict[str, dict[str, str]] = {}  # bridge -> {uniqueid: channel}
        self._bridge_of: dict[str, str] = {}  # uniqueid -> bridge
        self.counters: dict[str, int] = {}

    @staticmethod
    def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
        if not patterns:
            return None
        return re.compile("|".join(fnmatch.translate(p) for p in patterns))

    # ------------------------------------------------------------------ outside knowledge

    def mark_ours(self, *ids: str) -> None:
        """Channel ids (and call ids) of our own callbacks: never inbound calls."""
        self._ours.update(i for i in ids if i)

    def forget_ours(self, *ids: str) -> None:
        self._ours.difference_update(ids)

    def active_numbers(self) -> frozenset[str]:
        """Numbers on an inbound call right now: never call them back at this moment."""
        numbers = {c.number.e164 for c in self.calls.values() if c.number}
        # A number typed in the IVR is "on a call with us" too until that call ends: the
        # callback waits for the caller to hang up.
        numbers.update(c.typed.e164 for c in self.calls.values() if c.typed)
        return frozenset(numbers)

    def snapshot(self) -> tuple[CallSnapshot, ...]:
        return tuple(
            CallSnapshot(
                call_id=c.call_id,
                channel=c.channel,
                number=c.number.e164 if c.number else "",
                category=self._category(c),
                queues=tuple(c.queues),
                in_queue=c.in_queue,
                connected=c.connected,
                callback_requested=c.request_reason,
                started_at=c.started_at,
            )
            for c in sorted(self.calls.values(), key=lambda c: (c.started_at, c.call_id))
        )

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # ------------------------------------------------------------------ recognising calls

    def _is_agent(self, channel: str) -> bool:
        if self._agent_patterns is not None and self._agent_patterns.match(channel):
            return True
        return self._is_agent_extra is not None and self._is_agent_extra(channel)

    def _call_for(self, message: AmiMessage) -> _Call | None:
        """The tracked call whose inbound channel this event is about, starting to track it
        when this is the first sign of an inbound call."""
        fields = message.fields
        uid = fields.get("Uniqueid", "")
        call = self.calls.get(uid)
        if call is not None:
            return call
        if not uid or uid != fields.get("Linkedid") or uid in self._ended or uid in self._ours:
            return None
        channel = fields.get("Channel", "")
        if fields.get("Context") not in self.inbound_contexts and not (
            self._trunks is not None and self._trunks.match(channel)
        ):
            return None
        if _var(message, CALLBACK_ID_VAR):
            self._ours.add(uid)
            return None
        call = _Call(call_id=uid, channel=channel, started_at=message.received_at)
        self.calls[uid] = call
        if fields.get("Event") != "Newchannel":
            self._count("attached_mid_call")
        return call

    def _update(self, call: _Call, message: AmiMessage) -> None:
        fields = message.fields
        raw = fields.get("CallerIDNum")
        if raw is not None and raw != call.raw_number:
            call.raw_number = raw
            number = self.numbers.normalize(raw)
            call.number = number if isinstance(number, PhoneNumber) else None
        name = fields.get("CallerIDName")
        if name is not None:
            # Channel events carry the name C-escaped (Иван \"Ваня\"): store what the caller
            # is called, not how the wire spelled it.
            cleaned = clean_name(unescape_c(name))
            if cleaned:
                call.name = cleaned
        if "ChanVariable" in fields:
            value = _var(message, CATEGORY_VAR)
            if value:
                call.category_var = value
            skip = _var(message, SKIP_VAR)
            if skip is not None:
                # Present and empty means the dialplan cleared it (the caller moved on).
                call.skip_var = skip
        if self._self_service and not call.queues:
            # Only before a queue: after one, the channel's events still name the IVR's
            # context, and the caller has shown they wanted a person (CALLBACK_SKIP can
            # still mark a call after a queue).
            context, exten = fields.get("Context", ""), fields.get("Exten", "")
            for context_re, exten_re, reason in self._self_service:
                if context and context_re.match(context) and exten_re.match(exten):
                    call.skip_rule = reason
                    break

    # ------------------------------------------------------------------ handlers

    def on_channel(self, message: AmiMessage) -> None:
        call = self._call_for(message)
        if call is not None:
            self._update(call, message)

    def on_varset(self, message: AmiMessage) -> None:
        variable = message.fields.get("Variable")
        if variable not in (CATEGORY_VAR, SKIP_VAR):
            return
        call = self._call_for(message)
        if call is None:
            return
        value = message.fields.get("Value", "")
        if variable == SKIP_VAR:
            call.skip_var = value
        elif value:
            call.category_var = value

    def on_queue_join(self, message: AmiMessage) -> None:
        call = self._call_for(message)
        if call is None:
            return
        self._update(call, message)
        queue = message.fields.get("Queue", "")
        if queue:
            call.queues.append(queue)
        call.in_queue = True
        # A rule's place came before the queue: the caller went on to ask for a person.
        call.skip_rule = ""

    def on_queue_abandon(self, message: AmiMessage) -> None:
        # Not the end: a queue timeout sends this while the caller is still on the line.
        call = self._call_for(message)
        if call is not None:
            self._update(call, message)

    def on_queue_leave(self, message: AmiMessage) -> None:
        call = self._call_for(message)
        if call is not None:
            call.in_queue = False

    def on_agent_connect(self, message: AmiMessage) -> None:
        call = self._call_for(message)
        if call is None:
            return
        self._update(call, message)
        agent = message.fields.get("Interface") or message.fields.get("DestChannel", "")
        self._connected(call, message.received_at, agent)

    def on_bridge_enter(self, message: AmiMessage) -> None:
        fields = message.fields
        bridge, uid, channel = (
            fields.get("BridgeUniqueid"),
            fields.get("Uniqueid"),
            fields.get("Channel", ""),
        )
        if not bridge or not uid:
            return
        members = self._bridges.setdefault(bridge, {})
        members[uid] = channel
        self._bridge_of[uid] = bridge
        calls = [self.calls[u] for u in members if u in self.calls]
        if not calls:
            return
        agents = [ch for u, ch in members.items() if u not in self.calls and self._is_agent(ch)]
        if agents:
            for call in calls:
                self._connected(call, message.received_at, agents[0])

    def on_bridge_leave(self, message: AmiMessage) -> None:
        fields = message.fields
        self._leave_bridge(fields.get("Uniqueid", ""), fields.get("BridgeUniqueid"))

    def _leave_bridge(self, uid: str, bridge: str | None = None) -> None:
        bridge = bridge or self._bridge_of.get(uid)
        self._bridge_of.pop(uid, None)
        if bridge and bridge in self._bridges:
            members = self._bridges[bridge]
            members.pop(uid, None)
            if not members:
                del self._bridges[bridge]

    def on_user_event(self, message: AmiMessage) -> None:
        if message.fields.get("UserEvent") != self.request_event:
            return
        call = self._call_for(message)
        if call is None:
            return
        self._update(call, message)
        if not call.request_reason:
            call.request_reason = message.fields.get("Reason", "") or "REQUEST"
        requested = message.fields.get("Category", "")
        if requested:
            call.requested_category = requested
        typed = message.fields.get("Number", "")
        if typed and call.typed is None:
            number = self.numbers.normalize(typed)
            if isinstance(number, PhoneNumber):
                call.typed = number
            else:
                log.warning(
                    "callback request names an unusable number; the caller ID is used",
                    call_id=call.call_id,
                    reason=number.reason.value,
                )

    def on_dial_end(self, message: AmiMessage) -> None:
        """An agent's own call to a customer was answered: that customer is served."""
        fields = message.fields
        if fields.get("DialStatus") != "ANSWER":
            return
        uid = fields.get("Uniqueid")
        if not uid or uid in self.calls or uid in self._ours:
            return
        if fields.get("Linkedid") in self._ours:
            return
        if _var(message, CALLBACK_ID_VAR) or fields.get("Context") in self.inbound_contexts:
            return
        target = fields.get("DialString", "").rsplit("/", 1)[-1].split("@", 1)[0]
        target = target.removeprefix("sip:").removeprefix("tel:")
        if not target:
            target = fields.get("Exten", "")
        number = self.numbers.normalize(target)
        if isinstance(number, PhoneNumber):
            self.emit(
                Served(
                    number=number.e164,
                    how="served_outbound",
                    call_id=uid,
                    at=message.received_at,
                    agent=fields.get("Channel", ""),
                )
            )

    def on_hangup(self, message: AmiMessage) -> None:
        uid = message.fields.get("Uniqueid", "")
        self._leave_bridge(uid)
        call = self.calls.pop(uid, None)
        if call is None:
            if uid in self._ours:
                self._ours.discard(uid)
            return
        self._update(call, message)
        self._remember_ended(uid, self._decide(call, message.received_at))

    # ------------------------------------------------------------------ deciding

    def _connected(self, call: _Call, at: float, agent: str) -> None:
        call.connected = True
        if call.served_reported:
            return
        call.served_reported = True
        if call.number is not None:
            self.emit(
                Served(
                    number=call.number.e164,
                    how="served_inbound",
                    call_id=call.call_id,
                    at=at,
                    agent=agent,
                )
            )

    def _category(self, call: _Call) -> str:
        return self.categories.resolve(
            chanvar=call.category_var,
            requested=call.requested_category,
            queue=call.queues[-1] if call.queues else "",
        )

    def _skip(self, call: _Call) -> str:
        """Why the IVR counts this call as served by itself ("" : it does not)."""
        if call.request_reason and source_for_request(call.request_reason) is Source.EXPLICIT:
            return ""  # pressing the callback key outweighs any earlier self-service mark
        if call.skip_var.strip():
            return skip_reason(call.skip_var)
        return call.skip_rule

    def accept_offer(
        self,
        call_id: str,
        *,
        reason: str,
        category: str = "",
        typed: PhoneNumber | None = None,
        channel: str = "",
        caller_id: str = "",
        at: float,
        promised_by: float = 0.0,
    ) -> MissedCall | None:
        """The caller took the IVR's offer (FastAGI): the callback is registered now, to
        ``typed`` or, when None, to the caller ID. A call we do not follow (a context not in
        ``inbound_contexts``, or we came up while it was in the IVR) is followed from here.
        None when there is no usable number to call back."""
        call = self.calls.get(call_id)
        if call is None:
            if call_id in self._ended or call_id in self._ours:
                return None
            call = _Call(call_id=call_id, channel=channel, started_at=at)
            call.raw_number = caller_id
            number = self.numbers.normalize(caller_id)
            call.number = number if isinstance(number, PhoneNumber) else None
            self.calls[call_id] = call
        call.request_reason = call.request_reason or reason or "OFFER"
        if category:
            call.requested_category = category
        if typed is not None:
            call.typed = typed
        fact = self._missed_fact(call, source_for_request(call.request_reason), at)
        if fact is None:
            return None
        fact = dataclasses.replace(fact, promised_by=promised_by)
        call.offer_reported = True
        self._count("offer_accepted")
        self.emit(fact)
        return fact

    def caller_number(self, call_id: str) -> PhoneNumber | None:
        call = self.calls.get(call_id)
        return call.number if call is not None else None

    def category_of(self, call_id: str) -> str:
        call = self.calls.get(call_id)
        return self._category(call) if call is not None else ""

    def _missed_fact(self, call: _Call, source: Source, ended_at: float) -> MissedCall | None:
        caller = call.number
        target = call.typed or caller
        if target is None:
            return None
        return MissedCall(
            call_id=call.call_id,
            number=target.e164,
            name=call.name,
            category=self._category(call),
            source=source,
            started_at=call.started_at,
            ended_at=ended_at,
            queue=call.queues[-1] if call.queues else "",
            caller_id=caller.e164 if caller is not None and caller != target else "",
        )

    def _verdict(self, call: _Call, ended_at: float) -> tuple[str, Fact | None]:
        """The one rule for how a call ended, for live events and records alike: its verdict
        (served, self_service:<reason>, missed, not_queued:<reason>) and the fact to report
        (None when served: that was reported the moment it happened)."""
        if call.connected:
            return SERVED, None
        if call.offer_reported:
            # Registered (emitted) when the caller took the IVR's offer: missed, nothing more.
            return MISSED, None
        reason = self._skip(call)
        if reason:
            number = self.numbers.normalize(call.raw_number)
            return f"self_service:{reason}", SelfServed(
                call_id=call.call_id,
                number=number.e164 if isinstance(number, PhoneNumber) else "",
                category=self._category(call),
                reason=reason,
                started_at=call.started_at,
                ended_at=ended_at,
            )
        if call.request_reason:
            source = source_for_request(call.request_reason)
        elif ended_at - call.started_at >= self.min_seconds:
            source = Source.ABANDON if call.queues else Source.IVR_HANGUP
        else:
            return "not_queued:too_short", NotQueued(call.call_id, "too_short", ended_at)
        number = self.numbers.normalize(call.raw_number)
        if not isinstance(number, PhoneNumber) and call.typed is None:
            reason = number.reason.value
            return f"not_queued:{reason}", NotQueued(call.call_id, reason, ended_at)
        call.number = number if isinstance(number, PhoneNumber) else None
        fact = self._missed_fact(call, source, ended_at)
        assert fact is not None
        return MISSED, fact

    def _decide(self, call: _Call, ended_at: float) -> str:
        verdict, fact = self._verdict(call, ended_at)
        self._count(verdict)
        if isinstance(fact, NotQueued):
            log.info("call not queued for a callback", call_id=call.call_id, reason=fact.reason)
        elif isinstance(fact, SelfServed):
            log.info(
                "call served by the IVR; no callback", call_id=call.call_id, reason=fact.reason
            )
        if fact is not None:
            self.emit(fact)
        return verdict

    def _not_queued(self, call: _Call, reason: str, at: float) -> str:
        self._count(f"not_queued:{reason}")
        log.info("call not queued for a callback", call_id=call.call_id, reason=reason)
        self.emit(NotQueued(call_id=call.call_id, reason=reason, at=at))
        return f"not_queued:{reason}"

    def _remember_ended(self, uid: str, verdict: str) -> None:
        self._ended[uid] = verdict
        self._ended.move_to_end(uid)
        if len(self._ended) > _ENDED_MEMORY:
            self._ended.popitem(last=False)

    # ------------------------------------------------------------------ the dialplan's records

    def settle_record(self, record: CallRecord) -> RecordVerdict:
        """A call's end as the dialplan wrote it in AstDB (detect/records.py), judged by the
        same rules as live events (``_verdict``).

        A call followed live to its end gives no fact: the record is a cross-check. A call
        known live but not ended (it ended while the link was down) is ended by its record;
        one never seen is decided from the record alone. The facts are returned, not emitted:
        the caller stores them before it deletes the record. NotQueued is emitted (counted)."""
        uid = record.call_id
        live = self._ended.get(uid)
        call = self.calls.get(uid)
        if live is not None and live not in UNDECIDED:
            recorded, _ = self._verdict(self._record_call(record, None), record.ended_at)
            return RecordVerdict(live=live, recorded=recorded)
        served_live = call is not None and call.served_reported
        if call is not None:
            del self.calls[uid]
            self._leave_bridge(uid)
        call = self._record_call(record, call)
        self._remember_ended(uid, "record")
        verdict, fact = self._verdict(call, record.ended_at)
        self._count(f"record:{verdict}")
        facts: list[Fact] = []
        if verdict == SERVED:
            if call.number is not None and not served_live:
                facts.append(
                    Served(
                        number=call.number.e164,
                        how="served_inbound",
                        call_id=uid,
                        at=record.answered_at,
                        agent=record.agent,
                    )
                )
        elif isinstance(fact, NotQueued):
            log.info("recorded call not queued for a callback", call_id=uid, reason=fact.reason)
            self.emit(fact)
        elif fact is not None:
            facts.append(fact)
        return RecordVerdict(facts=tuple(facts), recorded=verdict)

    def _record_call(self, record: CallRecord, known: _Call | None) -> _Call:
        """The call as its record tells it; what live events told of it (``known``: a call
        that ended while the link was down) fills what the record leaves empty."""
        call = _Call(
            call_id=record.call_id,
            channel=known.channel if known else "",
            started_at=known.started_at if known else record.started_at,
        )
        call.raw_number = record.number or (known.raw_number if known else "")
        number = self.numbers.normalize(call.raw_number)
        call.number = number if isinstance(number, PhoneNumber) else None
        call.name = clean_name(record.name) or (known.name if known else "")
        call.category_var = record.category or (known.category_var if known else "")
        call.requested_category = record.category if record.request else ""
        call.queues = [record.queue] if record.queue else list(known.queues if known else [])
        call.connected = record.answered or bool(known and known.connected)
        call.request_reason = record.request or (known.request_reason if known else "")
        call.skip_var = record.skip or (known.skip_var if known else "")
        call.skip_rule = known.skip_rule if known else ""
        return call

    # ------------------------------------------------------------------ after a reconnect

    def call_ids(self) -> frozenset[str]:
        return frozenset(self.calls)

    def category_var_of(self, call_id: str) -> str:
        """The CALLBACK_CATEGORY this call's events carried ("" when none or unknown)."""
        call = self.calls.get(call_id)
        return call.category_var if call is not None else ""

    def reconcile(
        self, live_channels: list[dict[str, str]], now: float, known_before: frozenset[str]
    ) -> None:
        """Compare with Asterisk's channel list (CoreShowChannels) after a reconnect.

        Calls that vanished while we were away ended unseen: one that asked for a callback is
        missed; any other is reported ``fate_unknown`` and not queued, because it may well
        have been answered (we never call back someone who was served). Inbound calls that
        started while we were away are picked up, their start taken from Asterisk's Duration.

        ``known_before`` are the calls we knew when the list was asked for. A call that began
        while the list was on its way is missing from it yet very much alive: its events came
        in live, so only calls known before can have vanished.
        """
        live = {ch.get("Uniqueid", ""): ch for ch in live_channels}
        for uid in [u for u in self.calls if u not in live and u in known_before]:
            call = self.calls.pop(uid)
            if call.connected:
                self._remember_ended(uid, SERVED)
            elif call.request_reason:
                self._remember_ended(uid, self._decide(call, now))
            else:
                # Without its record (an old dialplan) nobody can say: never called back.
                self._remember_ended(uid, self._not_queued(call, "fate_unknown", now))
        for uid, ch in live.items():
            if uid in self.calls or uid != ch.get("Linkedid") or uid in self._ended:
                continue
            message = AmiMessage(
                {k: v for k, v in ch.items() if isinstance(v, str)},
                received_at=now - _duration(ch.get("Duration", "")),
            )
            call = self._call_for(message)
            if call is not None:
                self._update(call, message)
                bridge = ch.get("BridgeId", "")
                if bridge and not call.connected:
                    # Met mid-call already in a bridge: an inbound call is bridged only with
                    # whoever answered it (app_queue's agent, a Dial), so it was served. Else
                    # its end, unseen in any queue, would look like a caller lost in the IVR.
                    peer = next(
                        (
                            other.get("Channel", "")
                            for other_uid, other in live.items()
                            if other_uid != uid and other.get("BridgeId") == bridge
                        ),
                        "",
                    )
                    self._connected(call, now, peer)


def _duration(text: str) -> float:
    parts = text.split(":")
    try:
        if len(parts) == 3:
            return int(parts[0]) * 3600 + int(parts[1]) * 60 + float(parts[2])
        return float(text)
    except ValueError:
        return 0.0
