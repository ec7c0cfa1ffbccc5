"""queue_log: each callback's life written through the AMI QueueLog action under the missed
call's uniqueid and queue, so a queue_log reader matches the recall to the abandon; durable
across a cut link, and never in the way of dispatching."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json

import pytest
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.model import CallerScript, CustomerResponse, FixedAgent, PbxSpec
from simpbx.pbx import SimPbx

from callback_dialer.app import build_dialer
from callback_dialer.clock import ScaledClock
from callback_dialer.config import ConfigError, parse_config
from callback_dialer.queue.models import Attempt, Callback, Source, State
from callback_dialer.queuelog import QueueLogLine, line_for

from .helpers.wait import until

NOW = 1_800_000_000.0
NUMBER = "79161230011"


def _cb(**over) -> Callback:
    fields = dict(
        id="cb-4",
        number="+79161230011",
        category="support",
        source=Source.ABANDON,
        state=State.DIALING,
        reason="",
        first_missed=NOW - 600,
        last_missed=NOW - 300,
        missed_count=2,
        attempts=1,
        score=0,
        created_at=NOW - 600,
        updated_at=NOW,
        call_id="1800000000.11",
        queue="support",
        agent="Local/103@agents/n",
    )
    fields.update(over)
    return Callback(**fields)


def _event(event: str, reason: str = "", at: float = NOW, **detail) -> dict[str, str]:
    return {
        "id": "cb-4",
        "event": event,
        "state": "x",
        "reason": reason,
        "actor": "dispatcher",
        "category": "support",
        "number": "+79161230011",
        "at": f"{at:.3f}",
        "detail": json.dumps(detail) if detail else "",
    }


# ---------------------------------------------------------------- the lines


def test_every_missed_call_is_written_under_its_own_uniqueid_and_queue() -> None:
    cb = _cb()
    created = line_for(
        _event("created", "abandon", call_id="1800000000.11", queue="support"), cb, "NONE"
    )
    assert created == QueueLogLine(
        "support", "1800000000.11", "NONE", "CALLBACKQUEUED",
        ("cb-4", "support", "abandon", "+79161230011"),
    )  # fmt: skip
    merged = line_for(
        _event("merged", "timeout", call_id="1800000300.20", queue="sales", category="billing"),
        cb,
        "NONE",
    )
    assert (merged.verb, merged.uniqueid, merged.queue) == (
        "CALLBACKMERGED",
        "1800000300.20",
        "sales",
    )
    assert merged.data[1] == "billing"


def test_the_steps_of_a_recall_carry_the_first_calls_uniqueid_and_the_agent() -> None:
    before = _cb(attempt_log=(Attempt(at=NOW - 200, agent="PJSIP/1", outcome="busy"),))
    attempt = line_for(
        _event("stage", "ringing_customer", agent="Local/103@agents/n"), before, "NONE"
    )
    assert attempt == QueueLogLine(
        "support", "1800000000.11", "Local/103@agents/n", "CALLBACKATTEMPT",
        ("cb-4", "2", "+79161230011"),
    )  # fmt: skip
    done_rec = Attempt(at=NOW, agent="Local/103@agents/n", outcome="answered", talk_seconds=41.6)
    after = dataclasses.replace(before, attempt_log=(*before.attempt_log, done_rec))
    reached = line_for(_event("done", "called_back", attempt=done_rec.to_json()), after, "NONE")
    assert reached.verb == "CALLBACKREACHED"
    assert reached.interface == "Local/103@agents/n"
    assert reached.data == ("cb-4", "2", "42", "600")
    retry = line_for(
        _event("retry", "busy", at=NOW - 200, attempt={"agent": "PJSIP/1"}, next_at=NOW + 700),
        after,
        "NONE",
    )
    assert retry.data == ("cb-4", "1", "busy", str(int(NOW + 700)))
    failed = line_for(_event("failed", "expired"), after, "NONE")
    assert (failed.verb, failed.interface, failed.data) == (
        "CALLBACKFAILED",
        "NONE",
        ("cb-4", "2", "expired"),
    )


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ("cancelled", "by_hand"),
        ("outage_dropped", "outage_over"),
        ("served_inbound", "served_inbound"),
        ("served_outbound", "served_outbound"),
    ],
)
def test_a_callback_closed_without_our_call_is_dropped_with_the_reason(event, reason) -> None:
    line = line_for(_event(event, reason), _cb(), "NONE")
    assert line.verb == "CALLBACKDROPPED"
    assert line.data[:2] == ("cb-4", reason)


def test_a_callback_held_for_an_outage_is_queued_all_the_same() -> None:
    line = line_for(
        _event("held", "abandon", call_id="1800000000.11", queue="support", outage="o-1"),
        _cb(),
        "NONE",
    )
    assert (line.verb, line.uniqueid, line.queue) == ("CALLBACKQUEUED", "1800000000.11", "support")


def test_no_line_for_other_changes_or_a_callback_with_no_call_behind_it() -> None:
    for event, reason in (("claimed", ""), ("due", "due"), ("stage", "talking"), ("adopted", "")):
        assert line_for(_event(event, reason), _cb(), "NONE") is None
    manual = _cb(call_id="", queue="")
    assert line_for(_event("created", "manual"), manual, "NONE") is None
    assert line_for(_event("created", "abandon"), None, "NONE") is None
    ivr = line_for(_event("created", "ivr_hangup", call_id="17.1"), _cb(queue=""), "ivr")
    assert ivr.queue == "ivr"


def test_a_line_never_carries_a_separator_or_a_line_break_it_was_not_given() -> None:
    line = QueueLogLine("q", "1.1", "NONE", "CALLBACKRETRY", ("cb-1", "1", "bu|sy\r\nX: y", ""))
    assert line.action()["Message"] == "cb-1|1|busyX: y|"


def test_queue_log_is_off_by_default_and_its_queue_name_is_checked() -> None:
    assert parse_config({}, "test").queue_log.enabled is False
    with pytest.raises(ConfigError) as caught:
        parse_config({"queue_log": {"default_queue": "a|b"}}, "test")
    assert caught.value.problems[0].startswith("queue_log.default_queue: ")


# ---------------------------------------------------------------- against the simulator


@pytest.fixture
async def sim_rig(make_config, redis_url, tmp_path):
    made = []

    async def build(**sections):
        # 25 times real time: a loaded machine stalls the loop for real milliseconds, which
        # must not become whole simulated seconds of an agent or customer leg.
        clock = ScaledClock(25.0)
        agents = tuple(
            dataclasses.replace(a, behaviour=FixedAgent(talk=60)) for a in PbxSpec().agents
        )
        pbx = SimPbx(
            clock,
            PbxSpec(agents=agents),
            customers=PerNumber({NUMBER: CustomerResponse("ANSWER", ring=2, talk=30)}),
        )
        ami = await PbxAmi.serve(pbx, secret="s3cret")
        config = make_config(
            ami={
                "port": ami.port,
                "secret": "s3cret",
                "reconnect_min_delay": 0.05,
                "reconnect_max_delay": 0.2,
            },
            dispatch={"wrapup_seconds": 5, "tick_seconds": 5},
            queue_log={"enabled": True, "timeout": 1},
            **sections,
        )
        dialer = build_dialer(
            config, clock=clock, redis_url=redis_url, spool=tmp_path / "spool.jsonl"
        )
        await dialer.start()
        await until(lambda: dialer.ami.authenticated and len(dialer.pipeline.agents.agents) == 3)
        made.append((pbx, dialer, ami))
        return pbx, dialer, ami

    yield build
    for pbx, dialer, ami in made:
        await dialer.stop()
        await ami.stop()
        await pbx.close()


async def _abandon_and_call_back(pbx, dialer) -> None:
    for agent in ("101", "102"):
        pbx.scheduler.run(pbx.pause, agent, True, "lunch")
    pbx.place_call("+" + NUMBER, CallerScript(choice="1", patience=15))
    await run_for(pbx.clock, 25)
    pbx.scheduler.run(pbx.pause, "101", False)

    async def done() -> bool:
        rows = await dialer.queue.finished_between(0, float("inf"))
        return any(c.state is State.DONE for c in rows)

    for _ in range(60):
        if await done():
            return
        await run_for(pbx.clock, 5)
    raise AssertionError("the callback was not done")


def _rows(pbx) -> list[list[str]]:
    return [line.split("|") for line in pbx.queue_log]


async def _lines_with(pbx, verb: str, count: int = 1) -> list[list[str]]:
    for _ in range(100):
        found = [r for r in _rows(pbx) if r[4] == verb]
        if len(found) >= count:
            return found
        await run_for(pbx.clock, 1)
    raise AssertionError(f"no {verb} in {pbx.queue_log}")


async def test_a_reader_matches_the_recall_to_the_abandon_by_uniqueid(sim_rig) -> None:
    pbx, dialer, _ = await sim_rig()
    await _abandon_and_call_back(pbx, dialer)
    [reached] = await _lines_with(pbx, "CALLBACKREACHED")
    [abandon] = [r for r in _rows(pbx) if r[4] == "ABANDON"]
    uid, queue = abandon[1], abandon[2]
    mine = [r for r in _rows(pbx) if r[4].startswith("CALLBACK")]
    assert [r[4] for r in mine] == ["CALLBACKQUEUED", "CALLBACKATTEMPT", "CALLBACKREACHED"]
    for row in mine:
        assert (row[1], row[2]) == (uid, queue) == (row[1], "sales")
    [cb] = await dialer.queue.finished_between(0, float("inf"))
    assert mine[0][5:] == [cb.id, "new_connection", "abandon", "+" + NUMBER]
    assert mine[1][3] == "Local/101@agents/n" and mine[1][5:] == [cb.id, "1", "+" + NUMBER]
    assert reached[3] == "Local/101@agents/n" and reached[5:7] == [cb.id, "1"]
    assert dialer.queue_log.written == 3 and dialer.queue_log.refused == 0
    text = await dialer.metrics.render()
    assert 'callback_dialer_queue_log_lines{result="written"} 3' in text
    assert 'callback_dialer_queue_log_lines{result="refused"} 0' in text


async def test_lines_cut_off_by_a_dropped_link_are_written_once_it_is_back(sim_rig) -> None:
    pbx, dialer, ami = await sim_rig()
    handler = ami.server.handlers["queuelog"]
    cut = []

    def cut_once(session, message):
        if not cut:
            cut.append(message.get("Event"))
            ami.server.drop_all()  # the line is on its way, no answer ever comes
            return
        handler(session, message)

    ami.server.handlers["queuelog"] = cut_once
    await _abandon_and_call_back(pbx, dialer)
    await _lines_with(pbx, "CALLBACKREACHED")
    verbs = [r[4] for r in _rows(pbx) if r[4].startswith("CALLBACK")]
    assert cut == ["CALLBACKQUEUED"]
    assert verbs == ["CALLBACKQUEUED", "CALLBACKATTEMPT", "CALLBACKREACHED"]


async def test_asterisk_refusing_or_ignoring_the_lines_never_holds_up_a_callback(
    sim_rig,
) -> None:
    pbx, dialer, ami = await sim_rig()

    def refuse(session, message):
        ami._reply(session, message.get("ActionID"), "Permission denied", "Error")

    ami.server.handlers["queuelog"] = refuse
    await _abandon_and_call_back(pbx, dialer)  # done, whatever queue_log does
    await until(lambda: dialer.queue_log.refused >= 3, timeout=10)
    assert dialer.queue_log.written == 0
    assert not [line for line in pbx.queue_log if "|CALLBACK" in line]


# ---------------------------------------------------------------- the writer on its own


class _Ami:
    """Takes QueueLog actions like Asterisk (or lets them fail, by ``down``)."""

    def __init__(self) -> None:
        self.sent: list[dict] = []
        self.authenticated = True
        self.down = False

    async def send_action(self, fields, *, timeout=None):
        from callback_dialer.ami.client import AmiConnectionLost

        if self.down:
            raise AmiConnectionLost("link lost")
        self.sent.append(dict(fields))


async def test_a_standby_writes_nothing_and_no_line_is_lost_or_repeated_across_restarts(
    redis_client, config, queue, clock
) -> None:
    from callback_dialer.queuelog import QueueLogWriter

    leading = {"now": False}
    ami = _Ami()

    def writer() -> QueueLogWriter:
        return QueueLogWriter(
            redis_client, config, queue, ami, clock, leading=lambda: leading["now"], block_ms=50
        )

    first = writer()
    await first.prime()  # the cursor starts at the end: older changes are not news
    for n, number in enumerate(("+79161230001", "+79161230002", "+79161230003")):
        await queue.add_missed(
            number=number,
            category="support",
            source=Source.ABANDON,
            missed_at=clock.now(),
            call_id=f"1800000000.{n}",
            queue="support",
        )

    async def tick(times: int = 1) -> None:
        for _ in range(times):
            await clock.advance(1.0)
            await asyncio.sleep(0.05)

    # A standby: its loop writes nothing at all.
    task = asyncio.ensure_future(first.run())
    await tick(3)
    assert ami.sent == []
    # Leading now, but the link drops under the first line: kept for later, cursor unmoved.
    leading["now"] = True
    ami.down = True
    await tick(3)
    assert ami.sent == []
    ami.down = False
    for _ in range(50):
        if len(ami.sent) == 3:
            break
        await tick()
    await first.close()
    await tick()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert [a["UniqueId"] for a in ami.sent] == [f"1800000000.{n}" for n in range(3)]
    # A restart (kill -9 alike: a new writer reading the cursor back) repeats nothing ...
    again = writer()
    assert await again.process_once(None) == 0
    # ... and goes on with what comes next.
    await queue.add_missed(
        number="+79161230001",
        category="support",
        source=Source.TIMEOUT,
        missed_at=clock.now(),
        call_id="1800000000.9",
        queue="sales",
    )
    assert await again.process_once(None) == 1
    assert (ami.sent[-1]["Event"], ami.sent[-1]["UniqueId"], ami.sent[-1]["Queue"]) == (
        "CALLBACKMERGED",
        "1800000000.9",
        "sales",
    )


async def test_a_writer_behind_the_trimmed_end_of_the_stream_says_lines_are_lost(
    redis_client, config, queue, clock
) -> None:
    from structlog.testing import capture_logs

    from callback_dialer.queue.keys import Keys
    from callback_dialer.queuelog import QueueLogWriter

    keys = Keys(config.redis.key_prefix)
    await redis_client.set(keys.queue_log_cursor(), "1-0")  # stopped long ago
    for n in range(3):
        await redis_client.xadd(keys.events(), {"id": f"cb-{n}", "event": "due"})
    await redis_client.xtrim(keys.events(), maxlen=1, approximate=False)  # as MAXLEN does
    writer = QueueLogWriter(redis_client, config, queue, _Ami(), clock)
    with capture_logs() as logs:
        await writer.prime()
    [lost] = [e for e in logs if e["event"].startswith("queue_log lines may be lost")]
    assert lost["log_level"] == "error" and lost["cursor"] == "1-0"
    # A writer whose cursor entry is still held says nothing.
    await redis_client.set(keys.queue_log_cursor(), lost["oldest_held"])
    with capture_logs() as logs:
        await QueueLogWriter(redis_client, config, queue, _Ami(), clock).prime()
    assert not [e for e in logs if e["event"].startswith("queue_log lines may be lost")]
