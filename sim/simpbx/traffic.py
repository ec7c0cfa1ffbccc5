"""A day of subscribers calling the simulated PBX, planned from a profile and a seed.

``plan_day`` draws the day: who calls when (the profile's hourly rhythm), wanting what, how
they move through the IVR, how long they wait, whether they press ``*``; which agents work
when and take which breaks. The same profile and seed give the same plan, whatever the clock.

``TrafficRunner`` plays a plan on a SimPbx: it places the calls on time, logs agents in and
out and pauses them for breaks, makes unanswered callers call again (some do), and answers the
callbacks that reach subscribers' phones (busy while they are on another call; otherwise
answered, busy, unanswered or unreachable as the profile says). Its decisions at run time come
from per-subscriber generators seeded from the plan, so a day replayed against the same dialer
behaviour is the same day.
"""

from __future__ import annotations

import datetime as dt
import math
import random
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from callback_dialer.ami.asterisk import UNKNOWN_ID, DialStatus

from .customers import RandomCustomers
from .ledger import Ledger
from .model import (
    AgentSpec,
    CallerScript,
    CustomerResponse,
    PbxSpec,
    QueueSpec,
    RandomAgent,
)
from .observe import CallEnded, Notice
from .pbx import SimPbx
from .profile import CATEGORY_KEYS, BreakSpec, Range, TrafficProfile


@dataclass(frozen=True, slots=True)
class Subscriber:
    id: str
    number: str  # canonical: 79161234567 (an office phone: its extension)
    caller_id: str  # as the trunk presents it: +79161234567, 89161234567, anonymous
    kind: str  # external | internal | withheld
    intent: str  # the classifier's word for what they want ("internal" for office phones)
    category: str  # where the IVR puts them


@dataclass(frozen=True, slots=True)
class PlannedCall:
    at: float
    subscriber: str
    script: CallerScript


@dataclass(frozen=True, slots=True)
class AgentPlan:
    extension: str
    queues: tuple[str, ...]
    shifts: tuple[tuple[float, float], ...]  # (login, logout) epochs
    breaks: tuple[tuple[float, float, str], ...]  # (start, end, reason)

    def working(self, at: float) -> bool:
        return any(start <= at < end for start, end in self.shifts)


@dataclass(frozen=True, slots=True)
class DayPlan:
    start: float
    end: float
    seed: int
    subscribers: tuple[Subscriber, ...]
    calls: tuple[PlannedCall, ...]  # first calls; redials happen at run time
    agents: tuple[AgentPlan, ...]

    def subscriber(self, subscriber_id: str) -> Subscriber:
        for sub in self.subscribers:
            if sub.id == subscriber_id:
                return sub
        raise KeyError(subscriber_id)


# --------------------------------------------------------------------------- planning


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 60:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def _uniform(rng: random.Random, r: Range) -> float:
    return rng.uniform(r.min, r.max)


def _pick(rng: random.Random, shares: dict[str, float]) -> str:
    total = sum(shares.values())
    roll = rng.random() * total
    for key, share in shares.items():
        if roll < share:
            return key
        roll -= share
    return next(reversed(shares))


class _Numbers:
    """Unique, plausible Russian numbers: mostly mobile, some Moscow landlines."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()

    def external(self) -> str:
        while True:
            if self.rng.random() < 0.12:
                number = "7" + self.rng.choice(("495", "499")) + f"{self.rng.randrange(10**7):07d}"
            else:
                number = "79" + f"{self.rng.randrange(10**9):09d}"
            if number not in self.used:
                self.used.add(number)
                return number

    def district(self, start: str) -> str:
        """A subscriber of the district whose numbers begin with ``start``."""
        free = 11 - len(start)
        while True:
            number = start + f"{self.rng.randrange(10**free):0{free}d}"
            if number not in self.used:
                self.used.add(number)
                return number

    def internal(self) -> str:
        # Office extensions 201..299; a big office runs into four digits (still short).
        for low, high in ((201, 299), (2000, 9999)):
            free = (
                high - low + 1 - sum(1 for n in self.used if low <= int(n) <= high and len(n) < 10)
            )
            if free <= 0:
                continue
            while True:
                number = str(self.rng.randint(low, high))
                if number not in self.used:
                    self.used.add(number)
                    return number
        raise ValueError("more office phones than extensions")


def _present(rng: random.Random, number: str, formats: dict[str, float]) -> str:
    style = _pick(rng, dict(formats))
    if style == "plus":
        return "+" + number
    if style == "eight":
        return "8" + number[1:]
    return number


def caller_script(
    rng: random.Random, profile: TrafficProfile, category: str, name: str = UNKNOWN_ID
) -> CallerScript:
    """One call's behaviour: IVR choice and timing, patience, ``*``, talk."""
    ivr, patience = profile.ivr, profile.patience
    roll = rng.random()
    talk = max(5.0, rng.lognormvariate(math.log(patience.talk_median), 0.7))
    band = rng.choices(patience.bands, weights=[b.share for b in patience.bands])[0]
    wait = _uniform(rng, band)
    star = _uniform(rng, patience.star_after) if rng.random() < patience.star_share else None
    if roll < ivr.hangup_share:
        return CallerScript(
            choice="hangup", choice_after=_uniform(rng, ivr.hangup_after), name=name
        )
    if roll < ivr.hangup_share + ivr.no_choice_share or CATEGORY_KEYS[category] is None:
        key = None
    else:
        key = CATEGORY_KEYS[category]
        if category == "new_connection" and rng.random() < ivr.overflow_share:
            key = "7"
    return CallerScript(
        choice=key,
        choice_after=_uniform(rng, ivr.choose_after),
        patience=wait,
        star_after=star,
        talk=talk,
        name=name,
    )


