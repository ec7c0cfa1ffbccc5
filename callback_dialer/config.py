"""The configuration: one TOML file, parsed once at start-up into typed, frozen objects.

A wrong key, type or value raises ``ConfigError`` whose lines each name the key (dotted, with
list indexes) and what is allowed. Secrets may come from the environment instead of the file:

- ``CALLBACK_DIALER_AMI_SECRET``      overrides ``ami.secret``
- ``CALLBACK_DIALER_REDIS_PASSWORD``  overrides ``redis.password``
- ``CALLBACK_DIALER_SENTINEL_PASSWORD``  overrides ``redis.sentinel_password``
- ``CALLBACK_DIALER_WEB_SECRET``      overrides ``web.session_secret``
- ``CALLBACK_DIALER_METRICS_TOKEN``   overrides ``web.metrics_token``
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_AMI_SECRET = "CALLBACK_DIALER_AMI_SECRET"
ENV_REDIS_PASSWORD = "CALLBACK_DIALER_REDIS_PASSWORD"
ENV_SENTINEL_PASSWORD = "CALLBACK_DIALER_SENTINEL_PASSWORD"
ENV_WEB_SECRET = "CALLBACK_DIALER_WEB_SECRET"
ENV_METRICS_TOKEN = "CALLBACK_DIALER_METRICS_TOKEN"

DEFAULT_CONFIG_PATH = Path("config/dialer.toml")


class ConfigError(Exception):
    """The configuration cannot be used. ``problems`` holds one line per fault."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


# --------------------------------------------------------------------------- value types

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


