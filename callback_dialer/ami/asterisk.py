"""Asterisk's vocabulary on the AMI wire, written once for both sides of the socket.

The dialer reads these values; the PBX simulator (``simpbx``) writes them. Keeping one table
means a simulator that drifts from what the dialer expects is a failing test, not a silent
disagreement between two copies of the same number. Standard library only: the simulator
imports this module and nothing else of the product but the codec.

Sources: Asterisk 22 ``include/asterisk/devicestate.h`` (AST_DEVICE_*), ``frame.h``
(AST_CONTROL_*, which ``OriginateResponse`` reports as ``Reason``), ``causes.h`` and
``ast_cause2str``, ``channelstate.h`` (AST_STATE_*), and app_dial's ``DIALSTATUS`` values.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class DeviceState(IntEnum):
    """AST_DEVICE_*: ``Status`` of QueueMember events, ``State`` numbers of device state."""

    UNKNOWN = 0
    NOT_INUSE = 1
    INUSE = 2
    BUSY = 3
    INVALID = 4
    UNAVAILABLE = 5
    RINGING = 6
    RINGINUSE = 7
    ONHOLD = 8


# A member in one of these states cannot take another call.
BUSY_DEVICE_STATES = frozenset(
    {
        DeviceState.INUSE,
        DeviceState.BUSY,
        DeviceState.RINGING,
        DeviceState.RINGINUSE,
        DeviceState.ONHOLD,
    }
)


class OriginateReason(IntEnum):
    """``Reason`` of an ``OriginateResponse``: the AST_CONTROL_* frame that ended the dialling
    of the first leg. ``NO_ANSWER`` (3, AST_CONTROL_RINGING) means it was still ringing when
    the Originate's Timeout ran out."""

    FAILED = 0  # the channel could not be created
    HANGUP = 1
    NO_ANSWER = 3
    ANSWERED = 4
    BUSY = 5
    CONGESTION = 8


class DialStatus(StrEnum):
    """``DialStatus`` of ``DialEnd`` (app_dial's ``DIALSTATUS``)."""

    ANSWER = "ANSWER"
    BUSY = "BUSY"
    NOANSWER = "NOANSWER"
    CANCEL = "CANCEL"
    CONGESTION = "CONGESTION"
    CHANUNAVAIL = "CHANUNAVAIL"


class DialProgress(StrEnum):
    """``DialStatus`` of ``DialState``: how a dial is going before its ``DialEnd``."""

    RINGING = "RINGING"
    PROCEEDING = "PROCEEDING"
    PROGRESS = "PROGRESS"


class HangupCause(IntEnum):
    """Q.931 causes Asterisk reports in ``Cause`` (AST_CAUSE_*)."""

    UNKNOWN = 0
    NORMAL_CLEARING = 16
    USER_BUSY = 17
    NO_USER_RESPONSE = 18
    NO_ANSWER = 19
    SUBSCRIBER_ABSENT = 20
    CALL_REJECTED = 21
    CONGESTION = 34


# ast_cause2str, for the causes above.
CAUSE_TEXT = {
    HangupCause.UNKNOWN: "Unknown",
    HangupCause.NORMAL_CLEARING: "Normal Clearing",
    HangupCause.USER_BUSY: "User busy",
    HangupCause.NO_USER_RESPONSE: "No user responding",
    HangupCause.NO_ANSWER: "User alerting, no answer",
    HangupCause.SUBSCRIBER_ABSENT: "Subscriber absent",
    HangupCause.CALL_REJECTED: "Call Rejected",
    HangupCause.CONGESTION: "Circuit/channel congestion",
}

# The cause a failed dial leaves on the channel that failed that way.
DIAL_STATUS_CAUSE = {
    DialStatus.ANSWER: HangupCause.NORMAL_CLEARING,
    DialStatus.BUSY: HangupCause.USER_BUSY,
    DialStatus.NOANSWER: HangupCause.NO_ANSWER,
    DialStatus.CONGESTION: HangupCause.CONGESTION,
    DialStatus.CHANUNAVAIL: HangupCause.SUBSCRIBER_ABSENT,
    DialStatus.CANCEL: HangupCause.NORMAL_CLEARING,
}


class ChannelState(IntEnum):
    """AST_STATE_*: ``ChannelState`` of channel events (``ChannelStateDesc`` beside it)."""

    DOWN = 0
    RESERVED = 1
    OFFHOOK = 2
    DIALING = 3
    RING = 4
    RINGING = 5
    UP = 6
    BUSY = 7
    DIALING_OFFHOOK = 8
    PRERING = 9
    UNKNOWN = 10


CHANNEL_STATE_DESC = {
    ChannelState.DOWN: "Down",
    ChannelState.RESERVED: "Rsrvd",
    ChannelState.OFFHOOK: "OffHook",
    ChannelState.DIALING: "Dialing",
    ChannelState.RING: "Ring",
    ChannelState.RINGING: "Ringing",
    ChannelState.UP: "Up",
    ChannelState.BUSY: "Busy",
    ChannelState.DIALING_OFFHOOK: "Dialing Offhook",
    ChannelState.PRERING: "Pre-ring",
    ChannelState.UNKNOWN: "Unknown",
}

