"""Who is free for a callback, from Asterisk's own queue events."""

from __future__ import annotations

import pytest

from callback_dialer.ami.capture import CaptureSource
from callback_dialer.ami.frames import AmiMessage
from callback_dialer.ami.router import EventRouter
from callback_dialer.ami.stream import AmiStream
from callback_dialer.clock import ManualClock
from callback_dialer.detect.agents import AgentBook, channel_prefix


def member(
    queue: str, interface: str = "PJSIP/101", event: str = "QueueMemberStatus", **fields: str
) -> AmiMessage:
    base = {
        "Event": event,
        "Queue": queue,
        "Interface": interface,
        "MemberName": "Anna",
        "Status": "1",
        "Paused": "0",
        "PausedReason": "",
        "InCall": "0",
        "Wrapuptime": "0",
        "LastCall": "0",
    }
    return AmiMessage({**base, **fields})


@pytest.fixture
def book(config) -> AgentBook:
    return AgentBook(config, ManualClock())


async def test_the_recorded_agent_states_capture(captures, config) -> None:
    clock = ManualClock()
    book = AgentBook(config, clock)
    router = EventRouter()
    router.add(book)
    seen: list[list[tuple[str, str, str]]] = []

    def snapshot(message: AmiMessage) -> None:
        if message.event in ("QueueMemberPause", "QueueMemberAdded", "QueueMemberRemoved"):
            seen.append([(v.interface, v.state, v.paused_reason) for v in book.views()])

    router.on("QueueMemberPause", snapshot)
    router.on("QueueMemberAdded", snapshot)
    router.on("QueueMemberRemoved", snapshot)
    await CaptureSource(captures / "agent_states.jsonl", AmiStream(router), clock).run()
    # 102 sits in sales and support: one agent, paused in both, then back; 104 comes and goes.
    a101, a103 = ("Local/101@agents/n", "free", ""), ("Local/103@agents/n", "free", "")
    assert seen == [
        # Paused in support only so far: still free for sales, the reason shown.
        [a101, ("Local/102@agents/n", "free", "break"), a103],
        [a101, ("Local/102@agents/n", "paused", "break"), a103],
        [a101, ("Local/102@agents/n", "free", "break"), a103],
        [a101, ("Local/102@agents/n", "free", ""), a103],
        [a101, ("Local/102@agents/n", "free", ""), a103, ("Local/104@agents/n", "free", "")],
        [a101, ("Local/102@agents/n", "free", ""), a103],
    ]
    assert book.all_categories_for("Local/102@agents/n") == (
        "new_connection",
        "support",
        "billing",
        "other",
    )


def test_one_person_in_several_queues_is_one_agent(book) -> None:
    book.on_member(member("sales", event="QueueMember"))
    book.on_member(member("support", event="QueueMember"))
    assert list(book.agents) == ["PJSIP/101"]
    assert book.categories_for("PJSIP/101") == ("new_connection", "support", "billing", "other")


def test_paused_in_one_queue_still_serves_the_other(book) -> None:
    book.on_member(member("sales", event="QueueMember"))
    book.on_member(member("support", event="QueueMember"))
    book.on_member(member("sales", event="QueueMemberPause", Paused="1", PausedReason="lunch"))
    assert book.categories_for("PJSIP/101") == ("support", "billing", "other")
    assert book.is_free("PJSIP/101", "support")
    assert not book.is_free("PJSIP/101", "new_connection")


@pytest.mark.parametrize(
    ("fields", "why"),
    [
        ({"Status": "2"}, "in use"),
        ({"Status": "6"}, "ringing"),
        ({"Status": "5"}, "unavailable"),
        ({"InCall": "1"}, "in a queue call"),
        ({"Paused": "1"}, "paused"),
    ],
)
def test_not_free_when(book, fields, why) -> None:
    book.on_member(member("support", event="QueueMember"))
    assert book.is_free("PJSIP/101")
    book.on_member(member("support", **fields))
    assert not book.is_free("PJSIP/101"), why


async def test_wrap_up_then_free_and_the_dispatcher_is_told(config) -> None:
    clock = ManualClock()
    freed: list[str] = []
    book = AgentBook(config, clock, on_change=freed.append)  # wrapup_seconds 15 by default
    book.on_member(member("support", event="QueueMember", Wrapuptime="30"))
    assert freed == ["PJSIP/101"]
    book.on_member(member("support", Status="2", InCall="1", Wrapuptime="30"))
    # The call ended just now.
    book.on_member(member("support", Status="1", InCall="0", Wrapuptime="30"))
    assert not book.is_free("PJSIP/101")
    assert [v.state for v in book.views()] == ["wrapup"]
    assert book.next_change_at() == clock.now() + 30  # Asterisk's wrap-up is the longer
    await clock.advance(30)
    assert book.is_free("PJSIP/101")


async def test_cooldown_and_reservation(book) -> None:
    book.on_member(member("support", event="QueueMember"))
    book.reserve("PJSIP/101", "cb-7")
    assert not book.is_free("PJSIP/101")
    assert book.still_free_for("PJSIP/101", "cb-7")
    assert not book.still_free_for("PJSIP/101", "cb-8")
    book.unreserve("PJSIP/101", cooldown=120)
    assert [v.state for v in book.views()] == ["cooldown"]
    await book.clock.advance(121)
    assert book.is_free("PJSIP/101")


def test_a_queue_status_after_a_reconnect_drops_members_who_left(book) -> None:
    book.on_member(member("sales", event="QueueMember"))
    book.on_member(member("sales", interface="PJSIP/102", event="QueueMember"))
    book.begin_resync()
    book.on_member(member("sales", event="QueueMember"))
    book.on_status_complete(AmiMessage({"Event": "QueueStatusComplete"}))
    assert list(book.agents) == ["PJSIP/101"]


def test_a_member_added_while_the_queue_status_is_on_its_way_is_kept(book) -> None:
    book.on_member(member("sales", event="QueueMember"))
    book.begin_resync()
    # Added after Asterisk built its list: the event arrives before the list ends.
    book.on_member(member("sales", interface="PJSIP/103", event="QueueMemberAdded"))
    book.on_member(member("sales", event="QueueMember"))
    book.on_status_complete(AmiMessage({"Event": "QueueStatusComplete"}))
    assert sorted(book.agents) == ["PJSIP/101", "PJSIP/103"]


def test_agent_channels_are_recognised_by_their_interface(book) -> None:
    book.on_member(member("sales", interface="Local/101@agents/n", event="QueueMember"))
    book.on_member(member("sales", interface="PJSIP/102", event="QueueMember"))
    assert book.is_agent_channel("Local/101@agents-00000007;1")
    assert book.is_agent_channel("PJSIP/102-0000001a")
    assert not book.is_agent_channel("PJSIP/1020-0000001a")
    assert not book.is_agent_channel("IAX2/carrier-8832")
    assert channel_prefix("Local/101@agents/n") == "Local/101@agents-"
