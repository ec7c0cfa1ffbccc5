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