def _local_midnight(at: float, tz: ZoneInfo) -> dt.datetime:
    local = dt.datetime.fromtimestamp(at, tz)
    return local.replace(hour=0, minute=0, second=0, microsecond=0)


def _hour_slots(start: float, end: float, tz: ZoneInfo) -> list[tuple[float, float, int]]:
    """(slot start, slot end, local hour) covering [start, end)."""
    slots = []
    t = start
    while t < end:
        local = dt.datetime.fromtimestamp(t, tz)
        next_hour = (
            local.replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
        ).timestamp()
        stop = min(next_hour, end)
        slots.append((t, stop, local.hour))
        t = stop
    return slots


def _place_breaks(
    rng: random.Random, specs: tuple[BreakSpec, ...], begin: float, end: float
) -> list[tuple[float, float, str]]:
    """Every paused spell somewhere in [begin, end), in random order, never two at once
    (a minute at least between them); spells that cannot fit are left out."""
    spells = [(b.length, b.reason) for b in specs for _ in range(b.count)]
    rng.shuffle(spells)
    while spells and sum(length for length, _ in spells) + 60 * len(spells) > end - begin:
        spells.pop()
    free = end - begin - sum(length for length, _ in spells) - 60 * len(spells)
    cuts = sorted(rng.uniform(0, free) for _ in spells)
    out, at, previous = [], begin, 0.0
    for (length, reason), cut in zip(spells, cuts, strict=True):
        at += cut - previous
        previous = cut
        out.append((at, at + length, reason))
        at += length + 60
    return out


def plan_agents(
    profile: TrafficProfile, start: float, end: float, rng: random.Random
) -> tuple[AgentPlan, ...]:
    spec = profile.agents
    tz = ZoneInfo(profile.timezone)
    shares = [g.share for g in spec.groups]
    total = sum(shares)
    # Largest remainder: group sizes that add up to the count.
    exact = [spec.count * s / total for s in shares]
    sizes = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - sizes[i], reverse=True)[
        : spec.count - sum(sizes)
    ]:
        sizes[i] += 1
    shift_start, shift_end = spec.shift_times()
    days = []
    day = _local_midnight(start, tz)
    while day.timestamp() < end:
        begin = day.replace(hour=shift_start.hour, minute=shift_start.minute).timestamp()
        finish = day.replace(
            hour=shift_end.hour, minute=shift_end.minute, second=shift_end.second
        ).timestamp()
        days.append((begin, finish))
        day = (day + dt.timedelta(days=1, hours=2)).replace(hour=0)
    plans = []
    extension = spec.first_extension
    for group, size in zip(spec.groups, sizes, strict=True):
        for _ in range(size):
            breaks: list[tuple[float, float, str]] = []
            for login, logout in days:
                breaks.extend(_place_breaks(rng, spec.breaks, login + 1800, logout - 1800))
            plans.append(
                AgentPlan(
                    extension=str(extension),
                    queues=tuple(group.queues),
                    shifts=tuple(days),
                    breaks=tuple(breaks),
                )
            )
            extension += 1
    return tuple(plans)