def parse_signed_duration(value: Any) -> float:
    """A duration that may be negative: ``"-1s"``, ``-60``, ``"10d"``."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip().startswith("-"):
        return -parse_duration(value.strip()[1:])
    return parse_duration(value)


SignedDuration = Annotated[float, BeforeValidator(parse_signed_duration)]


def _at_least_one(delays: tuple[float, ...]) -> tuple[float, ...]:
    if not delays:
        raise ValueError("needs at least one delay")
    return delays


# Waits between tries; the last one repeats for every further try.
Delays = Annotated[tuple[Duration, ...], AfterValidator(_at_least_one)]


def nth_delay(delays: tuple[float, ...], made: int) -> float:
    """The wait after ``made`` tries (1 = after the first): the last delay repeats."""
    return delays[max(0, min(made - 1, len(delays) - 1))]


_HHMM = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


def _parse_hhmm(text: str) -> dt.time | None:
    m = _HHMM.match(text)
    if not m:
        raise ValueError(f'expected a time like "09:00", got {text!r}')
    hours, minutes = int(m.group(1)), int(m.group(2))
    if hours == 24 and minutes == 0:
        return None  # end of day
    if hours == 24:
        raise ValueError(f"{text!r} is past the end of the day")
    return dt.time(hours, minutes)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --------------------------------------------------------------------------- sections


class AmiConfig(Strict):
    host: str = "127.0.0.1"
    port: StrictInt = Field(5038, ge=1, le=65535)
    username: str = "dialer"
    secret: str = ""
    connect_timeout: Duration = 5.0
    # A ping goes out this often; no byte back within ping_timeout means the link is dead.
    ping_interval: Duration = 10.0
    ping_timeout: Duration = 5.0
    reconnect_min_delay: Duration = 1.0
    reconnect_max_delay: Duration = 30.0
    action_timeout: Duration = 10.0
    # Without FullyBooted after login within this time, go on anyway (some proxies drop it).
    fully_booted_timeout: Duration = 5.0

    @model_validator(mode="after")
    def _delays(self) -> AmiConfig:
        if self.reconnect_max_delay < self.reconnect_min_delay:
            raise ValueError("reconnect_max_delay must not be below reconnect_min_delay")
        return self


class RedisConfig(Strict):
    url: str = "redis://127.0.0.1:6379/0"
    password: str = ""
    # Every key of the callback queue lives under "{key_prefix}:" (one Redis Cluster slot).
    key_prefix: str = Field("callback-dialer", min_length=1, max_length=64)
    socket_timeout: Duration = 5.0
    # Redis Sentinel: ask these sentinels ("host:port") where the master of service_name is.
    # The host and port of url are then unused; its database number and scheme still apply.
    sentinels: tuple[str, ...] = ()
    service_name: str = "callback-dialer"
    sentinel_password: str = ""
    # Redis Cluster: url names one node to start from (database 0 only).
    cluster: StrictBool = False
    # After the writes a failover must not lose (a missed call stored, a claim, an outcome,
    # the leader lease), wait until this many replicas have them, at most wait_timeout.
    # 0: do not wait (an asynchronous replica may then lose the last acknowledged writes).
    wait_replicas: StrictInt = Field(0, ge=0, le=10)
    wait_timeout: Duration = 0.1

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^(redis|rediss|unix)://", v):
            raise ValueError('must start with "redis://", "rediss://" or "unix://"')
        return v

    @field_validator("sentinels")
    @classmethod
    def _sentinels(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for address in v:
            host, sep, port = address.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f'expected "host:port" addresses, got {address!r}')
        return v

    @field_validator("service_name")
    @classmethod
    def _service(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("may hold only letters, digits and _ . - (at most 64)")
        return v

    @model_validator(mode="after")
    def _topology(self) -> RedisConfig:
        if self.sentinels and self.cluster:
            raise ValueError("redis.sentinels and redis.cluster = true exclude each other")
        if self.cluster and self.wait_replicas:
            raise ValueError(
                "redis.wait_replicas is for one master with replicas (plain or Sentinel), "
                "not for redis.cluster"
            )
        if (self.sentinels or self.cluster) and self.url.startswith("unix://"):
            raise ValueError("redis.url: Sentinel and Cluster reach Redis over TCP, not unix://")
        return self

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        out = []
        for address in self.sentinels:
            host, _, port = address.rpartition(":")
            out.append((host.strip("[]"), int(port)))
        return out

    @field_validator("key_prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.:-]+", v):
            raise ValueError("may hold only letters, digits and _ . : -")
        return v


class PhoneConfig(Strict):
    # Numbers without a country code are read as numbers of this region (ISO 3166 code).
    default_region: str = "RU"
    # Caller IDs of this many digits or fewer are internal extensions, never called back.
    internal_max_digits: StrictInt = Field(5, ge=1, le=8)
    # Only numbers that the numbering plan knows as valid (not merely possible) are queued.
    require_valid: StrictBool = False
    # Shell-style patterns on the E.164 form, e.g. "+7800*" (toll-free), "+74951234567".
    blocklist: tuple[str, ...] = ()

    @field_validator("default_region")
    @classmethod
    def _region(cls, v: str) -> str:
        v = v.upper()
        if v not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"{v!r} is not a region code phonenumbers knows (e.g. RU, KZ, BY)")
        return v

    @field_validator("blocklist")
    @classmethod
    def _patterns(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in v:
            if not re.fullmatch(r"\+?[0-9*?\[\]-]+", pattern):
                raise ValueError(
                    f"pattern {pattern!r} may hold only +, digits and the wildcards * ? [ ]"
                )
        return v


class Category(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    label: str = ""
    label_ru: str = ""
    # The key a caller presses in the IVR for this category ("" when the IVR has none).
    ivr_digit: str = Field("", pattern=r"^[0-9]?$")
    # Priority credit: a callback of this category is taken as if it had waited this much longer.
    weight: Duration = 0.0


DEFAULT_CATEGORIES = (
    Category(
        name="new_connection",
        label="New connection",
        label_ru="Подключение",
        ivr_digit="1",
        weight=1800,
    ),
    Category(name="support", label="Support", label_ru="Техподдержка", ivr_digit="2", weight=0),
    Category(name="billing", label="Billing", label_ru="Оплата", ivr_digit="3", weight=0),
    Category(name="other", label="Other", label_ru="Другое", ivr_digit="", weight=0),
)


_REASON = r"^[a-z][a-z0-9_]{0,31}$"


class SelfServiceRule(Strict):
    """A place in the dialplan where a call counts as served by the IVR (no callback owed)."""

    # Patterns (fnmatch: "*", "?") for the channel's dialplan context and extension; a call
    # seen there (on any channel event, at the latest its Hangup) is marked.
    context: str = Field(min_length=1)
    exten: str = "*"
    # Counted under this name (page, /metrics, daily report).
    reason: str = Field("self_service", pattern=_REASON)


class DetectionConfig(Strict):
    # A call is inbound when its first channel enters one of these dialplan contexts ...
    inbound_contexts: tuple[str, ...] = ("ivr-in", "from-trunk", "from-pstn")
    # ... or its channel name matches one of these patterns (e.g. "PJSIP/carrier-*").
    trunk_channels: tuple[str, ...] = ()
    # Shorter calls that never reached a person are not worth a callback (misdials).
    min_call_seconds: Duration = 3.0
    # Which category a caller has when CALLBACK_CATEGORY is not set, by the queue they joined.
    queue_categories: dict[str, str] = Field(
        default_factory=lambda: {"sales": "new_connection", "support": "support"}
    )
    fallback_category: str = "other"
    # Channels of agents reached without a queue (direct dial), e.g. "PJSIP/1??-*".
    agent_channels: tuple[str, ...] = ()
    callback_request_event: str = "CallbackRequested"
    # Calls the IVR served itself (balance, pay by card, outage announcement) are not owed a
    # callback: the dialplan sets CALLBACK_SKIP=<reason>, or the call is seen in one of these.
    self_service: tuple[SelfServiceRule, ...] = ()
    # The UserEvent by which the dialplan or another system declares or ends an outage.
    outage_event: str = "CallbackOutage"


class RecordsConfig(Strict):
    """What the dialplan leaves in AstDB for the dialer (ivr/dialplan.py, detect/records.py):
    every inbound call's end and every callback call's fate, read back at start, after every
    reconnect and every ``sweep_every`` while connected, then deleted."""

    enabled: StrictBool = True
    # The AstDB family under which the dialplan writes (calls/<uniqueid>, fates/<callback>).
    family: str = Field("callback-dialer", pattern=r"^[A-Za-z0-9-]{1,40}$")
    # Records older than this are deleted unread: a callback that late would have expired.
    max_age: Duration = 86400.0
    # Read and delete the records of calls also seen live this often (a cross-check, and
    # AstDB stays small).
    sweep_every: Duration = 60.0
    # Asterisk without the DBGetTree action (before 16.28, 18.14, 19.6): the dialplan also
    # keeps an index of record keys, which the dialer walks with DBGet.
    index: StrictBool = False


class RetryConfig(Strict):
    # Customer attempts in all; after the last one the callback fails with its outcome.
    max_attempts: StrictInt = Field(3, ge=1, le=20)
    # Wait before attempt 2, 3, ...; the last delay repeats when there are more attempts.
    delays: Delays = (300.0, 900.0, 3600.0)
    # A callback still open this long after the first missed call fails as "expired".
    expire_after: Duration = 86400.0

    def delay_after(self, attempts_made: int) -> float:
        return nth_delay(self.delays, attempts_made)


_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class HoursConfig(Strict):
    timezone: str = "Europe/Moscow"
    # Per weekday, ranges like "09:00-21:00"; a day without ranges is closed.
    weekly: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {
            **{d: ("09:00-21:00",) for d in _DAYS[:5]},
            "sat": ("10:00-18:00",),
            "sun": (),
        }
    )
    # Dates (YYYY-MM-DD) on which nobody is called back.
    holidays: tuple[dt.date, ...] = ()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{v!r} is not an IANA time zone (e.g. Europe/Moscow)") from None
        return v

    @field_validator("weekly")
    @classmethod
    def _weekly(cls, v: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        for day, ranges in v.items():
            if day not in _DAYS:
                raise ValueError(f"unknown day {day!r}; allowed: {', '.join(_DAYS)}")
            for text in ranges:
                start, sep, end = text.partition("-")
                if not sep:
                    raise ValueError(f'{day}: expected a range like "09:00-21:00", got {text!r}')
                begin = _parse_hhmm(start.strip())
                finish = _parse_hhmm(end.strip())
                if begin is None or (finish is not None and finish <= begin):
                    raise ValueError(f"{day}: {text!r} ends before it starts")
        return v

    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def ranges(self, weekday: int) -> list[tuple[dt.time, dt.time | None]]:
        """The open ranges of a weekday (0 = Monday); ``None`` as end is midnight."""
        out = []
        for text in self.weekly.get(_DAYS[weekday], ()):
            start, _, end = text.partition("-")
            out.append((_parse_hhmm(start.strip()) or dt.time(0), _parse_hhmm(end.strip())))
        return sorted(out, key=lambda r: r[0])


class QueueConfig(Strict):
    # A claimed callback returns to the queue when its dispatcher has not renewed it for this long.
    lease_seconds: Duration = 90.0
    # Finished callbacks (done, failed, cancelled) and their history are kept this long.
    keep_finished_days: StrictInt = Field(90, ge=1, le=3650)
    # Entries kept in each callback's history stream (oldest dropped first).
    history_max_len: StrictInt = Field(500, ge=10, le=100_000)
    # Missed calls detected while Redis is unreachable wait in this file until it is back
    # (relative paths start in the folder the dialer runs in).
    spool_file: str = "var/spool.jsonl"


DEFAULT_TRUNK_DIAL = "PJSIP/{number}@{trunk}"
DIAL_PLACEHOLDERS = ("number", "trunk")
# Outside its placeholders a dial string may hold only these: anything else means something to
# the dialplan (, splits Dial's arguments, $ { } substitute, ; starts a comment, & dials two
# channels at once, ( ) [ ] " and spaces end or start expressions and arguments).
_DIAL_CHARS = re.compile(r"[A-Za-z0-9_./@:+=#*-]")
_DIAL_CHARS_HINT = "letters, digits and _ . / @ : + = # * -"


def check_dial_template(text: str) -> str:
    """A trunk's dial string, or ValueError naming what is wrong with it (one line)."""
    names = re.findall(r"{([^{}]*)}", text)
    for name in names:
        if name not in DIAL_PLACEHOLDERS:
            raise ValueError(
                f"unknown placeholder {{{name}}}; allowed: "
                + ", ".join(f"{{{a}}}" for a in DIAL_PLACEHOLDERS)
            )
    if names.count("number") != 1:
        raise ValueError(
            f"{text!r} must hold {{number}} exactly once (where the customer's number goes), "
            'e.g. "PJSIP/{number}@{trunk}"'
        )
    rest = re.sub(r"{(number|trunk)}", "", text)
    for char in rest:
        if not _DIAL_CHARS.fullmatch(char):
            raise ValueError(
                f"{text!r}: the character {char!r} would break the dialplan's Dial(); "
                f"allowed besides {{number}} and {{trunk}}: {_DIAL_CHARS_HINT}"
            )
    if not re.match(r"[A-Za-z][A-Za-z0-9]*/", text):
        raise ValueError(
            f"{text!r} must start with a channel technology and a slash, like "
            '"PJSIP/{number}@{trunk}", "IAX2/{trunk}/{number}" or "DAHDI/g0/{number}"'
        )
    return text


class TrunkConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$")
    # Callbacks in progress over this trunk at once.
    max_calls: StrictInt = Field(10, ge=1, le=10_000)
    # Which numbers go over this trunk: shell-style patterns on the E.164 form.
    numbers: tuple[str, ...] = ("*",)
    # How the dialplan dials a customer over this trunk: {number} is the number as [dispatch]
    # exten formats it (validated digits), {trunk} this trunk's name.
    dial: str = DEFAULT_TRUNK_DIAL

    @field_validator("dial")
    @classmethod
    def _dial(cls, v: str) -> str:
        return check_dial_template(v)


class LeaderConfig(Strict):
    # This dialer's name in the leader lease and on its claims; empty: "<hostname>:<pid>".
    instance: str = Field("", max_length=64)
    # Only the holder of the lease dispatches; it renews every renew_every. A holder that
    # cannot renew stops acting before the lease ends; another instance takes over once it has.
    lease: Duration = 6.0
    renew_every: Duration = 2.0

    @field_validator("instance")
    @classmethod
    def _instance(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9_.:@-]+", v):
            raise ValueError("may hold only letters, digits and _ . : @ -")
        return v

    @model_validator(mode="after")
    def _timing(self) -> LeaderConfig:
        if self.lease < 1:
            raise ValueError("leader.lease must be at least 1 second")
        if not 0 < self.renew_every <= self.lease / 2:
            raise ValueError(
                "leader.renew_every must be above 0 and at most half of leader.lease "
                "(a renewal lost to a blip must leave time for the next)"
            )
        return self


