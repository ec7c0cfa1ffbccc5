"""The callback calls up in Asterisk that no attempt of ours follows, read off a channel listing.

Asterisk is the truth about calls: when a dialer is killed, or a leader replaced, its calls go
on without it. At start, after every reconnect and when it takes over the leader lease, the
leader lists the channels (``CoreShowChannels``; with ``channelvars = CALLBACK_CATEGORY,
CALLBACK_ID`` in manager.conf every ``CoreShowChannel`` carries ``ChanVariable:
CALLBACK_ID=cb-N``, Asterisk 22's main/manager.c, ``action_coreshowchannels``, through
``ast_manager_build_channel_state_string_prefix``). Each callback's channels make a
``LiveCall``; the strategy says which stage that is (strategies.py, ``adopted_stage``) and drives
a new attempt into it, and the dispatcher takes over the claim (queue ``adopt``) and follows the
call to its end like one it placed itself.

What the listing tells, in both modes: the Originate's first channel (ChannelId ``cbd-<id>-
<n>-<token>``, the ``;1`` half of a Local channel, whose Linkedid every channel of the call
shares) not yet Up means its first leg still rings; Up but in no bridge means the second leg is
being dialled; in a bridge means the two parties talk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..ami.asterisk import CALLBACK_ID_VAR, ChannelState
from ..ami.frames import AmiMessage
from .origination import OriginatePlan

CHANNEL_PREFIX = "cbd-"  # origination.py: ChannelId cbd-<callback>-<attempt>-<token>
ACTION_PREFIX = "cbd-originate-"  # and its ActionID cbd-originate-<callback>-<attempt>-<token>


@dataclass(frozen=True, slots=True)
class LiveChannel:
    uid: str
    name: str
    linkedid: str
    state: int
    bridge: str
    callback_id: str  # "" when the channel does not carry CALLBACK_ID
    age: float | None = None  # seconds since Asterisk created it (Duration, Seconds)

    @classmethod
    def from_message(cls, message: AmiMessage) -> LiveChannel:
        try:
            state = int(message.get("ChannelState") or 0)
        except ValueError:
            state = 0
        return cls(
            uid=message.get("Uniqueid"),
            name=message.get("Channel"),
            linkedid=message.get("Linkedid") or message.get("Uniqueid"),
            state=state,
            bridge=message.get("BridgeId") or message.get("BridgeID"),
            # CoreShowChannel: ChanVariable (manager.conf channelvars); Status with Variables:
            # Variable.
            callback_id=message.chanvars().get(CALLBACK_ID_VAR)
            or message.chanvars("Variable").get(CALLBACK_ID_VAR, ""),
            age=_age(message),
        )

    @property
    def up(self) -> bool:
        return self.state == ChannelState.UP


@dataclass(frozen=True, slots=True)
class LiveCall:
    """One callback's call as the listing shows it."""

    callback_id: str
    first: LiveChannel  # the Originate's first channel
    channels: tuple[LiveChannel, ...]  # every channel of the call (its Linkedid), first too

    @property
    def ours(self) -> frozenset[str]:
        """The Originate's own channels (the first and, for a Local channel, its ;2 half)."""
        return frozenset(
            ch.uid
            for ch in self.channels
            if ch.callback_id == self.callback_id or ch.uid == self.first.uid + "-2"
        )

    @property
    def up(self) -> bool:
        return self.first.up

    @property
    def bridged(self) -> bool:
        return bool(self.first.bridge)

    def plan(self) -> OriginatePlan:
        """The Originate's identifiers as origination.py made them (the ActionID follows from
        the ChannelId), so its late OriginateResponse still finds the attempt."""
        uid = self.first.uid
        if uid.startswith(CHANNEL_PREFIX):
            other, action = uid + "-2", ACTION_PREFIX + uid.removeprefix(CHANNEL_PREFIX)
        else:  # an Originate without ChannelId: only its channel names it
            other, action = "", ""
        return OriginatePlan(fields={}, channel_id=uid, other_channel_id=other, action_id=action)

    def bridged_with_first(self) -> LiveChannel | None:
        """The party on the other side of the first channel's bridge."""
        if not self.first.bridge:
            return None
        for ch in self.channels:
            if ch.uid != self.first.uid and ch.bridge == self.first.bridge:
                return ch
        return None

    def talk_began_by(self, now: float) -> float | None:
        """The earliest moment the talk can have begun: when the youngest dialled party's
        channel was created (it is answered after that). None when the listing gives no age.
        An adopted talk counted from here is never shorter than it was, so a customer who
        was reached is not called again because the dialer that placed the call died."""
        ages = [ch.age for ch in self.others() if ch.age is not None]
        return now - min(ages) if ages else None

    def others(self) -> list[LiveChannel]:
        """The call's channels that are not the Originate's own: the dialled parties."""
        ours = self.ours
        return [ch for ch in self.channels if ch.uid not in ours]


LISTED = frozenset({"CoreShowChannel", "Status"})


def live_calls(listing: Iterable[AmiMessage]) -> dict[str, LiveCall]:
    """Every callback call in a ``CoreShowChannels`` (or ``Status``) listing, by callback id."""
    channels = [LiveChannel.from_message(m) for m in listing if m.event in LISTED]
    by_link: dict[str, list[LiveChannel]] = {}
    for ch in channels:
        by_link.setdefault(ch.linkedid, []).append(ch)
    firsts: dict[str, LiveChannel] = {}
    for ch in channels:
        if not ch.callback_id:
            continue
        best = firsts.get(ch.callback_id)
        if best is None or _first_rank(ch) < _first_rank(best):
            firsts[ch.callback_id] = ch
    return {
        callback_id: LiveCall(callback_id, first, tuple(by_link.get(first.linkedid, [first])))
        for callback_id, first in firsts.items()
    }


def _first_rank(ch: LiveChannel) -> tuple[int, int, int]:
    """The Originate's first channel: our ChannelId (not its -2 half), the one the call is
    linked to, an Up one before one that is going away."""
    ours = ch.uid.startswith(CHANNEL_PREFIX + ch.callback_id + "-")
    return (
        0 if ours and not ch.uid.endswith("-2") else 1,
        0 if ch.uid == ch.linkedid else 1,
        0 if ch.up else 1,
    )


def _age(message: AmiMessage) -> float | None:
    """CoreShowChannel's ``Duration`` (HH:MM:SS) or Status's ``Seconds``, in seconds."""
    duration = message.get("Duration")
    if duration:
        try:
            hours, minutes, seconds = (int(part) for part in duration.split(":"))
        except ValueError:
            return None
        return float(hours * 3600 + minutes * 60 + seconds)
    seconds = message.get("Seconds")
    return float(seconds) if seconds.isdigit() else None
