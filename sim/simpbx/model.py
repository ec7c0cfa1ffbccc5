"""What the simulated PBX is made of, and how the people on its phones behave.

The defaults are the PBX that recorded ``../shared/ami-captures`` (its ``asterisk/`` folder):
queues ``sales`` and ``support`` (rrmemory, ringinuse=no), agents 101 (sales), 102 (both) and
103 (support) as ``Local/NNN@agents/n`` members, the IVR of extensions.conf, a carrier trunk.

Behaviour is pluggable: an ``AgentBehaviour`` decides when an agent answers and how long they
talk, a ``CallerScript`` what one inbound caller does, a ``CustomerBehaviour`` what a called
customer does (see customers.py).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Literal, Protocol

from callback_dialer.ami.asterisk import CALLBACK_ID_VAR, CATEGORY_VAR, UNKNOWN_ID, DialStatus


@dataclass(frozen=True, slots=True)
class QueueSpec:
    name: str
    strategy: str = "rrmemory"  # reported as given; members are always rung rrmemory-style
    timeout: float = 10.0  # how long one member rings before the queue tries the next
    retry: float = 2.0  # pause between ring attempts
    wrapuptime: int = 0
    weight: int = 0
    max_callers: int = 0


@dataclass(frozen=True, slots=True)
class IvrOption:
    """One IVR choice: the category it sets and the queues it tries in turn, each with its
    Queue() timeout (None: the dialplan's QTIMEOUT)."""

    category: str
    queues: tuple[tuple[str, float | None], ...]


DEFAULT_IVR = {
    "1": IvrOption("new_connection", (("sales", None),)),
    "2": IvrOption("support", (("support", None),)),
    "3": IvrOption("billing", (("support", None),)),
    "t": IvrOption("other", (("support", None),)),
    # A new subscriber whom sales does not pick up within 4 s overflows to support.
    "7": IvrOption("new_connection", (("sales", 4.0), ("support", None))),
}


@dataclass(frozen=True, slots=True)
class IvrSpec:
    context: str = "ivr-in"
    options: dict[str, IvrOption] = field(default_factory=lambda: dict(DEFAULT_IVR))
    wait_exten: float = 6.0
    queue_timeout: float = 300.0  # QTIMEOUT
    # Between Answer() and the menu (the captures show 20 ms).
    prompt_delay: float = 0.02


class AgentBehaviour(Protocol):
    def answer_delay(self, rng: random.Random, *, callback: bool) -> float | None:
        """Seconds the phone rings before the agent answers; None: it rings out."""

    def talk_seconds(self, rng: random.Random, *, callback: bool) -> float:
        """How long the agent talks before hanging up (a queue call, or a callback once the
        customer answered)."""

    def hold_seconds(self, rng: random.Random) -> float:
        """How long an agent on a callback waits for the customer to answer."""


@dataclass(frozen=True, slots=True)
class FixedAgent:
    """The captures' agents: answer at once, talk ``talk`` seconds (the dialplan's TALK=6),
    and on a callback stay on the line until the customer answers or the dial times out."""

    delay: float | None = 0.0
    talk: float = 6.0
    hold: float = 3600.0

    def answer_delay(self, rng: random.Random, *, callback: bool) -> float | None:
        return self.delay

    def talk_seconds(self, rng: random.Random, *, callback: bool) -> float:
        return self.talk

    def hold_seconds(self, rng: random.Random) -> float:
        return self.hold


NEVER_ANSWERS = FixedAgent(delay=None)  # agent 109: a phone left ringing on an empty desk


@dataclass(frozen=True, slots=True)
class RandomAgent:
    """Agents of the traffic model: answer after a few seconds (sometimes not at all), talk a
    lognormal time around ``talk_median``."""

    answer_min: float = 1.0
    answer_max: float = 6.0
    miss_probability: float = 0.02
    talk_median: float = 180.0
    talk_sigma: float = 0.6
    callback_talk_median: float = 150.0
    hold: float = 45.0

    def answer_delay(self, rng: random.Random, *, callback: bool) -> float | None:
        if rng.random() < self.miss_probability:
            return None
        return rng.uniform(self.answer_min, self.answer_max)

    def talk_seconds(self, rng: random.Random, *, callback: bool) -> float:
        median = self.callback_talk_median if callback else self.talk_median
        return max(5.0, rng.lognormvariate(_ln(median), self.talk_sigma))

    def hold_seconds(self, rng: random.Random) -> float:
        return self.hold


def _ln(x: float) -> float:
    return math.log(max(x, 1e-9))


@dataclass(frozen=True, slots=True)
class AgentSpec:
    extension: str
    queues: tuple[str, ...]
    name: str = ""
    tech: Literal["local", "pjsip"] = "local"
    membership: Literal["static", "dynamic"] = "static"
    logged_in: bool = True
    paused: bool = False
    paused_reason: str = ""
    wrapuptime: int = 0
    penalty: int = 0
    behaviour: AgentBehaviour = FixedAgent()

    @property
    def member_name(self) -> str:
        return self.name or f"Agent {self.extension}"


@dataclass(frozen=True, slots=True)
class PbxSpec:
    queues: tuple[QueueSpec, ...] = (QueueSpec("sales"), QueueSpec("support"))
    agents: tuple[AgentSpec, ...] = (
        AgentSpec("101", ("sales",)),
        AgentSpec("102", ("sales", "support")),
        AgentSpec("103", ("support",)),
        # Not in any queue: a phone left ringing on an empty desk (the callbacks capture).
        AgentSpec("109", (), behaviour=NEVER_ANSWERS),
    )
    ivr: IvrSpec = field(default_factory=IvrSpec)
    # manager.conf channelvars: copied onto every channel event, in this order.
    channelvars: tuple[str, ...] = (CATEGORY_VAR, CALLBACK_ID_VAR)
    trunk: str = "carrier"
    agent_context: str = "agents"  # Local/NNN@agents
    pjsip_context: str = "from-internal"
    internal_context: str = "from-internal"
    ivr_extension: str = "100"  # what an internal phone dials to reach the IVR
    # The generated dialplan's dial string of that trunk ([[dispatch.trunks]] dial): what
    # callback-outbound and callback-customer Dial(), and the technology of the channel.
    trunk_dial: str = "IAX2/{trunk}/{number}"
    # callback-outbound: Dial(IAX2/carrier/${EXTEN},20)
    callback_context: str = "callback-outbound"
    callback_dial_timeout: float = 20.0
    # How long callback-whisper takes on the agent's channel (CALLBACK_WHISPER=1).
    whisper_seconds: float = 6.0
    # customer first: Local/<number>@callback-customer dials the customer, then the
    # Originate's Context (callback-agent) dials ${CALLBACK_AGENT}.
    customer_context: str = "callback-customer"
    # What callback-customer sets before dialling: Set(CALLERID(all)=${CALLBACK_PUBLIC_CALLERID})
    public_callerid: str = '"Support" <74950000000>'
    customer_dial_timeout: float = 30.0
    agent_dial_timeout: float = 15.0
    # after-queue / queue-exit: Wait(1) before Hangup()
    goodbye_seconds: float = 1.0
    # The generated dialplan's callback offer (the dialer's callback-door and callback-offer
    # contexts): the dialer's FastAGI server, "host:port"; "" plays the plain dialplan above.
    agi_address: str = ""
    # How long the offer's prompts take: the ETA and the number read back up to the Read of
    # the choice, and typing another number; [ivr] number_tries of the rendered dialplan.
    offer_prompt_seconds: float = 12.0
    typing_seconds: float = 6.0
    offer_number_tries: int = 2
    seed: int = 0
    # The shipped dialplan's hangup handlers write records into AstDB under this family
    # (astdb.py); "" is an older dialplan that writes none.
    records_family: str = ""
    # ... and also the numbered index the dialplan keeps for Asterisk without DBGetTree.
    records_index: bool = False
    # False: an Asterisk before 16.28, 18.14, 19.6, which has no DBGetTree action.
    has_dbgettree: bool = True

    def dial_string(self, number: str) -> str:
        """What the dialplan's Dial() gets for ``number`` (``IAX2/carrier/79161234567``)."""
        return self.trunk_dial.replace("{number}", number).replace("{trunk}", self.trunk)

    def dialed_peer(self, number: str) -> str:
        """The dial string without its technology, as DialBegin's DialString and
        DIALEDPEERNUMBER show it (``carrier/79161234567``)."""
        return self.dial_string(number).split("/", 1)[1]

    @property
    def trunk_tech(self) -> str:
        return self.trunk_dial.split("/", 1)[0]


@dataclass(frozen=True, slots=True)
class CallerScript:
    """What one inbound caller does.

    ``choice``: the IVR key (``"1"``..), ``None`` to let the menu time out (category other),
    ``"hangup"`` to hang up in the IVR after ``choice_after`` seconds.
    ``patience``: seconds in the queue(s) before hanging up (None: waits for ever).
    ``star_after``: presses ``*`` after this long in a queue (asks for a callback).
    ``talk``: hangs up this long after an agent answered (None: the agent ends the call).
    ``offer``: with ``PbxSpec.agi_address``, what the caller keys at each Read of the callback
    offer, in order: ``("1",)`` takes it on the caller ID; ``("2", "89031234564", "1")`` types
    another number and confirms it; ``()`` chooses nothing (None: the same).
    """

    choice: str | None = "1"
    choice_after: float = 1.18
    patience: float | None = None
    star_after: float | None = None
    talk: float | None = None
    name: str = UNKNOWN_ID
    offer: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class CustomerResponse:
    """What a called customer does: ``status`` is the DialEnd status they cause (ANSWER, BUSY,
    NOANSWER, CONGESTION, CHANUNAVAIL); ``ring`` seconds before it; ``talk`` after answering."""

    status: DialStatus
    ring: float = 0.0
    talk: float = 0.0


class CustomerBehaviour(Protocol):
    def respond(self, number: str, now: float) -> CustomerResponse:
        """``number`` as dialled on the trunk (the Originate's Exten)."""