class DispatchConfig(Strict):
    # Start with dispatching switched on; a supervisor can pause and resume it at run time.
    enabled: StrictBool = True
    mode: Literal["agent_first", "customer_first"] = "agent_first"
    # Which categories the members of each queue call back.
    queues: dict[str, tuple[str, ...]] = Field(
        default_factory=lambda: {
            "sales": ("new_connection",),
            "support": ("support", "billing", "other"),
        }
    )
    max_concurrent: StrictInt = Field(10, ge=1, le=10_000)
    trunks: tuple[TrunkConfig, ...] = (TrunkConfig(name="default"),)
    # Originate (agent first): Channel rings the agent, then Context/Exten dials the customer.
    agent_channel: str = "{interface}"
    context: str = "callback-outbound"
    priority: StrictInt = Field(1, ge=1)
    # The customer's number as the trunk wants it: {digits} 79161234567, {e164} +79161234567,
    # {national} 89161234567, {nsn} 9161234567; a prefix may be written in front.
    exten: str = "{digits}"
    # What the agent's phone shows: {category}, {label}, {digits}, {e164}, {national}.
    caller_id: str = '"Callback {label}" <{digits}>'
    # Customer first: Channel dials the customer; on answer Context/Exten rings the agent.
    # "/n": without it Asterisk optimizes the Local pair away once the agent answers, and both
    # of our channels hang up while the customer goes on talking (a short call, called again).
    customer_channel: str = "Local/{exten}@callback-customer/n"
    agent_context: str = "callback-agent"
    agent_ring_seconds: Duration = 15.0
    customer_ring_seconds: Duration = 30.0
    # A callback counts as done when the customer talked at least this long.
    min_talk_seconds: Duration = 10.0
    # After any call an agent gets this much rest before a callback (Asterisk's own wrap-up,
    # when longer, wins).
    wrapup_seconds: Duration = 15.0
    # An agent who let a callback ring out rests this long.
    agent_cooldown: Duration = 120.0
    # Originates failing outright this many times in a row pause dispatching (alarm).
    max_consecutive_failures: StrictInt = Field(3, ge=1, le=100)
    # Safety net: look for work this often even when no event asked for it.
    tick_seconds: Duration = 5.0
    # How long to wait for an Originate's outcome before giving up on it.
    originate_timeout: Duration = 120.0
    # Callbacks and live callers take turns by one score (README, "Callbacks and live
    # callers"): a callback is taken for a free agent only if first_missed - weight +
    # callback_handicap is lower than joined_at - weight of every live caller waiting in the
    # agent's queues. 0s: a strict turn by first call; "10d": live callers always first;
    # negative: callbacks never wait for live callers (the behaviour before the live queue).
    callback_handicap: SignedDuration = 300.0
    # At most this fraction of a queue's logged-in agents on callbacks at once (1.0: no cap).
    max_callback_share: float = Field(1.0, ge=0.0, le=1.0)
    # Per queue: agents kept free for live calls whenever anyone waits in that queue.
    reserve_agents: dict[str, Annotated[int, Field(ge=0, le=10_000)]] = Field(default_factory=dict)

    @field_validator("trunks")
    @classmethod
    def _trunks(cls, v: tuple[TrunkConfig, ...]) -> tuple[TrunkConfig, ...]:
        if not v:
            raise ValueError("needs at least one trunk")
        names = [t.name for t in v]
        if len(set(names)) != len(names):
            raise ValueError("trunk names must be unique")
        return v

    @model_validator(mode="after")
    def _customer_local_stays(self) -> DispatchConfig:
        # The dialer follows the call by the channels its Originate created. Asterisk replaces
        # an optimizable Local pair by a direct bridge once the agent answers, and hangs both
        # of those channels up while the customer talks on: the call would look over at once
        # and the customer would be called again.
        channel = self.customer_channel
        if self.mode == "customer_first" and channel.lower().startswith("local/"):
            options = channel.split("/", 2)[2] if channel.count("/") >= 2 else ""
            if "n" not in options:
                raise ValueError(
                    f"customer_channel {channel!r} needs the /n option (e.g. "
                    '"Local/{exten}@callback-customer/n"): without it Asterisk optimizes the '
                    "Local channel away when the agent answers and the dialer loses the call"
                )
        return self

    @field_validator("exten")
    @classmethod
    def _exten(cls, v: str) -> str:
        # The Originate's Exten is what fills {number} in the trunks' dial strings: only
        # the number, in one of its spellings, behind an optional prefix of digits.
        for name in re.findall(r"{([^{}]*)}", v):
            if name not in ("digits", "e164", "national", "nsn"):
                raise ValueError(
                    f"unknown placeholder {{{name}}}; allowed: {{digits}}, {{e164}}, "
                    "{national}, {nsn}"
                )
        if not re.fullmatch(r"[0-9]*{(digits|e164|national|nsn)}", v):
            raise ValueError(
                f"{v!r} must be one number placeholder behind an optional prefix of digits, "
                'e.g. "{digits}" or "9{national}"'
            )
        return v

    @field_validator("agent_channel", "caller_id", "customer_channel")
    @classmethod
    def _template(cls, v: str) -> str:
        allowed = {
            "interface",
            "extension",
            "digits",
            "e164",
            "national",
            "nsn",
            "category",
            "label",
            "exten",
            "agent",
        }
        for name in re.findall(r"{([^{}]*)}", v):
            if name not in allowed:
                raise ValueError(
                    f"unknown placeholder {{{name}}}; allowed: "
                    + ", ".join(f"{{{a}}}" for a in sorted(allowed))
                )
        return v