# What Asterisk writes where a channel or id does not exist (OriginateResponse of a channel
# that could not be created), and for a caller ID or connected line nobody set.
UNKNOWN_ID = "<unknown>"

# ast_escape_c: how Asterisk writes text of a channel snapshot on the AMI wire (CallerIDName,
# ConnectedLineName, ChanVariable values of channel events). Other fields (QueueEntry of a
# QueueStatus, DBGetTree values, OriginateResponse's CallerIDName) are sent as they are.
_C_ESCAPES = {
    "\a": "a",
    "\b": "b",
    "\f": "f",
    "\n": "n",
    "\r": "r",
    "\t": "t",
    "\v": "v",
    "\\": "\\",
    "'": "'",
    '"': '"',
    "?": "?",
}
_C_ESCAPE_TABLE = str.maketrans({raw: "\\" + code for raw, code in _C_ESCAPES.items()})
_C_UNESCAPES = {code: raw for raw, code in _C_ESCAPES.items()}


def escape_c(text: str) -> str:
    """Text as Asterisk's ast_escape_c writes it into a channel event."""
    return text.translate(_C_ESCAPE_TABLE)


def unescape_c(text: str) -> str:
    """The text a channel event's ``\\"`` / ``\\\\`` / ... sequences stand for (ast_escape_c
    undone); a backslash before anything else is kept as it came."""
    if "\\" not in text:
        return text
    out: list[str] = []
    chars = iter(text)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        code = next(chars, "")
        raw = _C_UNESCAPES.get(code)
        out.append(raw if raw is not None else "\\" + code)
    return "".join(out)


# Channel variables our dialplan sets and manager.conf's channelvars brings on every event.
CATEGORY_VAR = "CALLBACK_CATEGORY"
CALLBACK_ID_VAR = "CALLBACK_ID"
# Set by the IVR when it served the caller itself (CALLBACK_SKIP=balance): no callback owed.
SKIP_VAR = "CALLBACK_SKIP"

# The AstDB family the dialer mirrors an active outage into (DBPut/DBDel), so the dialplan
# reads it with ${DB_EXISTS(callback-outage/cat-<category>)} without waiting on the dialer:
#   cat-<category>  "1" while an outage covers that category
#   message         the outage's message; until  its expected end, local HH:MM ("" : unknown)
OUTAGE_DB_FAMILY = "callback-outage"

# The agent a customer-first callback rings once the customer answered: set on the Originate,
# dialled by the dialplan's Dial(${CALLBACK_AGENT}).
CALLBACK_AGENT_VAR = "CALLBACK_AGENT"


# ---------------------------------------------------------------------------------- AstDB records
# What our dialplan writes into AstDB (ivr/dialplan.py) and the dialer reads back over AMI
# (ami/astdb.py, detect/records.py): ``name=value`` pairs joined by ``&``, each value as
# Asterisk's URIENCODE() writes it (ast_uri_encode with ast_uri_http: letters, digits and
# ``-_.!~*'()`` kept, every other byte ``%XX`` of its UTF-8). So a caller's name holding
# ``&``, ``=``, ``%``, quotes or a line break can neither split a field nor break the AMI frame
# that carries the value (DBGetTree sends values as they are).
RECORD_VERSION = "1"
_URI_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()")


def uri_encode(text: str) -> str:
    """``${URIENCODE(text)}``."""
    return "".join(
        chr(b) if b in _URI_KEEP else f"%{b:02X}" for b in text.encode("utf-8", "replace")
    )


def uri_decode(text: str) -> str:
    """What ``uri_encode`` (or URIENCODE) encoded; a ``%`` not followed by two hex digits is
    kept as it is (ast_uri_decode does the same)."""
    if "%" not in text:
        return text
    out = bytearray()
    i, raw = 0, text.encode("utf-8", "replace")
    while i < len(raw):
        b = raw[i]
        if b == 0x25 and i + 2 < len(raw) and _is_hex(raw[i + 1 : i + 3]):
            out.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(b)
            i += 1
    return out.decode("utf-8", "replace")


def _is_hex(pair: bytes) -> bool:
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def encode_record(fields: dict[str, str]) -> str:
    """A record's value as the dialplan writes it (the simulator writes the same)."""
    return "&".join(f"{name}={uri_encode(value)}" for name, value in fields.items())


def decode_record(value: str) -> dict[str, str]:
    """A record's fields; a part without ``=`` is ignored, the last of a repeated name wins."""
    out: dict[str, str] = {}
    for part in value.split("&"):
        name, sep, text = part.partition("=")
        if sep and name:
            out[name] = uri_decode(text)
    return out


# Channel variables our dialplan sets for the records: when the call entered the dialplan
# (${STRFTIME(,,%s.%3q)}), the queue it was sent to, and the callback request it raised.
CALL_START_VAR = "CALLBACK_START"
CALL_QUEUE_VAR = "CALLBACK_QUEUE"
CALL_REQUEST_VAR = "CALLBACK_REQUEST"
# The claim a callback call was placed under (set on the Originate), written into its fate.
CALLBACK_CLAIM_VAR = "CALLBACK_CLAIM"
