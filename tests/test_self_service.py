"""Calls the IVR served itself: marked by CALLBACK_SKIP or a [detection] self_service rule,
never a callback, counted by reason on the page, in /metrics and in the daily report."""

from __future__ import annotations

import redis

from callback_dialer.detect.facts import MissedCall, SelfServed
from callback_dialer.detect.replay import replay_capture
from callback_dialer.detect.sink import QueueSink, _from_json, _to_json
from callback_dialer.detect.tracker import skip_reason
from callback_dialer.jobs import reports
from callback_dialer.queue.models import Source
from callback_dialer.queue.store import CallbackQueue

from .conftest import FIXTURES
from .helpers.captures import replace_in_raw, rewrite
from .test_detection_captures import facts_of

CHANVAR = "ChanVariable: CALLBACK_ID=\r\n"


def with_skip(tmp_path, name: str, value: str):
    """A recording whose channels carry CALLBACK_SKIP=value (as channelvars would bring it)."""
    return rewrite(
        FIXTURES / f"{name}.jsonl",
        tmp_path / f"{name}-skip.jsonl",
        replace_in_raw(CHANVAR, CHANVAR + f"ChanVariable: CALLBACK_SKIP={value}\r\n"),
    )


async def test_a_call_marked_by_the_dialplan_is_counted_not_called_back(
    tmp_path, config, queue
) -> None:
    path = with_skip(tmp_path, "hangup_in_ivr", "balance")
    facts, _ = await facts_of(path, config, queue)
    served = [f for f in facts if isinstance(f, SelfServed)]
    assert [(f.number, f.reason) for f in served] == [("+74951234563", "balance")]
    assert not [f for f in facts if isinstance(f, MissedCall)]


async def test_replayed_self_service_leaves_no_callback_and_counts_the_reason(
    tmp_path, config, redis_client
) -> None:
    path = with_skip(tmp_path, "hangup_in_ivr", "balance")
    rows = await replay_capture(config, path, redis_client, keep=True, key_prefix="kept-ss")
    try:
        assert rows == []
        sync = redis.Redis.from_url(config.redis.url)
        stats = {}
        for key in sync.scan_iter(match="{kept-ss}:stats:*"):
            stats = {k.decode(): int(v) for k, v in sync.hgetall(key).items()}
        assert stats["selfservice:total"] == 1
        assert stats["selfservice:reason:balance"] == 1
        assert "missed:total" not in stats
    finally:
        sync = redis.Redis.from_url(config.redis.url)
        for key in sync.scan_iter(match="{kept-ss}:*"):
            sync.delete(key)


async def test_an_empty_skip_variable_is_no_mark(tmp_path, config, queue) -> None:
    path = with_skip(tmp_path, "hangup_in_ivr", "")
    facts, _ = await facts_of(path, config, queue)
    assert [f.source for f in facts if isinstance(f, MissedCall)] == [Source.IVR_HANGUP]
    assert not [f for f in facts if isinstance(f, SelfServed)]


async def test_pressing_the_callback_key_outweighs_a_self_service_mark(
    tmp_path, config, queue
) -> None:
    path = with_skip(tmp_path, "keypress_callback", "balance")
    facts, _ = await facts_of(path, config, queue)
    assert [f.source for f in facts if isinstance(f, MissedCall)] == [Source.EXPLICIT]
    assert not [f for f in facts if isinstance(f, SelfServed)]


async def test_a_context_rule_marks_the_calls_seen_there(make_config, queue) -> None:
    config = make_config(
        detection={"self_service": [{"context": "ivr-*", "exten": "s", "reason": "menu"}]}
    )
    facts, _ = await facts_of(FIXTURES / "hangup_in_ivr.jsonl", config, queue)
    assert [(f.reason, f.category) for f in facts if isinstance(f, SelfServed)] == [
        ("menu", "other")
    ]
    assert not [f for f in facts if isinstance(f, MissedCall)]


async def test_a_rule_mark_is_forgotten_when_the_caller_joins_a_queue(make_config, queue) -> None:
    config = make_config(detection={"self_service": [{"context": "ivr-in", "reason": "menu"}]})
    facts, _ = await facts_of(FIXTURES / "abandon_in_queue.jsonl", config, queue)
    assert [f.source for f in facts if isinstance(f, MissedCall)] == [Source.ABANDON]
    assert not [f for f in facts if isinstance(f, SelfServed)]


def test_a_garbled_reason_still_skips_under_the_default_name() -> None:
    assert skip_reason("Balance ") == "balance"
    assert skip_reason('"pay by card"') == "self_service"
    assert skip_reason("x" * 40) == "self_service"


def test_a_self_served_fact_survives_the_spool() -> None:
    fact = SelfServed("1.5", "+74951234563", "support", "balance", 10.0, 20.0)
    assert _from_json(_to_json(fact)) == fact


async def test_the_same_call_reported_twice_counts_once(queue, clock) -> None:
    sink = QueueSink(queue)
    fact = SelfServed("1.5", "+74951234563", "support", "balance", clock.now(), clock.now())
    assert await sink._apply(fact) == "counted"
    assert await sink._apply(fact) == "duplicate"
    stats = await queue.day_stats(queue.hours.day_key(clock.now()))
    assert stats["selfservice:reason:balance"] == 1
    assert stats["selfservice:cat:support"] == 1


async def test_the_daily_report_lists_self_service_calls_and_totals_them(
    make_config, redis_client, clock, tmp_path
) -> None:
    config = make_config(reports={"folder": str(tmp_path)})
    queue = CallbackQueue(redis_client, config, clock)
    day = queue.hours.day_key(clock.now())
    for i in range(3):
        await queue.add_self_served(
            call_id=f"ss-{i}",
            number="+74951234563",
            category="support",
            reason="balance",
            ended_at=clock.now(),
        )
    await queue.add_missed(
        number="+79161234567",
        category="support",
        source=Source.ABANDON,
        missed_at=clock.now(),
        call_id="m-1",
    )
    report = reports.collect(config, day, redis.Redis.from_url(config.redis.url))
    fates = sorted((r["fate"], r["reason"]) for r in report.missed)
    assert fates == [("self_service", "balance")] * 3 + [("waiting", "")]
    total = next(r for r in report.categories if r["category"] == "total")
    assert (total["self_service"], total["missed_calls"], total["callbacks"]) == (3, 1, 1)
    support = next(r for r in report.categories if r["category"] == "support")
    assert support["self_service"] == 3
    assert sum(r["missed_calls"] for r in report.hours if r["hour"] != "total") == 1
