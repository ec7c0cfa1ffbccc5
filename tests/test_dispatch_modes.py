"""One attempt's state machine and what each answer from Asterisk means in each mode, without a
PBX: the strategies and the Attempt on their own, on a clock moved by hand."""

from __future__ import annotations

import pytest

from callback_dialer.ami.asterisk import DialStatus, OriginateReason
from callback_dialer.clock import ManualClock
from callback_dialer.dispatch.attempt import Attempt, Attempts
from callback_dialer.dispatch.origination import plan_originate
from callback_dialer.dispatch.outcome import Outcome, OutcomeKind, Reason
from callback_dialer.dispatch.strategies import (
    AgentFirst,
    CustomerFirst,
    Recheck,
    Strategy,
    strategy_for,
)
from callback_dialer.phone import NumberPolicy
from callback_dialer.queue.models import Callback, Claim, Source, Stage, State

AGENT = "Local/101@agents/n"


def claim(callback_id: str = "cb-7", number: str = "+79161230001") -> Claim:
    now = 1_795_345_800.0
    cb = Callback(
        id=callback_id,
        number=number,
        category="new_connection",
        source=Source.ABANDON,
        state=State.DIALING,
        reason="",
        first_missed=now - 60,
        last_missed=now - 60,
        missed_count=1,
        attempts=0,
        score=0.0,
        created_at=now - 60,
        updated_at=now,
        trunk="default",
    )
    return Claim(callback=cb, token="t")


@pytest.fixture
def book(clock: ManualClock) -> Attempts:
    return Attempts(clock)


def planned(book: Attempts, config, strategy: Strategy) -> Attempt:
    """An attempt with its Originate built and written, as the dispatcher leaves it."""
    c = claim()
    attempt = book.open(c, AGENT, "default")
    number = NumberPolicy(config.phone).parse_e164(c.callback.number)
    plan = plan_originate(
        config,
        strategy,
        callback_id=c.callback.id,
        category=c.callback.category,
        number=number,
        interface=AGENT,
        trunk="default",
        attempt_no=1,
    )
    attempt.planned(plan)
    attempt.dialling(strategy.first_stage)
    attempt.originated(plan.action_id)
    return attempt


def test_the_mode_is_chosen_once_from_the_config(make_config) -> None:
    assert isinstance(strategy_for(make_config().dispatch), AgentFirst)
    customer_first = make_config(dispatch={"mode": "customer_first"}).dispatch
    assert isinstance(strategy_for(customer_first), CustomerFirst)


# ---------------------------------------------------------------- OriginateResponse


@pytest.mark.parametrize(
    ("reason", "outcome"),
    [
        (
            OriginateReason.FAILED,
            Outcome.release(Reason.ORIGINATE_FAILED, cooldown=True, streak=True),
        ),
        (OriginateReason.HANGUP, Outcome.release(Reason.AGENT_REJECTED, cooldown=True)),
        (OriginateReason.NO_ANSWER, Outcome.release(Reason.AGENT_NO_ANSWER, cooldown=True)),
        (OriginateReason.BUSY, Outcome.release(Reason.AGENT_BUSY)),
        (
            OriginateReason.CONGESTION,
            Outcome.release(Reason.AGENT_CONGESTION, cooldown=True, streak=True),
        ),
        (None, Outcome.release(Reason.ORIGINATE_FAILED, cooldown=True, streak=True)),
    ],
)
def test_agent_first_a_failed_agent_leg_costs_the_customer_nothing(config, reason, outcome) -> None:
    decided = AgentFirst(config.dispatch).first_leg_failed(reason)
    assert decided == outcome
    assert decided.kind is OutcomeKind.RELEASE and not decided.kind.uses_attempt


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        (OriginateReason.FAILED, Reason.UNAVAILABLE),
        (OriginateReason.HANGUP, Reason.NO_ANSWER),
        (OriginateReason.NO_ANSWER, Reason.NO_ANSWER),
        (OriginateReason.BUSY, Reason.BUSY),
        (OriginateReason.CONGESTION, Reason.CONGESTION),
        (None, Reason.UNAVAILABLE),
    ],
)
def test_customer_first_a_failed_customer_leg_uses_an_attempt(make_config, reason, why) -> None:
    config = make_config(dispatch={"mode": "customer_first"})
    decided = CustomerFirst(config.dispatch).first_leg_failed(reason)
    assert decided == Outcome(OutcomeKind.RETRY, why)
    assert decided.kind.uses_attempt