def plan_day(
    profile: TrafficProfile, start: float, *, hours: float = 24.0, seed: int | None = None
) -> DayPlan:
    """The traffic of ``hours`` from ``start`` (epoch seconds)."""
    seed = profile.seed if seed is None else seed
    rng = random.Random(seed)
    tz = ZoneInfo(profile.timezone)
    end = start + hours * 3600
    weights = profile.calls.hourly
    per_hour = [profile.calls.per_day * w / sum(weights) for w in weights]
    numbers = _Numbers(random.Random(seed * 7919 + 1))
    intents = profile.intent_shares()
    subscribers: list[Subscriber] = []
    calls: list[PlannedCall] = []
    for slot_start, slot_end, hour in _hour_slots(start, end, tz):
        count = _poisson(rng, per_hour[hour] * (slot_end - slot_start) / 3600)
        for at in sorted(rng.uniform(slot_start, slot_end) for _ in range(count)):
            sid = f"s{len(subscribers) + 1:05d}"
            roll = rng.random()
            if roll < profile.calls.internal_share:
                number = numbers.internal()
                sub = Subscriber(
                    sid, number, number, "internal", "internal", rng.choice(("support", "billing"))
                )
            else:
                intent = _pick(rng, intents)
                category = profile.intent_categories[intent]
                number = numbers.external()
                if rng.random() < profile.calls.withheld_share:
                    sub = Subscriber(
                        sid,
                        number,
                        rng.choice(("anonymous", UNKNOWN_ID)),
                        "withheld",
                        intent,
                        category,
                    )
                else:
                    sub = Subscriber(
                        sid,
                        number,
                        _present(rng, number, profile.calls.id_formats),
                        "external",
                        intent,
                        category,
                    )
            subscribers.append(sub)
            calls.append(PlannedCall(at, sid, caller_script(rng, profile, sub.category)))
    if profile.outage.enabled:
        _plan_outage(profile, start, end, per_hour, numbers, subscribers, calls, seed, tz)
        calls.sort(key=lambda c: c.at)
    agents = plan_agents(profile, start, end, random.Random(seed * 104729 + 3))
    return DayPlan(
        start=start,
        end=end,
        seed=seed,
        subscribers=tuple(subscribers),
        calls=tuple(calls),
        agents=agents,
    )


def outage_window(profile: TrafficProfile, start: float) -> tuple[float, float]:
    """When the profile's outage runs on the day that begins at ``start`` (epochs)."""
    tz = ZoneInfo(profile.timezone)
    hour, minute = (int(x) for x in profile.outage.start.split(":"))
    begin = _local_midnight(start, tz).replace(hour=hour, minute=minute).timestamp()
    return begin, begin + profile.outage.length


def _plan_outage(
    profile: TrafficProfile,
    start: float,
    end: float,
    per_hour: list[float],
    numbers: _Numbers,
    subscribers: list[Subscriber],
    calls: list[PlannedCall],
    seed: int,
    tz: ZoneInfo,
) -> None:
    """The district's extra calls while its outage lasts: (multiplier - 1) times its usual
    share of the traffic, each from a district subscriber of its own, all about the outage."""
    outage = profile.outage
    rng = random.Random(seed * 15485863 + 5)
    begin, finish = outage_window(profile, start)
    begin, finish = max(begin, start), min(finish, end)
    category = profile.intent_categories[outage.intent]
    extra = outage.district_share * (outage.multiplier - 1)
    for slot_start, slot_end, hour in _hour_slots(begin, finish, tz):
        count = _poisson(rng, per_hour[hour] * extra * (slot_end - slot_start) / 3600)
        for at in sorted(rng.uniform(slot_start, slot_end) for _ in range(count)):
            sid = f"s{len(subscribers) + 1:05d}"
            number = numbers.district(outage.district)
            subscribers.append(
                Subscriber(
                    sid,
                    number,
                    _present(rng, number, profile.calls.id_formats),
                    "external",
                    outage.intent,
                    category,
                )
            )
            calls.append(PlannedCall(at, sid, caller_script(rng, profile, category)))


def pbx_spec(profile: TrafficProfile, plan: DayPlan) -> PbxSpec:
    """The PBX a plan runs on: the captures' queues and IVR, the profile's agents (logged in
    if their shift has begun at the plan's start)."""
    a = profile.agents
    behaviour = RandomAgent(
        answer_min=a.answer_after.min,
        answer_max=a.answer_after.max,
        miss_probability=a.miss_share,
        talk_median=a.talk_median,
        callback_talk_median=a.callback_talk_median,
        hold=a.callback_hold,
    )
    agents = tuple(
        AgentSpec(
            extension=p.extension,
            queues=p.queues,
            tech=a.tech,
            membership="dynamic",
            logged_in=p.working(plan.start),
            wrapuptime=int(a.wrapup),
            behaviour=behaviour,
        )
        for p in plan.agents
    )
    return PbxSpec(queues=(QueueSpec("sales"), QueueSpec("support")), agents=agents, seed=plan.seed)


# --------------------------------------------------------------------------- running


