"""A traffic profile: who calls the simulated PBX in a day, what they want, how patient they
are, what they do when called back, and who answers. One TOML file (config/traffic.toml),
parsed once into frozen, typed objects; a wrong key, type or value raises ``ProfileError``
whose lines each name the key (dotted, with list indexes).

The defaults are the provider audits of issue 7: a day of 172 calls at an ISP; callers wanting
a new connection 9%, support 28%, billing 7%, conditions 5%, coordination 8%, cancelling 1%,
internal 3% (the classifier's mix; the 39% it never heard are spread in proportion); a
mid-morning and an evening peak; many hang up within a minute, some wait five.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

DEFAULT_PROFILE_PATH = Path("config/traffic.toml")

CATEGORIES = ("new_connection", "support", "billing", "other")
# The IVR key for each category (extensions.conf); "other" is the menu timing out.
CATEGORY_KEYS = {"new_connection": "1", "support": "2", "billing": "3", "other": None}


# Durations are written as in the dialer's own config (one habit for both files), parsed here so
# the simulator needs nothing of the product but the wire codec and Asterisk's vocabulary.
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_HINT = 'a number of seconds or a duration like "90s", "15m", "1h30m", "2d"'


def parse_duration(value: Any) -> float:
    """Seconds from ``300``, ``"300"``, ``"5m"``, ``"1h30m"``; ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"expected {DURATION_HINT}, got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"must not be negative, got {value!r}")
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        pos, total = 0, 0.0
        for match in _DURATION_PART.finditer(text):
            if match.start() != pos:
                break
            total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if text and pos == len(text):
            return total
    raise ValueError(f"expected {DURATION_HINT}, got {value!r}")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class ProfileError(Exception):
    """The profile cannot be used. ``problems`` holds one line per fault."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Range(Strict):
    """A uniform draw between two durations."""

    min: Duration
    max: Duration

    @model_validator(mode="after")
    def _order(self) -> Range:
        if self.max < self.min:
            raise ValueError("max must not be below min")
        return self


def _range(lo: str, hi: str) -> Range:
    return Range(min=parse_duration(lo), max=parse_duration(hi))


class Band(Range):
    """A share of callers whose value lies between min and max."""

    share: float = Field(gt=0)


class CallsSection(Strict):
    # Mean number of people calling in a day (each day drawn around it). Those nobody answers
    # may call again (redial); with the defaults a day has about 172 calls in all.
    per_day: float = Field(155.0, ge=0)
    # Share of the day's calls in each hour 00..23, local time; need not add up to 1.
    hourly: tuple[float, ...] = (
        0.3,
        0.2,
        0.1,
        0.1,
        0.1,
        0.2,
        0.6,
        2.0,
        5.5,
        9.0,
        10.5,
        9.5,
        7.5,
        7.0,
        6.5,
        6.5,
        7.0,
        8.0,
        9.0,
        7.5,
        4.5,
        2.5,
        1.2,
        0.6,
    )
    # Office phones calling the hotline (short extensions, never over the trunk).
    internal_share: float = Field(0.03, ge=0, le=1)
    # Callers whose number is withheld (cannot be called back).
    withheld_share: float = Field(0.01, ge=0, le=1)
    # How the trunk presents caller IDs: +7..., 8..., 7...
    id_formats: dict[Literal["plus", "eight", "seven"], float] = Field(
        default_factory=lambda: {"plus": 0.6, "eight": 0.3, "seven": 0.1}
    )

    @model_validator(mode="after")
    def _hours(self) -> CallsSection:
        if len(self.hourly) != 24:
            raise ValueError(f"hourly: needs 24 values (hours 0..23), got {len(self.hourly)}")
        if any(v < 0 for v in self.hourly) or not sum(self.hourly):
            raise ValueError("hourly: values must be non-negative and not all zero")
        if not sum(self.id_formats.values()):
            raise ValueError("id_formats: at least one share must be above zero")
        return self


class IvrSection(Strict):
    # Let the menu time out without pressing anything (category other).
    no_choice_share: float = Field(0.08, ge=0, le=1)
    # Hang up in the IVR before choosing.
    hangup_share: float = Field(0.05, ge=0, le=1)
    choose_after: Range = Field(default_factory=lambda: _range("1s", "5s"))
    hangup_after: Range = Field(default_factory=lambda: _range("2s", "5.5s"))
    # New subscribers who press 7 (sales, overflowing to support after 4 s) instead of 1.
    overflow_share: float = Field(0.0, ge=0, le=1)


class PatienceSection(Strict):
    # How long callers wait in a queue before they hang up: shares of bands.
    bands: tuple[Band, ...] = (
        Band(share=0.50, min=5, max=60),
        Band(share=0.32, min=60, max=180),
        Band(share=0.18, min=180, max=330),
    )
    # Callers who press * (ask for a callback) after waiting a while instead of hanging up.
    star_share: float = Field(0.07, ge=0, le=1)
    star_after: Range = Field(default_factory=lambda: _range("20s", "90s"))
    # How long a caller talks once answered (lognormal median); the agent may end it sooner.
    talk_median: Duration = 150.0


class RedialSection(Strict):
    # After a call nobody answered, the share who call again ...
    probability: float = Field(0.35, ge=0, le=1)
    # ... this long after hanging up ...
    after: Range = Field(default_factory=lambda: _range("3m", "90m"))
    # ... at most this many times.
    max_redials: StrictInt = Field(2, ge=0, le=10)
    # Served callers who call again later that day about something new.
    after_served_probability: float = Field(0.03, ge=0, le=1)
    after_served: Range = Field(default_factory=lambda: _range("1h", "4h"))


class CallbackSection(Strict):
    """What a subscriber's phone does when a callback reaches it (the rest: answered)."""

    busy: float = Field(0.07, ge=0, le=1)
    no_answer: float = Field(0.15, ge=0, le=1)
    unreachable: float = Field(0.03, ge=0, le=1)
    ring: Range = Field(default_factory=lambda: _range("3s", "15s"))
    talk_median: Duration = 120.0
    # Someone whose problem is already solved answers and ends the call quickly.
    served_talk: Duration = 15.0