def test_customer_first_reason_0_for_a_created_channel_waits_for_its_dial_to_say_why(
    make_config,
) -> None:
    # Asterisk 22 reports a busy, congested or unanswered Local customer leg as Reason 0 with
    # our ChannelId (tests/fixtures/customer_first.jsonl); <unknown> means nothing was dialled.
    config = make_config(dispatch={"mode": "customer_first"})
    strategy = CustomerFirst(config.dispatch)
    unavailable = Outcome.retry(Reason.UNAVAILABLE)
    assert strategy.first_leg_failed(OriginateReason.FAILED, "cbd-cb-7-1-abcdef") == Recheck(
        after=1.0, outcome=unavailable
    )
    assert strategy.first_leg_failed(OriginateReason.FAILED, "<unknown>") == unavailable
    assert strategy.first_leg_failed(OriginateReason.BUSY, "cbd-cb-7-1-abcdef") == (
        Outcome.retry(Reason.BUSY)
    )


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (DialStatus.BUSY, Reason.BUSY),
        (DialStatus.CONGESTION, Reason.CONGESTION),
        (DialStatus.NOANSWER, Reason.NO_ANSWER),
        (DialStatus.CHANUNAVAIL, Reason.UNAVAILABLE),
        ("TORTURE", Reason.FAILED_DIAL),
    ],
)
def test_the_first_legs_own_dial_ending_is_the_customers_outcome_only_customer_first(
    make_config, status, why
) -> None:
    customer_first = make_config(dispatch={"mode": "customer_first"}).dispatch
    assert CustomerFirst(customer_first).first_leg_dial_ended(status) == Outcome.retry(why)
    # Agent first the first leg is the agent's: its OriginateResponse Reason decides.
    assert AgentFirst(make_config().dispatch).first_leg_dial_ended(status) is None


def test_agent_first_the_agent_answering_keeps_ringing_the_agent_stage(book, config) -> None:
    strategy = AgentFirst(config.dispatch)
    attempt = planned(book, config, strategy)
    strategy.first_leg_answered(attempt, "1795345800.17")
    assert (attempt.stage, attempt.answered_at) == (Stage.RINGING_AGENT, None)
    assert book.by_channel("1795345800.17") is attempt
    assert attempt.first_leg_pending  # the customer is not dialled yet: it may still time out


def test_customer_first_the_customer_answering_starts_their_wait_for_an_agent(
    book, make_config, clock
) -> None:
    config = make_config(dispatch={"mode": "customer_first"})
    strategy = CustomerFirst(config.dispatch)
    attempt = planned(book, config, strategy)
    assert attempt.stage is Stage.RINGING_CUSTOMER
    strategy.first_leg_answered(attempt, "<unknown>")
    assert (attempt.stage, attempt.answered_at) == (Stage.RINGING_AGENT, clock.now())
    assert book.by_channel("<unknown>") is None  # not a channel
    assert not attempt.first_leg_pending


# ---------------------------------------------------------------- the second leg


def test_agent_first_the_second_leg_is_the_customer_dialled_from_the_callback_context(
    book, config
) -> None:
    strategy = AgentFirst(config.dispatch)
    assert strategy.second_leg_context == config.dispatch.context
    attempt = planned(book, config, strategy)
    strategy.second_leg_ringing(attempt, "1795345800.20")
    assert (attempt.stage, attempt.customer_uid) == (Stage.RINGING_CUSTOMER, "1795345800.20")
    assert "1795345800.20" in attempt.known_channels()
    assert book.by_channel("1795345800.20") is attempt


def test_customer_first_the_second_leg_is_the_agent_rung_from_the_agent_context(
    book, make_config
) -> None:
    config = make_config(dispatch={"mode": "customer_first"})
    strategy = CustomerFirst(config.dispatch)
    assert strategy.second_leg_context == config.dispatch.agent_context
    attempt = planned(book, config, strategy)
    strategy.first_leg_answered(attempt, "1795345800.30")
    strategy.second_leg_ringing(attempt, "1795345800.31")
    assert (attempt.stage, attempt.customer_uid) == (Stage.RINGING_AGENT, "")
    assert book.by_channel("1795345800.31") is attempt
    book.close(attempt)
    assert book.by_channel("1795345800.31") is None and not book


@pytest.mark.parametrize(
    ("status", "why"),
    [
        (DialStatus.BUSY, Reason.BUSY),
        (DialStatus.NOANSWER, Reason.NO_ANSWER),
        (DialStatus.CANCEL, Reason.NO_ANSWER),
        (DialStatus.CONGESTION, Reason.CONGESTION),
        (DialStatus.CHANUNAVAIL, Reason.UNAVAILABLE),
        ("TORTURE", Reason.FAILED_DIAL),
    ],
)
def test_each_failed_dial_of_the_customer_means_a_retry(config, status, why) -> None:
    assert AgentFirst(config.dispatch).second_leg_failed(status) == Outcome(OutcomeKind.RETRY, why)


def test_customer_first_an_agent_not_answering_is_not_the_customers_fault(make_config) -> None:
    config = make_config(dispatch={"mode": "customer_first"})
    assert CustomerFirst(config.dispatch).second_leg_failed(DialStatus.NOANSWER) == (
        Outcome.release(Reason.AGENT_NO_ANSWER, cooldown=True)
    )


# ---------------------------------------------------------------- Hangup