class TrafficRunner:
    """Plays a DayPlan on a SimPbx; its ledger records what happened to everyone."""

    def __init__(
        self, pbx: SimPbx, plan: DayPlan, profile: TrafficProfile, ledger: Ledger | None = None
    ) -> None:
        self.pbx = pbx
        self.plan = plan
        self.profile = profile
        self.ledger = ledger or Ledger()
        self.subs = {s.id: s for s in plan.subscribers}
        self.rngs = {s.id: random.Random(f"{plan.seed}:{s.id}") for s in plan.subscribers}
        self.redials: dict[str, int] = {}
        self.calls_placed = 0
        self.other_numbers = RandomCustomers(random.Random(plan.seed + 99))
        self._live: dict[str, str] = {}  # call id -> subscriber id
        pbx.observers.append(self.ledger)
        pbx.observers.append(self)
        pbx.customers = self
        for sub in plan.subscribers:
            self.ledger.register(sub.id, sub.number, kind=sub.kind, intent=sub.intent)

    def start(self) -> None:
        """Set every planned call and every agent's day on the PBX's timers."""
        now = self.pbx.clock.now()
        later = self.pbx.scheduler.call_later
        for call in self.plan.calls:
            if call.at >= now:
                later(call.at - now, self._place, call.subscriber, call.script)
        for agent in self.plan.agents:
            for login, logout in agent.shifts:
                if login > now:
                    later(login - now, self._login, agent)
                if logout > now:
                    later(logout - now, self._logout, agent)
            for begin, end, reason in agent.breaks:
                if begin > now:
                    later(begin - now, self.pbx.pause, agent.extension, True, reason)
                    later(end - now, self.pbx.pause, agent.extension, False)

    def _login(self, agent: AgentPlan) -> None:
        for queue in agent.queues:
            self.pbx.add_member(agent.extension, queue)

    def _logout(self, agent: AgentPlan) -> None:
        for queue in agent.queues:
            self.pbx.remove_member(agent.extension, queue)

    def _place(self, sid: str, script: CallerScript) -> None:
        sub = self.subs[sid]
        if self.ledger.on_inbound_call(sid):
            return  # one phone, one call
        self.calls_placed += 1
        call = self.pbx.place_call(sub.caller_id, script, tag=sid, internal=sub.kind == "internal")
        self._live[call.call_id] = sid

    # ------------------------------------------------------------------ reactions

    def notice(self, event: Notice) -> None:
        if not isinstance(event, CallEnded):
            return
        sid = self._live.pop(event.call_id, "")
        if not sid:
            return
        sub, rng, redial = self.subs[sid], self.rngs[sid], self.profile.redial
        if event.outcome == "served":
            if rng.random() < redial.after_served_probability:
                self._again(sid, _uniform(rng, redial.after_served), new_need=True)
            return
        done = self.redials.get(sid, 0)
        if (
            sub.kind != "internal"
            and done < redial.max_redials
            and rng.random() < redial.probability
        ):
            self.redials[sid] = done + 1
            self._again(sid, _uniform(rng, redial.after), new_need=False)

    def _again(self, sid: str, delay: float, *, new_need: bool) -> None:
        def call_again() -> None:
            # A callback may have served them meanwhile: then they have no reason to call.
            if not new_need and not self.ledger.need_open(sid):
                return
            script = caller_script(self.rngs[sid], self.profile, self.subs[sid].category)
            self._place(sid, script)

        self.pbx.scheduler.call_later(delay, call_again)

    def respond(self, number: str, now: float) -> CustomerResponse:
        """A callback reaches a phone (the PBX's CustomerBehaviour)."""
        sid = self.ledger.subscriber_for_number(number)
        if not sid or sid not in self.subs:
            return self.other_numbers.respond(number, now)
        if self.ledger.on_the_phone(sid, now):
            return CustomerResponse(DialStatus.BUSY)  # one phone, one call (no call waiting)
        rng, cb = self.rngs[sid], self.profile.callbacks
        ring = _uniform(rng, cb.ring)
        roll = rng.random()
        if roll < cb.busy:
            return CustomerResponse(DialStatus.BUSY, ring=min(ring, 2.0))
        roll -= cb.busy
        if roll < cb.no_answer:
            return CustomerResponse(DialStatus.NOANSWER, ring=ring)
        roll -= cb.no_answer
        if roll < cb.unreachable:
            return CustomerResponse(DialStatus.CHANUNAVAIL, ring=1.0)
        if self.ledger.need_open(sid):
            talk = max(5.0, rng.lognormvariate(math.log(cb.talk_median), 0.6))
        else:
            talk = cb.served_talk
        return CustomerResponse(DialStatus.ANSWER, ring=ring, talk=talk)