class IvrConfig(Strict):
    """The callback offer in the dialplan (``callback-dialer dialplan``) and the FastAGI
    server it asks: the estimate, the caller's number read back, another number typed."""

    # Offer the callback when the caller's expected wait in the queue is longer than this
    # (checked at the queue's door), and after waiting this long in it (Queue()'s timeout).
    offer_after: Duration = 300.0
    # The FastAGI server in the dialer (false: the dialplan's offer falls back to a plain
    # "we will call you back" on the caller ID); where it listens (port 0: any free port) ...
    agi_enabled: StrictBool = True
    agi_host: str = "127.0.0.1"
    agi_port: StrictInt = Field(4573, ge=0, le=65535)
    # ... and the address the dialplan's AGI(agi://...) connects to ("" : agi_host:agi_port).
    agi_address: str = ""
    # Tries at typing another number before the caller is politely refused.
    number_tries: StrictInt = Field(2, ge=1, le=5)
    # Seconds a FastAGI exchange may take before the dialer drops it (Asterisk then goes on
    # with the dialplan's safe branch).
    agi_timeout: Duration = 5.0

    @field_validator("agi_address")
    @classmethod
    def _address(cls, v: str) -> str:
        if v and not re.fullmatch(r"[A-Za-z0-9_.-]+(:\d{1,5})?|\[[0-9A-Fa-f:]+\](:\d{1,5})?", v):
            raise ValueError('must be "host" or "host:port" (e.g. "10.0.0.5:4573")')
        return v

    @model_validator(mode="after")
    def _offer_after(self) -> IvrConfig:
        if self.offer_after < 1:
            raise ValueError("ivr.offer_after must be at least 1 second")
        return self

    def agi_url(self) -> str:
        return "agi://" + (self.agi_address or f"{self.agi_host}:{self.agi_port}")