class BreakSpec(Strict):
    reason: str = Field(pattern=r"^[A-Za-z0-9_ -]{1,32}$")
    count: StrictInt = Field(ge=0, le=20)
    length: Duration


class AgentGroup(Strict):
    share: float = Field(gt=0)
    queues: tuple[Literal["sales", "support"], ...] = Field(min_length=1)


class AgentsSection(Strict):
    count: StrictInt = Field(3, ge=0, le=5000)
    groups: tuple[AgentGroup, ...] = (
        AgentGroup(share=1, queues=("sales",)),
        AgentGroup(share=1, queues=("sales", "support")),
        AgentGroup(share=1, queues=("support",)),
    )
    # Working hours, local time (logged in to their queues in between).
    shift: str = "09:00-21:00"
    # How agents reach their phones: Local/1NN@agents/n (the captures) or PJSIP/1NN.
    tech: Literal["local", "pjsip"] = "local"
    first_extension: StrictInt = Field(101, ge=1)
    answer_after: Range = Field(default_factory=lambda: _range("1s", "5s"))
    miss_share: float = Field(0.02, ge=0, le=1)
    talk_median: Duration = 300.0
    callback_talk_median: Duration = 180.0
    # Asterisk's wrapuptime for each member (seconds between queue calls).
    wrapup: Duration = 30.0
    # How long an agent on a callback waits for the customer to pick up.
    callback_hold: Duration = 45.0
    # Paused spells in each shift, placed at random without overlapping. "tickets": the
    # back-office work that keeps agents off the phone a good part of the day.
    breaks: tuple[BreakSpec, ...] = (
        BreakSpec(reason="break", count=2, length=600),
        BreakSpec(reason="lunch", count=1, length=1800),
        BreakSpec(reason="tickets", count=6, length=1800),
    )

    @model_validator(mode="after")
    def _shift(self) -> AgentsSection:
        self.shift_times()
        return self

    def shift_times(self) -> tuple[dt.time, dt.time]:
        m = _SHIFT.match(self.shift)
        if not m:
            raise ValueError(f'shift: expected a range like "09:00-21:00", got {self.shift!r}')
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2, m2) <= (h1, m1) or (h2 == 24 and m2):
            raise ValueError(f"shift: {self.shift!r} is not a range within one day")
        end = dt.time(23, 59, 59) if h2 == 24 else dt.time(h2, m2)
        return dt.time(h1, m1), end


