"""Channels, bridges and the identifiers Asterisk gives them.

Identifiers follow the captures: a Uniqueid is ``<epoch seconds>.<sequence>`` with one sequence
for the whole PBX; Local channels are ``Local/<exten>@<context>-<8 hex digits>;1`` and ``;2``
with one counter for all Local pairs; trunk channels are ``IAX2/carrier-<call number>``; bridge
ids are UUIDs. An inbound call's first channel is its own Linkedid; every channel created on its
behalf (queue member legs, the outbound leg of a callback) takes the Linkedid of the channel
that caused it.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from callback_dialer.ami.asterisk import UNKNOWN_ID, ChannelState

from .wire import BridgeView


@dataclass(eq=False, slots=True)
class Channel:
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    created_at: float
    channelvars: tuple[str, ...]
    priority: int = 1
    state: ChannelState = ChannelState.DOWN
    caller_num: str = UNKNOWN_ID
    caller_name: str = UNKNOWN_ID
    connected_num: str = UNKNOWN_ID
    connected_name: str = UNKNOWN_ID
    language: str = "en"
    accountcode: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    application: str = ""
    app_data: str = ""
    bridge: Bridge | None = None
    hung_up: bool = False
    tech: str = ""  # IAX2, Local, PJSIP: Status's "Type"
    dnid: str = ""

    def chanvars(self) -> list[tuple[str, str]]:
        return [(name, self.variables.get(name, "")) for name in self.channelvars]

    def at(
        self, context: str | None = None, exten: str | None = None, priority: int | None = None
    ) -> Channel:
        """Move the channel in the dialplan (what the next event will show)."""
        if context is not None:
            self.context = context
        if exten is not None:
            self.exten = exten
        if priority is not None:
            self.priority = priority
        return self


@dataclass(eq=False, slots=True)
class Bridge:
    uniqueid: str
    members: list[Channel] = field(default_factory=list)

    def view(self) -> BridgeView:
        return BridgeView(uniqueid=self.uniqueid, num_channels=len(self.members))


class Identifiers:
    """Uniqueids, Local channel counters, trunk call numbers and bridge ids; seeded, so one
    seed gives one set of names."""

    def __init__(self, rng: random.Random, first_sequence: int = 1) -> None:
        self._rng = rng
        self._sequence = first_sequence
        self._local = 0
        self._taken: set[str] = set()

    def uniqueid(self, now: float) -> str:
        while True:
            uid = f"{int(now)}.{self._sequence}"
            self._sequence += 1
            if uid not in self._taken:
                return uid

    def reserve(self, uid: str) -> None:
        """A uniqueid chosen by a client (Originate's ChannelId): never hand it out."""
        self._taken.add(uid)

    def local_suffix(self) -> str:
        suffix = f"{self._local:08x}"
        self._local += 1
        return suffix

    def trunk_call_number(self) -> int:
        return self._rng.randint(1, 16383)

    def bridge_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
