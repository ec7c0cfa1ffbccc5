"""How a callback attempt ended, and what the queue makes of it.

An attempt ends in exactly one of five kinds. Four are stored on the callback (its claim
settled one way or the other); the fifth, ``ABORT``, stores nothing: the callback was closed
elsewhere or is no longer ours, so only the call is hung up. The reason says why, in the
words the history, the metrics and the reports use.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class OutcomeKind(StrEnum):
    DONE = "done"
    """The customer talked to an agent long enough: the callback is closed as called back.
    Uses one of the customer's attempts."""

    RETRY = "retry"
    """The customer was dialled and not reached (busy, no answer, a call too short to count):
    uses one of their attempts; the callback waits for the next one, or fails after the last."""

    RELEASE = "release"
    """Nothing the customer did (the agent did not answer, a queue call took the agent, the
    Originate failed, the dialer stopped): the callback goes back without using an attempt,
    ready at once or at ``not_before``."""

    FAIL = "fail"
    """This callback can never be dialled (its number is not one we may call): failed."""

    ABORT = "abort"
    """The callback was closed while being dialled (served, cancelled) or its claim was lost:
    the call is hung up and nothing is stored, its new owner has the last word."""

    @property
    def uses_attempt(self) -> bool:
        """Does this outcome count against the customer's attempts?"""
        return self in (OutcomeKind.DONE, OutcomeKind.RETRY)


class Reason(StrEnum):
    """Why an attempt ended as it did: stored in the attempt log and counted by the metrics."""

    # The customer talked (done) or not long enough (retry).
    ANSWERED = "answered"
    SHORT_CALL = "short_call"
    # The customer's leg failed (retry); from DialEnd (agent first) or OriginateResponse
    # (customer first).
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    CONGESTION = "congestion"
    UNAVAILABLE = "unavailable"
    FAILED_DIAL = "failed_dial"  # a DialStatus we have no better word for
    # The agent's side (release).
    AGENT_NO_ANSWER = "agent_no_answer"
    AGENT_BUSY = "agent_busy"  # a queue call took the agent first
    AGENT_REJECTED = "agent_rejected"
    AGENT_CONGESTION = "agent_congestion"
    AGENT_HUNG_UP = "agent_hung_up"  # answered, then hung up before the customer was dialled
    CUSTOMER_HUNG_UP_WAITING = "customer_hung_up_waiting"  # customer first: before an agent
    # The Originate itself (release).
    ORIGINATE_FAILED = "originate_failed"  # the first channel could not be created
    ORIGINATE_REFUSED = "originate_refused"  # Asterisk answered the action with an error
    ORIGINATE_INVALID = "originate_invalid"  # our own checks refused to build it
    AMI_DOWN = "ami_down"  # not connected: nothing was sent
    # Nothing heard (release, later): we cannot know whether the customer was reached.
    NO_OUTCOME = "no_outcome"
    OUTCOME_UNKNOWN = "outcome_unknown"
    DIALER_STOPPED = "dialer_stopped"
    # Asterisk shut down or restarted (its Shutdown event): every call was cut.
    PBX_RESTART = "pbx_restart"
    # The callback itself (fail, abort).
    INVALID_NUMBER = "invalid_number"
    CLAIM_LOST = "claim_lost"
    # Another dialer holds the leader lease now: the call is theirs to follow (never hung up).
    NOT_LEADER = "not_leader"


# Outcomes that say nothing about whether originates work: they neither count towards the
# failure streak nor end it.
STREAK_NEUTRAL = frozenset({Reason.AMI_DOWN, Reason.AGENT_BUSY})


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: OutcomeKind
    reason: str  # a Reason; an abort carries the closing event's (cancelled, served_inbound)
    talk: float = 0.0
    cooldown: bool = False  # the agent who let it ring out rests
    not_before: float | None = None  # a release: ready again only from then
    streak: bool = False  # an outright failure, counted towards the alarm

    @classmethod
    def done(cls, talk: float) -> Outcome:
        return cls(OutcomeKind.DONE, Reason.ANSWERED, talk=talk)

    @classmethod
    def retry(cls, reason: Reason, talk: float = 0.0) -> Outcome:
        return cls(OutcomeKind.RETRY, reason, talk=talk)

    @classmethod
    def release(
        cls,
        reason: Reason,
        *,
        cooldown: bool = False,
        not_before: float | None = None,
        streak: bool = False,
    ) -> Outcome:
        return cls(
            OutcomeKind.RELEASE, reason, cooldown=cooldown, not_before=not_before, streak=streak
        )

    @classmethod
    def fail(cls, reason: Reason) -> Outcome:
        return cls(OutcomeKind.FAIL, reason)

    @classmethod
    def abort(cls, reason: str) -> Outcome:
        return cls(OutcomeKind.ABORT, reason)