@pytest.mark.parametrize("mode", ["agent_first", "customer_first"])
async def test_a_hangup_while_talking_is_done_or_a_short_call(
    book, make_config, clock, mode
) -> None:
    config = make_config(dispatch={"mode": mode, "min_talk_seconds": 10})
    strategy = strategy_for(config.dispatch)
    short = planned(book, config, strategy)
    strategy.first_leg_answered(short, "1795345800.40")
    short.talking()
    await clock.advance(4)
    assert strategy.hung_up(short, "1795345800.40", clock.now()) == Outcome.retry(
        Reason.SHORT_CALL, talk=4
    )
    await clock.advance(6)
    assert strategy.hung_up(short, "1795345800.40", clock.now()) == Outcome.done(talk=10)


def test_agent_first_the_agent_leg_ending_before_any_customer_dial_is_checked_again(
    book, config
) -> None:
    strategy = AgentFirst(config.dispatch)
    attempt = planned(book, config, strategy)
    first = attempt.plan.channel_id
    assert strategy.hung_up(attempt, first, 0) == Recheck(
        after=1.0, outcome=Outcome.release(Reason.AGENT_HUNG_UP)
    )
    assert strategy.hung_up(attempt, attempt.plan.other_channel_id, 0) is None
    strategy.second_leg_ringing(attempt, "1795345800.50")
    assert strategy.hung_up(attempt, first, 0) is None  # the customer is being dialled


def test_customer_first_a_customer_hanging_up_while_waiting_is_released(book, make_config) -> None:
    config = make_config(dispatch={"mode": "customer_first"})
    strategy = CustomerFirst(config.dispatch)
    attempt = planned(book, config, strategy)
    assert strategy.hung_up(attempt, attempt.plan.channel_id, 0) is None  # never answered
    strategy.first_leg_answered(attempt, "1795345800.60")
    assert strategy.hung_up(attempt, "1795345800.60", 0) == Outcome.release(
        Reason.CUSTOMER_HUNG_UP_WAITING
    )


# ---------------------------------------------------------------- the Originate


def test_each_mode_dials_its_own_first_leg(make_config) -> None:
    sent = {}
    for mode in ("agent_first", "customer_first"):
        config = make_config(dispatch={"mode": mode})
        plan = plan_originate(
            config,
            strategy_for(config.dispatch),
            callback_id="cb-7",
            category="new_connection",
            number=NumberPolicy(config.phone).parse_e164("+79161230001"),
            interface=AGENT,
            trunk="default",
            attempt_no=1,
        )
        f = plan.fields
        sent[mode] = (f["Channel"], f["Context"], f["Exten"], f["Timeout"], f["Variable"][3:])
    assert sent == {
        # No whisper facts given: the dialplan is told to say nothing.
        "agent_first": (
            "Local/101@agents",
            "callback-outbound",
            "79161230001",
            "15000",
            ["CALLBACK_WHISPER=0"],
        ),
        "customer_first": (
            "Local/79161230001@callback-customer/n",
            "callback-agent",
            "101",
            "30000",
            ["CALLBACK_WHISPER=0", "CALLBACK_AGENT=Local/101@agents"],
        ),
    }


# ---------------------------------------------------------------- the attempt itself


def test_the_first_decision_stands(book, config) -> None:
    strategy = AgentFirst(config.dispatch)
    cancelled = planned(book, config, strategy)
    assert cancelled.abort("cancelled")
    # The hang-up that follows makes Asterisk report the agent leg as rejected: too late.
    assert not cancelled.finish(strategy.first_leg_failed(OriginateReason.HANGUP))
    assert (cancelled.aborted, cancelled.outcome) == ("cancelled", None)
    book.close(cancelled)
    answered = planned(book, config, strategy)
    assert answered.finish(Outcome.done(talk=30))
    assert not answered.abort("served_outbound")
    assert (answered.aborted, answered.outcome) == ("", Outcome.done(talk=30))


async def test_the_in_progress_view_follows_the_stages(book, config, clock) -> None:
    strategy = AgentFirst(config.dispatch)
    started = clock.now()
    attempt = planned(book, config, strategy)
    await clock.advance(3)
    strategy.first_leg_answered(attempt, "1795345800.70")
    strategy.second_leg_ringing(attempt, "1795345800.71")
    await clock.advance(2)
    assert attempt.view(clock.now()) == {
        "id": "cb-7",
        "agent": AGENT,
        "number": "+79161230001",
        "category": "new_connection",
        "stage": "ringing_customer",
        "since": started + 3,
        "started_at": started,
        "duration": 5.0,
        "adopted": False,  # an attempt we dialled, not one taken over from another run
    }


def test_a_lost_link_marks_only_attempts_already_sent(book, config) -> None:
    strategy = AgentFirst(config.dispatch)
    waiting = book.open(claim("cb-8", "+79161230002"), "Local/102@agents/n", "default")
    sent = planned(book, config, strategy)
    for attempt in (waiting, sent):
        attempt.link_lost()
    assert (waiting.fate_unknown, sent.fate_unknown) == (False, True)
    sent.still_up()
    assert not sent.fate_unknown