class WebUser(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    role: Literal["viewer", "supervisor"] = "viewer"
    # From `callback-dialer hash-password`; empty for reverse-proxy users.
    password_hash: str = ""


_HOST_NAME = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
# What anyone who can reach the port may read without signing in.
PublicPath = Literal["healthz", "metrics", "openapi"]


class WebConfig(Strict):
    enabled: StrictBool = True
    host: str = "127.0.0.1"
    port: StrictInt = Field(8080, ge=0, le=65535)
    language: Literal["en", "ru"] = "en"
    # users: log in with a password; proxy: trust the user named by a reverse proxy header;
    # none: everyone is a supervisor (only for a demo on localhost).
    auth: Literal["users", "proxy", "none"] = "users"
    proxy_user_header: str = "X-Forwarded-User"
    proxy_default_role: Literal["viewer", "supervisor"] = "viewer"
    # Addresses (or networks) of the reverse proxies in front of the page: only their
    # X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and user header are believed.
    trusted_proxies: tuple[str, ...] = ()
    # Host names the page answers to (a foreign Host is refused: DNS rebinding); "*.example.com"
    # for its subdomains. Empty: the listen address and localhost.
    allowed_hosts: tuple[str, ...] = ()
    users: tuple[WebUser, ...] = ()
    # Signs sessions and CSRF tokens; random at each start when empty (everyone logs in again).
    session_secret: str = ""
    # A session ends after this long without a request or an open page, and this long after
    # sign-in whatever happens.
    session_idle: Duration = 3600.0
    session_max: Duration = 57600.0
    # Open to anyone who can reach the port; the others need a sign-in or the metrics token.
    public: tuple[PublicPath, ...] = ("healthz", "metrics", "openapi")
    # A bearer token that opens /metrics, /healthz and /api/openapi.json (e.g. for Prometheus).
    metrics_token: str = ""
    mask_numbers_for_viewers: StrictBool = True
    # "Called back within the target" on the page and in the reports; below target_share of
    # the callbacks called within it, the page shows the figure in red.
    target: Duration = 900.0
    target_share: float = Field(0.8, ge=0, le=1)

    @field_validator("users")
    @classmethod
    def _unique(cls, v: tuple[WebUser, ...]) -> tuple[WebUser, ...]:
        names = [u.name for u in v]
        if len(set(names)) != len(names):
            raise ValueError("user names must be unique")
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for entry in v:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(
                    f"{entry!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)"
                ) from None
        return v

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        out = []
        for entry in v:
            host = entry.strip().lower().rstrip(".")
            if host.startswith("[") and host.endswith("]"):
                host = host[1:-1]
            if host != "*" and not _HOST_NAME.fullmatch(host):
                try:
                    host = str(ipaddress.ip_address(host))
                except ValueError:
                    raise ValueError(
                        f"{entry!r} is not a host name, an IP address, *.domain or * "
                        "(no port, no scheme)"
                    ) from None
            out.append(host)
        return tuple(out)

    @field_validator("session_idle", "session_max")
    @classmethod
    def _session_time(cls, v: float) -> float:
        if v < 60:
            raise ValueError("must be at least a minute")
        return v

    @model_validator(mode="after")
    def _web(self) -> WebConfig:
        if self.session_max < self.session_idle:
            raise ValueError("web.session_max must not be below web.session_idle")
        if self.auth == "proxy" and not self.trusted_proxies:
            raise ValueError(
                'web.trusted_proxies: with auth = "proxy" the user header is believed only '
                'from the reverse proxy; name its address, e.g. ["127.0.0.1"]'
            )
        return self


class WebhookConfig(Strict):
    url: str = Field(pattern=r"^https?://")
    # HMAC-SHA256 key; "env:NAME" reads it from the environment variable NAME.
    secret: str = ""
    # Which callback events go to this URL; empty means all of them.
    events: tuple[str, ...] = ()
    timeout: Duration = 10.0

    @field_validator("events")
    @classmethod
    def _events(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        for name in v:
            if name not in WEBHOOK_EVENTS:
                raise ValueError(f"unknown event {name!r}; allowed: {', '.join(WEBHOOK_EVENTS)}")
        return v

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: str) -> str:
        if v.startswith("env:") and not re.fullmatch(r"env:[A-Za-z_][A-Za-z0-9_]*", v):
            raise ValueError('"env:" must be followed by an environment variable name')
        return v


WEBHOOK_EVENTS = (
    "created",
    "merged",
    "dialing",
    "done",
    "failed",
    "cancelled",
    "served_inbound",
    "served_outbound",
    "held",
    "outage_released",
    "outage_dropped",
    "outage_declared",
    "outage_ended",
)


class QueueLogConfig(Strict):
    # Write each callback's life into Asterisk's queue_log (AMI action QueueLog; the dialer's
    # AMI user then needs write = agent), under the uniqueid and queue of the missed call, so
    # QueueMetrics, Asternic or any queue_log reader can match the recall to the abandon.
    enabled: StrictBool = False
    # The queue named on the lines of a callback whose call waited in no queue (an IVR hang-up).
    default_queue: str = "NONE"
    # How long to wait for Asterisk's answer to one line before trying it again.
    timeout: Duration = 5.0

    @field_validator("default_queue")
    @classmethod
    def _queue(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("may hold only letters, digits and _ . - (at most 64)")
        return v


WHISPER_LANGUAGES = ("en", "ru")


class WhisperConfig(Strict):
    # Agent first: once the agent answers and before the customer is dialled, the agent hears
    # the category, how long ago the customer first called and how many times (the dialplan's
    # callback-whisper; prompts in the README).
    enabled: StrictBool = True
    # Customer first: the customer is already on the line when the agent answers and would wait
    # through the whisper (about five seconds, hearing ringing): off unless you want it.
    customer_first: StrictBool = False
    # Which language the agent hears: "" the agent channel's own (its endpoint's language=),
    # or "en" / "ru" for all; agent_languages names it per agent interface.
    language: Literal["", "en", "ru"] = ""
    agent_languages: dict[str, Literal["en", "ru"]] = Field(default_factory=dict)

    def language_for(self, agent: str) -> str:
        return self.agent_languages.get(agent, self.language)


class SmsConfig(Strict):
    enabled: StrictBool = False
    url: str = ""
    method: Literal["GET", "POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    # Placeholders: {number} (E.164), {digits}, {text}, {text_urlencoded}, {text_json}.
    body: str = '{"to": "{digits}", "text": {text_json}}'
    content_type: str = "application/json"
    missed_text: str = "We missed your call and will call you back in about {minutes} minutes."
    notify_final_failure: StrictBool = False
    final_text: str = "We could not reach you. Please call us again at a convenient time."
    # At most one message to a number within this period.
    min_interval: Duration = 86400.0
    timeout: Duration = 10.0
    # An outage holds a caller's callback: they get the outage's message (one SMS, counted
    # by min_interval like the missed-call one). {message}: the outage's message.
    outage_text: str = "{message}"
    # An outage ended and its held callbacks were dropped: the caller is told (once per
    # min_interval, apart from the other messages).
    service_back_text: str = "Service is back. If anything still does not work, call us again."

    @model_validator(mode="after")
    def _url_when_enabled(self) -> SmsConfig:
        if self.enabled and not re.match(r"^https?://", self.url):
            raise ValueError("sms.url must be an http(s) URL when sms.enabled is true")
        return self

    @field_validator("url", "body")
    @classmethod
    def _gateway_template(cls, v: str) -> str:
        return cls._placeholders(v, ("number", "digits", "text", "text_urlencoded", "text_json"))

    @field_validator("missed_text")
    @classmethod
    def _missed_text(cls, v: str) -> str:
        return cls._placeholders(v, ("minutes",))

    @field_validator("final_text", "service_back_text")
    @classmethod
    def _final_text(cls, v: str) -> str:
        return cls._placeholders(v, ())

    @field_validator("outage_text")
    @classmethod
    def _outage_text(cls, v: str) -> str:
        return cls._placeholders(v, ("message",))

    @staticmethod
    def _placeholders(text: str, allowed: tuple[str, ...]) -> str:
        # Only {word} is a placeholder, so JSON braces like {"to": ...} in a body stay literal.
        for name in re.findall(r"{([A-Za-z_][A-Za-z0-9_]*)}", text):
            if name not in allowed:
                choices = ", ".join(f"{{{a}}}" for a in allowed) or "none"
                raise ValueError(f"unknown placeholder {{{name}}}; allowed: {choices}")
        return text


class OutageConfig(Strict):
    # Categories an outage covers when its declaration names none (the UserEvent, the API);
    # empty: "support" when that is a category, else every category.
    default_categories: tuple[str, ...] = ()
    # Held callbacks released after an outage: at most this many fall due per hour (the
    # supervisor may choose another number when ending it). 0: all at once.
    release_per_hour: StrictInt = Field(60, ge=0, le=100_000)
    # Optional CRM lookup of a caller's area, for outages declared by area name: the dialer
    # POSTs {"number": "+7..."} (JSON) and expects {"area": "<name>"} within the timeout; no
    # answer in time or an error: the call is treated as outside the area (called back).
    area_lookup_url: str = ""
    area_lookup_timeout: Duration = 2.0
    # Keep the AstDB family callback-outage in step with the active outages (DBPut/DBDel;
    # needs "system" in the AMI user's write), for the dialplan's ${DB_EXISTS(...)}.
    mirror_astdb: StrictBool = True
    # How often every dialer re-reads the outages from Redis (another dialer or the API may
    # have declared one) and the leader settles ended ones.
    refresh_every: Duration = 2.0

    @field_validator("area_lookup_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v and not re.match(r"^https?://", v):
            raise ValueError("must be an http(s) URL or empty")
        return v


class ReportsConfig(Strict):
    enabled: StrictBool = True
    folder: str = "reports"
    # Local time (the calling-hours time zone) at which the day's report is made.
    at: str = "23:55"
    xlsx: StrictBool = True

    @field_validator("at")
    @classmethod
    def _at(cls, v: str) -> str:
        if _parse_hhmm(v) is None:
            raise ValueError('must be a time before midnight like "23:55"')
        return v


class JobsConfig(Strict):
    queue_name: str = "callback-dialer"
    # Delivery tries for a webhook or an SMS before it is parked among the failed jobs; the
    # waits between tries (the last repeats) cover a receiver that is down for hours.
    max_tries: StrictInt = Field(12, ge=1, le=100)
    retry_delays: Delays = (10, 30, 60, 120, 300, 600, 900, 1800)

    @field_validator("queue_name")
    @classmethod
    def _queue_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", v):
            raise ValueError("may hold only letters, digits and _ . - (at most 64)")
        return v

    def delay_before_try(self, tries_made: int) -> int:
        """Whole seconds (rounded up: rq counts in seconds) after ``tries_made`` failed tries."""
        return int(-(-nth_delay(self.retry_delays, tries_made) // 1))


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    # auto: coloured console lines on a terminal, JSON lines otherwise.
    format: Literal["auto", "console", "json"] = "auto"


class Config(Strict):
    ami: AmiConfig = AmiConfig()
    redis: RedisConfig = RedisConfig()
    phone: PhoneConfig = PhoneConfig()
    categories: tuple[Category, ...] = DEFAULT_CATEGORIES
    detection: DetectionConfig = DetectionConfig()
    records: RecordsConfig = RecordsConfig()
    retry: RetryConfig = RetryConfig()
    hours: HoursConfig = HoursConfig()
    queue: QueueConfig = QueueConfig()
    dispatch: DispatchConfig = DispatchConfig()
    leader: LeaderConfig = LeaderConfig()
    ivr: IvrConfig = IvrConfig()
    web: WebConfig = WebConfig()
    webhooks: tuple[WebhookConfig, ...] = ()
    whisper: WhisperConfig = WhisperConfig()
    queue_log: QueueLogConfig = QueueLogConfig()
    sms: SmsConfig = SmsConfig()
    outage: OutageConfig = OutageConfig()
    reports: ReportsConfig = ReportsConfig()
    jobs: JobsConfig = JobsConfig()
    logging: LoggingConfig = LoggingConfig()

    @field_validator("categories")
    @classmethod
    def _categories(cls, v: tuple[Category, ...]) -> tuple[Category, ...]:
        if not v:
            raise ValueError("needs at least one category")
        names = [c.name for c in v]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"category names must be unique; repeated: {', '.join(dupes)}")
        digits = [c.ivr_digit for c in v if c.ivr_digit]
        if len(set(digits)) != len(digits):
            raise ValueError("two categories share one ivr_digit")
        return v

    @model_validator(mode="after")
    def _cross_references(self) -> Config:
        names = self.category_names()
        allowed = ", ".join(names)
        if self.detection.fallback_category not in names:
            raise ValueError(
                f"detection.fallback_category: {self.detection.fallback_category!r} is not a "
                f"category; allowed: {allowed}"
            )
        for queue, category in self.detection.queue_categories.items():
            if category not in names:
                raise ValueError(
                    f"detection.queue_categories.{queue}: {category!r} is not a category; "
                    f"allowed: {allowed}"
                )
        for category in self.outage.default_categories:
            if category not in names:
                raise ValueError(
                    f"outage.default_categories: {category!r} is not a category; allowed: {allowed}"
                )
        for queue, categories in self.dispatch.queues.items():
            for category in categories:
                if category not in names:
                    raise ValueError(
                        f"dispatch.queues.{queue}: {category!r} is not a category; "
                        f"allowed: {allowed}"
                    )
        if self.web.auth == "users" and self.web.enabled:
            for user in self.web.users:
                if not user.password_hash:
                    raise ValueError(
                        f"web.users: user {user.name!r} has no password_hash "
                        "(make one with `callback-dialer hash-password`)"
                    )
        return self

    # ---- conveniences used all over the program

    def category_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.categories)

    def category(self, name: str) -> Category | None:
        for c in self.categories:
            if c.name == name:
                return c
        return None

    def weights(self) -> dict[str, float]:
        return {c.name: c.weight for c in self.categories}

    def outage_categories(self) -> tuple[str, ...]:
        """What an outage covers when its declaration names no category."""
        if self.outage.default_categories:
            return self.outage.default_categories
        names = self.category_names()
        return ("support",) if "support" in names else names


# --------------------------------------------------------------------------- loading


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that the dotted location ``loc`` points into (for 'allowed keys')."""
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        model = _unwrap(annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    args = getattr(annotation, "__args__", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if args:
        for arg in args:
            found = _unwrap(arg)
            if isinstance(found, type) and issubclass(found, BaseModel):
                return found
    return annotation


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _describe(error: dict[str, Any]) -> str:
    loc = tuple(error["loc"])
    kind = error["type"]
    given = error.get("input")
    if kind == "extra_forbidden":
        parent = _model_at(loc[:-1])
        allowed = ", ".join(parent.model_fields) if parent else "see config/dialer.toml"
        section = _dotted(loc[:-1]) if loc[:-1] else "the top level"
        return f"{_dotted(loc)}: unknown key in {section}; allowed keys: {allowed}"
    if kind == "missing":
        return f"{_dotted(loc)}: required"
    message = error["msg"]
    if kind == "value_error":
        message = message.removeprefix("Value error, ")
        # Model-level validators name their own keys.
        if re.match(r"^[a-z_]+\.[a-z_.]+", message):
            return message
        return f"{_dotted(loc)}: {message}"
    ctx = error.get("ctx", {})
    friendly = {
        "literal_error": lambda: f"must be one of {ctx.get('expected', '')}",
        "int_parsing": lambda: "must be a whole number",
        "int_type": lambda: "must be a whole number",
        "int_from_float": lambda: "must be a whole number",
        "float_parsing": lambda: "must be a number",
        "float_type": lambda: "must be a number",
        "bool_parsing": lambda: "must be true or false",
        "bool_type": lambda: "must be true or false",
        "string_type": lambda: "must be a text string in quotes",
        "greater_than_equal": lambda: f"must be at least {ctx.get('ge')}",
        "greater_than": lambda: f"must be greater than {ctx.get('gt')}",
        "less_than_equal": lambda: f"must be at most {ctx.get('le')}",
        "less_than": lambda: f"must be less than {ctx.get('lt')}",
        "string_pattern_mismatch": lambda: f"must match the pattern {ctx.get('pattern')}",
        "string_too_short": lambda: f"must have at least {ctx.get('min_length')} characters",
        "string_too_long": lambda: f"must have at most {ctx.get('max_length')} characters",
        "tuple_type": lambda: 'must be a list, like ["a", "b"]',
        "list_type": lambda: 'must be a list, like ["a", "b"]',
        "dict_type": lambda: "must be a table (a [section] or { key = value })",
        "model_type": lambda: "must be a table (a [section] or { key = value })",
        "model_attributes_type": lambda: "must be a table (a [section] or { key = value })",
        "date_from_datetime_parsing": lambda: "must be a date like 2026-12-31",
        "date_parsing": lambda: "must be a date like 2026-12-31",
        "date_type": lambda: "must be a date like 2026-12-31",
    }.get(kind)
    if friendly is not None:
        message = friendly()
    shown = "" if isinstance(given, (dict, list, tuple)) else f" (got {given!r})"
    return f"{_dotted(loc)}: {message}{shown}"


def parse_config(data: dict[str, Any], source: str = "config") -> Config:
    """Validate a parsed TOML document (plus the environment's secrets) into a Config."""
    data = _with_env_secrets(data)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from None


def _with_env_secrets(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    for env, section, key in (
        (ENV_AMI_SECRET, "ami", "secret"),
        (ENV_REDIS_PASSWORD, "redis", "password"),
        (ENV_SENTINEL_PASSWORD, "redis", "sentinel_password"),
        (ENV_WEB_SECRET, "web", "session_secret"),
        (ENV_METRICS_TOKEN, "web", "metrics_token"),
    ):
        value = os.environ.get(env)
        if value:
            part = data.get(section)
            part = dict(part) if isinstance(part, dict) else {}
            part[key] = value
            data[section] = part
    return data


def load_config(path: str | os.PathLike[str] | None) -> Config:
    """Read and validate the TOML file at ``path``; ``None`` means built-in defaults only."""
    if path is None:
        return parse_config({}, "defaults")
    source = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, ["no such file"]) from None
    except OSError as exc:
        raise ConfigError(source, [f"cannot read: {exc.strerror}"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(source, ["not UTF-8 text"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, [f"TOML syntax error: {exc}"]) from None
    return parse_config(data, source)