_SHIFT = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class Intents(Strict):
    """What callers want, as one provider's classifier counted it (normalised)."""

    new_connection: float = Field(9, ge=0)
    support: float = Field(28, ge=0)
    billing: float = Field(7, ge=0)
    consultation: float = Field(5, ge=0)
    coordination: float = Field(8, ge=0)
    cancelling: float = Field(1, ge=0)


class OutageSection(Strict):
    """An ISP's busiest hours (issue 17): an outage in one district, whose subscribers call
    support ``multiplier`` times as often as usual for ``length`` from ``start``. Their extra
    calls come on top of the day's traffic; everyone else calls as usual."""

    enabled: StrictBool = False
    start: str = Field("11:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$")  # local time
    length: Duration = 7200.0
    # The district's numbers begin so (canonical digits: 7495123 for +7 495 123-..).
    district: str = Field("7495123", pattern=r"^7\d{2,9}$")
    # The district's share of the day's usual external calls.
    district_share: float = Field(0.1, gt=0, le=1)
    multiplier: float = Field(10.0, ge=1, le=1000)
    intent: Literal[
        "new_connection", "support", "billing", "consultation", "coordination", "cancelling"
    ] = "support"


class TrafficProfile(Strict):
    seed: StrictInt = 1
    timezone: str = "Europe/Moscow"
    calls: CallsSection = CallsSection()
    intents: Intents = Intents()
    # Where each intent goes in our IVR.
    intent_categories: dict[str, Literal["new_connection", "support", "billing", "other"]] = Field(
        default_factory=lambda: {
            "new_connection": "new_connection",
            "consultation": "new_connection",
            "support": "support",
            "coordination": "support",
            "billing": "billing",
            "cancelling": "billing",
        }
    )
    ivr: IvrSection = IvrSection()
    patience: PatienceSection = PatienceSection()
    redial: RedialSection = RedialSection()
    callbacks: CallbackSection = CallbackSection()
    agents: AgentsSection = AgentsSection()
    outage: OutageSection = OutageSection()

    @model_validator(mode="after")
    def _cross(self) -> TrafficProfile:
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"timezone: {self.timezone!r} is not an IANA time zone (e.g. Europe/Moscow)"
            ) from None
        names = set(Intents.model_fields)
        for intent in self.intent_categories:
            if intent not in names:
                raise ValueError(
                    f"intent_categories.{intent}: not an intent; allowed: "
                    + ", ".join(sorted(names))
                )
        missing = sorted(n for n in names if n not in self.intent_categories)
        if missing:
            raise ValueError("intent_categories: no category for " + ", ".join(missing))
        if not sum(self.intents.model_dump().values()):
            raise ValueError("intents: at least one share must be above zero")
        return self

    def intent_shares(self) -> dict[str, float]:
        raw = self.intents.model_dump()
        total = sum(raw.values())
        return {k: v / total for k, v in raw.items()}


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "(top level)"


_KEYED = re.compile(r"^([a-z_][a-z0-9_.]*): (.*)$", re.DOTALL)


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        return f"{_dotted(loc)}: unknown key"
    if error["type"] == "missing":
        return f"{_dotted(loc)}: required"
    keyed = _KEYED.match(message)
    if error["type"] == "value_error" and keyed:
        # A check on a whole section names the key within it.
        key = f"{_dotted(loc)}.{keyed.group(1)}" if loc else keyed.group(1)
        return f"{key}: {keyed.group(2)}"
    given = error.get("input")
    shown = (
        "" if isinstance(given, (dict, list, tuple)) or "got " in message else f" (got {given!r})"
    )
    return f"{_dotted(loc)}: {message}{shown}"


def parse_profile(data: dict[str, Any], source: str = "profile") -> TrafficProfile:
    try:
        return TrafficProfile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(source, [_describe(e) for e in exc.errors()]) from None


def load_profile(path: str | Path | None = None) -> TrafficProfile:
    """Read ``path`` (None: the built-in defaults)."""
    if path is None:
        return TrafficProfile()
    source = str(path)
    try:
        text = Path(path).read_text("utf-8")
    except FileNotFoundError:
        raise ProfileError(source, ["no such file"]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(source, [f"cannot read: {exc}"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(source, [f"TOML syntax error: {exc}"]) from None
    return parse_profile(data, source)
