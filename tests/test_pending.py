"""The table of actions in flight: which message answers which action, and when it is done."""

from __future__ import annotations

import pytest

from callback_dialer.ami.frames import AmiMessage
from callback_dialer.ami.pending import PendingActions


def msg(*pairs: tuple[str, str]) -> AmiMessage:
    return AmiMessage.from_pairs(list(pairs))


def ack(action_id: str, message: str = "", status: str = "Success", **extra: str) -> AmiMessage:
    return msg(
        ("Response", status),
        ("ActionID", action_id),
        *extra.items(),
        ("Message", message),
    )


def list_start(action_id: str) -> AmiMessage:
    return ack(action_id, "Queue status will follow", EventList="start")


def member(action_id: str, name: str) -> AmiMessage:
    return msg(("Event", "QueueMember"), ("ActionID", action_id), ("Name", name))


def complete(action_id: str) -> AmiMessage:
    return msg(("Event", "QueueStatusComplete"), ("ActionID", action_id), ("EventList", "Complete"))


async def test_a_single_action_is_answered_by_its_response_not_by_an_event() -> None:
    table = PendingActions()
    pending = table.add("o-1", "Originate", is_list=False)
    early = msg(("Event", "OriginateResponse"), ("ActionID", "o-1"), ("Response", "Failure"))
    assert table.take(early) is False  # for the handlers, not the answer
    assert not pending.done.done()
    response = ack("o-1", "Originate successfully queued")
    assert table.take(response) is True
    assert pending.done.done() and pending.response is response and pending.items == []
    assert len(table) == 0
    assert table.take(msg(("Event", "OriginateResponse"), ("ActionID", "o-1"))) is False


async def test_a_list_collects_its_events_up_to_the_complete_one() -> None:
    table = PendingActions()
    pending = table.add("q-1", "QueueStatus", is_list=True)
    assert table.take(list_start("q-1")) is True
    first, second = member("q-1", "Agent 101"), member("q-1", "Agent 102")
    # The items reach the handlers too: take() does not swallow events.
    assert [table.take(first), table.take(second)] == [False, False]
    assert not pending.done.done()
    assert table.take(complete("q-1")) is False
    assert pending.done.done()
    assert pending.items == [first, second]
    assert len(table) == 0


async def test_a_refused_list_and_a_list_announcing_nothing_end_at_their_response() -> None:
    table = PendingActions()
    refused = table.add("s-1", "Status", is_list=True)
    table.take(ack("s-1", "No such channel", status="Error"))
    assert refused.done.done() and refused.response.response == "Error"
    plain = table.add("s-2", "Status", is_list=True)
    table.take(ack("s-2", "Done"))
    assert plain.done.done() and plain.items == []
    # Asterisk's older wording for a list is still a list.
    worded = table.add("s-3", "Status", is_list=True)
    table.take(ack("s-3", "Channel status will follow"))
    assert not worded.done.done()
    assert len(table) == 1


async def test_messages_for_nobody_are_not_taken() -> None:
    table = PendingActions()
    table.add("p-1", "Ping", is_list=False)
    assert table.take(msg(("Event", "Hangup"), ("Uniqueid", "1.1"))) is False
    assert table.take(ack("other-7")) is False
    assert len(table) == 1


async def test_a_dropped_link_fails_every_waiter_and_keeps_nothing() -> None:
    table = PendingActions()
    ping = table.add("p-1", "Ping", is_list=False)
    status = table.add("q-1", "QueueStatus", is_list=True)
    table.take(list_start("q-1"))
    table.fail_all(lambda: ConnectionError("AMI connection lost"))
    assert len(table) == 0
    errors = [ping.done.exception(), status.done.exception()]
    assert all(isinstance(e, ConnectionError) for e in errors)
    assert errors[0] is not errors[1]  # each waiter gets its own exception (own traceback)
    # A late answer after the drop belongs to no one.
    assert table.take(complete("q-1")) is False


async def test_a_waiter_that_gave_up_is_gone_and_its_late_answer_reaches_no_one() -> None:
    table = PendingActions()
    pending = table.add("p-1", "Ping", is_list=False)
    table.discard(pending)
    assert pending.done.cancelled() and len(table) == 0
    assert table.take(ack("p-1")) is False
    # The same ActionID may be used again once nobody waits on it, never twice at once.
    again = table.add("p-1", "Ping", is_list=False)
    table.discard(pending)  # the old waiter's discard does not remove the new one
    assert "p-1" in table
    with pytest.raises(ValueError, match="already in flight"):
        table.add("p-1", "Ping", is_list=False)
    table.take(ack("p-1"))
    assert again.done.done()
