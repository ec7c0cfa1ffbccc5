"""The callback queue, on a real Redis."""

from __future__ import annotations

import asyncio
import binascii

import pytest
import redis.asyncio as aioredis

from callback_dialer.clock import ManualClock
from callback_dialer.queue.models import (
    Attempt,
    Claim,
    DispatchControl,
    QueueChange,
    Source,
    Stage,
    State,
)
from callback_dialer.queue.store import CallbackQueue, QueueInputError, QueueUnavailable

A = "+79161234567"
B = "+79031234564"
C = "+74951234563"


async def missed(
    queue: CallbackQueue,
    number: str,
    category: str,
    ago: float,
    source: Source = Source.ABANDON,
    call_id: str = "",
) -> str:
    result = await queue.add_missed(
        number=number,
        category=category,
        source=source,
        missed_at=queue.clock.now() - ago,
        call_id=call_id or f"call-{number}-{ago}",
    )
    return result.id


# ---------------------------------------------------------------- merging


async def test_repeat_call_merges_into_the_open_callback(queue: CallbackQueue) -> None:
    now = queue.clock.now()
    first = await queue.add_missed(
        number=A,
        category="support",
        source=Source.ABANDON,
        missed_at=now - 60,
        call_id="c1",
        name="Ivan",
    )
    second = await queue.add_missed(
        number=A,
        category="new_connection",
        source=Source.IVR_HANGUP,
        missed_at=now - 600,
        call_id="c2",
    )
    third = await queue.add_missed(
        number=A, category="billing", source=Source.EXPLICIT, missed_at=now - 10, call_id="c3"
    )
    assert (first.result, second.result, third.result) == ("created", "merged", "merged")
    assert first.id == second.id == third.id
    cb = await queue.get(first.id)
    assert cb is not None
    assert cb.missed_count == 3
    assert cb.first_missed == pytest.approx(now - 600)  # the earliest
    assert cb.last_missed == pytest.approx(now - 10)
    assert cb.category == "new_connection"  # the most urgent
    assert cb.source == Source.EXPLICIT  # the caller asked explicitly the third time
    assert cb.name == "Ivan"
    counts = await queue.counts()
    assert sum(sum(v.values()) for v in counts.values()) == 1


async def test_the_same_call_reported_twice_counts_once(queue: CallbackQueue) -> None:
    now = queue.clock.now()
    a = await queue.add_missed(
        number=A, category="support", source=Source.ABANDON, missed_at=now, call_id="1795345802.1"
    )
    b = await queue.add_missed(
        number=A, category="support", source=Source.ABANDON, missed_at=now, call_id="1795345802.1"
    )
    assert (a.result, b.result) == ("created", "duplicate")
    cb = await queue.get(a.id)
    assert cb is not None and cb.missed_count == 1


async def test_a_number_gets_a_new_callback_once_the_old_one_is_finished(
    queue: CallbackQueue,
) -> None:
    first = await missed(queue, A, "support", 100)
    await queue.cancel(first, "customer asked", actor="boss")
    second = await missed(queue, A, "support", 10)
    assert second != first
    assert (await queue.get(second)).state == State.PENDING


async def test_merging_into_a_retry_wait_makes_it_ready_at_once(queue: CallbackQueue) -> None:
    cb_id = await missed(queue, A, "support", 100)
    claim = await queue.claim(["support"], claimer="d")
    await queue.retry(claim, Attempt(at=queue.clock.now(), agent="PJSIP/101", outcome="busy"))
    assert (await queue.get(cb_id)).state == State.SCHEDULED
    await missed(queue, A, "support", 1)
    cb = await queue.get(cb_id)
    assert cb.state == State.PENDING and cb.attempts == 1 and cb.missed_count == 2


# ---------------------------------------------------------------- order


async def test_new_subscriber_goes_before_an_older_support_call(queue: CallbackQueue) -> None:
    # weight(new_connection) = 30 min: a support call that waited 10 min longer still waits.
    support = await missed(queue, A, "support", 20 * 60)
    new = await missed(queue, B, "new_connection", 10 * 60)
    order = [c.id for c in await queue.waiting()]
    assert order == [new, support]
    claim = await queue.claim(["support", "new_connection"], claimer="d")
    assert claim.callback.id == new


async def test_aging_a_support_call_that_waited_longer_than_the_weight_goes_first(
    queue: CallbackQueue,
) -> None:
    support = await missed(queue, A, "support", 45 * 60)
    new = await missed(queue, B, "new_connection", 10 * 60)
    assert [c.id for c in await queue.waiting()] == [support, new]
    claim = await queue.claim(["support", "new_connection"], claimer="d")
    assert claim.callback.id == support


async def test_a_very_large_weight_is_strict_priority(make_config, redis_client, clock) -> None:
    config = make_config(
        categories=[
            {"name": "new_connection", "weight": "3650d"},
            {"name": "support"},
            {"name": "billing"},
            {"name": "other"},
        ]
    )
    queue = CallbackQueue(redis_client, config, clock)
    old_support = await missed(queue, A, "support", 5 * 86400)
    new = await missed(queue, B, "new_connection", 1)
    assert [c.id for c in await queue.waiting()] == [new, old_support]


async def test_a_claimer_only_gets_categories_it_serves(queue: CallbackQueue) -> None:
    new = await missed(queue, B, "new_connection", 10)
    assert await queue.claim(["support", "billing", "other"], claimer="d") is None
    claim = await queue.claim(["new_connection"], claimer="d")
    assert claim.callback.id == new


async def test_claim_skips_excluded_numbers_and_full_trunks(
    make_config, redis_client, clock
) -> None:
    config = make_config(
        dispatch={
            "trunks": [
                {"name": "mobile", "numbers": ["+79*"]},
                {"name": "city", "numbers": ["*"]},
            ]
        }
    )
    queue = CallbackQueue(redis_client, config, clock)
    mobile = await missed(queue, A, "support", 300)
    city = await missed(queue, C, "support", 200)
    assert (await queue.get(mobile)).trunk == "mobile"
    assert (await queue.get(city)).trunk == "city"
    claim = await queue.claim(["support"], claimer="d", trunks=["city"])
    assert claim.callback.id == city
    await queue.release(claim, "test")
    claim = await queue.claim(["support"], claimer="d", exclude_numbers=[A])
    assert claim.callback.id == city


# ---------------------------------------------------------------- scheduling


async def test_a_retry_waits_its_delay_then_becomes_ready(
    queue: CallbackQueue, clock: ManualClock
) -> None:
    cb_id = await missed(queue, A, "support", 60)
    claim = await queue.claim(["support"], claimer="d")
    after = await queue.retry(
        claim, Attempt(at=clock.now(), agent="PJSIP/101", outcome="no_answer")
    )
    assert after.state == State.SCHEDULED
    assert after.next_at == pytest.approx(clock.now() + 300)  # retry.delays[0]
    assert await queue.claim(["support"], claimer="d") is None
    await clock.advance(299)
    assert await queue.claim(["support"], claimer="d") is None
    await clock.advance(2)
    claim = await queue.claim(["support"], claimer="d")
    assert claim is not None and claim.callback.id == cb_id and claim.callback.attempts == 1


async def test_outside_calling_hours_a_missed_call_waits_for_the_next_opening(
    make_config,
    redis_client,
) -> None:
    config = make_config(
        hours={
            "timezone": "Europe/Moscow",
            "weekly": {"mon": ["09:00-21:00"], "tue": ["09:00-21:00"]},
        }
    )
    # Monday 2026-11-23 22:30 Moscow (19:30 UTC): closed until Tuesday 09:00 (06:00 UTC).
    clock = ManualClock(start=1795462200.0)
    queue = CallbackQueue(redis_client, config, clock)
    cb_id = await missed(queue, A, "support", 60)
    cb = await queue.get(cb_id)
    assert cb.state == State.SCHEDULED
    assert cb.next_at == pytest.approx(1795500000.0)
    assert await queue.claim(["support"], claimer="d") is None
    await clock.advance(1795500000.0 - clock.now() + 1)
    assert (await queue.claim(["support"], claimer="d")).callback.id == cb_id


async def test_the_last_failed_attempt_fails_the_callback_with_its_reason(
    queue: CallbackQueue,
    clock: ManualClock,
) -> None:
    cb_id = await missed(queue, A, "support", 60)
    for outcome in ("busy", "no_answer", "congestion"):
        claim = await queue.claim(["support"], claimer="d")
        assert claim is not None, outcome
        await queue.retry(claim, Attempt(at=clock.now(), agent="PJSIP/101", outcome=outcome))
        await clock.advance(3601)
    cb = await queue.get(cb_id)
    assert (cb.state, cb.reason, cb.attempts) == (State.FAILED, "congestion", 3)
    assert [a.outcome for a in cb.attempt_log] == ["busy", "no_answer", "congestion"]
    assert await queue.open_for(A) is None


async def test_a_release_uses_no_customer_attempt(queue: CallbackQueue, clock) -> None:
    cb_id = await missed(queue, A, "support", 60)
    claim = await queue.claim(["support"], claimer="d")
    back = await queue.release(
        claim,
        "agent_no_answer",
        attempt=Attempt(
            at=clock.now(), agent="PJSIP/109", outcome="agent_no_answer", counted=False
        ),
    )
    assert (back.state, back.attempts, back.reason) == (State.PENDING, 0, "agent_no_answer")
    assert (await queue.claim(["support"], claimer="d")).callback.id == cb_id


async def test_callbacks_older_than_expire_after_fail_as_expired(
    queue: CallbackQueue, clock
) -> None:
    old = await missed(queue, A, "support", 86400 + 60)
    young = await missed(queue, B, "support", 60)
    result = await queue.housekeeping()
    assert result["expired"] == 1
    assert ((await queue.get(old)).state, (await queue.get(old)).reason) == (
        State.FAILED,
        "expired",
    )
    assert (await queue.get(young)).state == State.PENDING


# ---------------------------------------------------------------- leases


async def test_an_expired_lease_returns_the_callback_and_locks_out_the_old_holder(
    queue: CallbackQueue,
    clock: ManualClock,
) -> None:
    cb_id = await missed(queue, A, "support", 60)
    dead = await queue.claim(["support"], claimer="dialer-1")
    assert await queue.claim(["support"], claimer="dialer-2") is None
    await clock.advance(queue.config.queue.lease_seconds + 1)
    alive = await queue.claim(["support"], claimer="dialer-2")
    assert alive is not None and alive.callback.id == cb_id
    # The first dialer wakes up: its claim is worthless now.
    assert await queue.renew(dead) is False
    assert (
        await queue.complete(dead, Attempt(at=clock.now(), agent="x", outcome="answered")) is None
    )
    events = [h.event for h in await queue.history(cb_id)]
    assert events == ["created", "claimed", "lease_expired", "claimed"]


async def test_a_lease_that_runs_out_on_a_placed_call_waits_its_retry_and_keeps_its_claim(
    queue: CallbackQueue,
    clock: ManualClock,
) -> None:
    # A dialer died after the Originate (the stage is noted just before it): the customer may
    # have been reached, so no redial before the retry delay, and "outcome unknown" says why.
    cb_id = await missed(queue, A, "support", 60)
    dead = await queue.claim(["support"], claimer="dialer-1", agent="a1")
    assert await queue.renew(dead, stage=Stage.RINGING_AGENT, agent="a1")
    await clock.advance(queue.config.queue.lease_seconds + 1)
    await queue.housekeeping()
    cb = await queue.get(cb_id)
    assert (cb.state, cb.reason) == (State.SCHEDULED, "outcome_unknown")
    assert cb.next_at == pytest.approx(clock.now() + queue.config.retry.delay_after(1))
    assert [(a.outcome, a.counted) for a in cb.attempt_log] == [("outcome_unknown", False)]
    assert await queue.claim(["support"], claimer="dialer-2") is None  # not yet due
    # The call's fate record, read late, settles that claim (and only that one).
    talked = Attempt(at=clock.now(), agent="a1", outcome="answered", talk_seconds=40)
    other = Claim(callback=cb, token="not-the-claim")
    assert await queue.complete(other, talked, recorded=True) is None
    assert await queue.complete(dead, talked) is None  # a live settle needs the lease
    done = await queue.complete(dead, talked, recorded=True)
    assert done is not None and done.state is State.DONE


async def test_renewing_keeps_a_long_call_claimed(queue: CallbackQueue, clock) -> None:
    await missed(queue, A, "support", 60)
    claim = await queue.claim(["support"], claimer="d")
    for _ in range(5):
        await clock.advance(queue.config.queue.lease_seconds * 0.6)
        assert await queue.renew(claim, stage=Stage.TALKING, agent="PJSIP/101")
    assert await queue.claim(["support"], claimer="other") is None
    cb = await queue.get(claim.callback.id)
    assert (cb.state, cb.stage, cb.agent) == (State.DIALING, "talking", "PJSIP/101")


async def test_concurrent_claimers_never_share_a_callback(
    queue: CallbackQueue, redis_url, config, clock
) -> None:
    numbers = [f"+7916{n:07d}" for n in range(300)]
    for i, number in enumerate(numbers):
        await missed(queue, number, ("support", "new_connection", "billing")[i % 3], i)
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(12)]
    try:
        queues = [CallbackQueue(c, config, clock) for c in clients]

        async def worker(q: CallbackQueue, name: str) -> list[str]:
            got = []
            while (
                claim := await q.claim(["support", "new_connection", "billing"], claimer=name)
            ) is not None:
                got.append(claim.callback.id)
            return got

        results = await asyncio.gather(*(worker(q, f"w{i}") for i, q in enumerate(queues)))
    finally:
        for c in clients:
            await c.aclose()
    claimed = [cb for r in results for cb in r]
    assert len(claimed) == 300
    assert len(set(claimed)) == 300
    assert sum(1 for r in results if r) > 1  # several claimers really competed
    counts = await queue.counts()
    assert sum(counts["dialing"].values()) == 300 and not counts["pending"]


# ---------------------------------------------------------------- resolving


@pytest.mark.parametrize("state", ["pending", "scheduled", "dialing"])
async def test_a_number_that_got_through_closes_its_callback_in_any_open_state(
    queue: CallbackQueue,
    clock: ManualClock,
    state: str,
) -> None:
    cb_id = await missed(queue, A, "support", 60)
    claim = None
    if state in ("scheduled", "dialing"):
        claim = await queue.claim(["support"], claimer="d")
    if state == "scheduled":
        await queue.retry(claim, Attempt(at=clock.now(), agent="a", outcome="busy"))
    assert (await queue.get(cb_id)).state == State(state)
    result = await queue.resolve_number(A, "served_inbound")
    assert result.closed and result.id == cb_id and result.previous_state == state
    cb = await queue.get(cb_id)
    assert (cb.state, cb.reason) == (State.DONE, "served_inbound")
    if claim is not None and state == "dialing":
        # The dispatcher holding it can no longer dial or settle it.
        assert await queue.renew(claim) is False
    assert await queue.claim(["support"], claimer="d") is None
    assert (await queue.resolve_number(A)).closed is False


async def test_one_call_told_twice_as_served_closes_at_most_once(
    queue: CallbackQueue, clock: ManualClock
) -> None:
    # Live, then from the call's AstDB record (or the record read again after a crash):
    # the second telling must not close the callback of a later missed call.
    await missed(queue, A, "support", 60)
    assert (await queue.resolve_number(A, call_id="c1", at=clock.now())).closed
    again = await missed(queue, A, "support", 10)
    assert not (await queue.resolve_number(A, call_id="c1", at=clock.now())).closed
    assert (await queue.get(again)).state is State.PENDING


async def test_a_caller_served_before_their_last_missed_call_is_still_owed_one(
    queue: CallbackQueue, clock: ManualClock
) -> None:
    # Records are applied after the fact: got through at t-30, missed again at t-10.
    cb_id = await missed(queue, A, "support", 10)
    result = await queue.resolve_number(A, call_id="c2", at=clock.now() - 30)
    assert not result.closed
    assert (await queue.get(cb_id)).state is State.PENDING
    assert (await queue.resolve_number(A, call_id="c3", at=clock.now())).closed


# ---------------------------------------------------------------- history


async def test_history_records_every_change_with_who_and_why(
    queue: CallbackQueue, clock: ManualClock
) -> None:
    cb_id = await missed(queue, A, "support", 60)
    await missed(queue, A, "billing", 30)
    await queue.set_category(cb_id, "new_connection", actor="olga")
    claim = await queue.claim(["new_connection"], claimer="d1", agent="PJSIP/101")
    await queue.renew(claim, stage=Stage.RINGING_CUSTOMER, agent="PJSIP/101")
    await queue.retry(claim, Attempt(at=clock.now(), agent="PJSIP/101", outcome="busy"))
    await clock.advance(301)
    claim = await queue.claim(["new_connection"], claimer="d1")
    await queue.complete(
        claim, Attempt(at=clock.now(), agent="PJSIP/102", outcome="answered", talk_seconds=95)
    )
    history = await queue.history(cb_id)
    assert [(h.event, h.state, h.reason, h.actor) for h in history] == [
        ("created", "pending", "abandon", "system"),
        ("merged", "pending", "abandon", "system"),
        ("category_changed", "pending", "", "olga"),
        ("claimed", "dialing", "", "system"),
        ("stage", "dialing", "ringing_customer", "system"),
        ("retry", "scheduled", "busy", "dispatcher"),
        ("due", "pending", "due", "system"),
        ("claimed", "dialing", "", "system"),
        ("done", "done", "called_back", "dispatcher"),
    ]
    assert history[2].detail == {"from": "support", "to": "new_connection"}
    assert all(h.at >= history[0].at for h in history)


# ---------------------------------------------------------------- supervisor actions


async def test_call_now_puts_a_callback_at_the_head(queue: CallbackQueue) -> None:
    first = await missed(queue, A, "new_connection", 600)
    last = await missed(queue, B, "support", 10)
    result = await queue.call_now(last, actor="olga")
    assert result.ok
    assert [c.id for c in await queue.waiting()] == [last, first]


async def test_cancel_needs_a_reason_and_records_it(queue: CallbackQueue) -> None:
    cb_id = await missed(queue, A, "support", 60)
    with pytest.raises(QueueInputError, match="reason"):
        await queue.cancel(cb_id, "  ", actor="olga")
    assert (await queue.get(cb_id)).state == State.PENDING
    result = await queue.cancel(cb_id, "wrong number", actor="olga")
    assert result.ok and result.callback.state == State.CANCELLED
    last = (await queue.history(cb_id))[-1]
    assert (last.event, last.reason, last.actor) == ("cancelled", "wrong number", "olga")
    again = await queue.cancel(cb_id, "twice", actor="olga")
    assert (again.ok, again.result) == (False, "not_open")
    assert (await queue.cancel("cb-999999", "x", actor="olga")).result == "not_found"


async def test_change_category_moves_it_in_the_order(queue: CallbackQueue) -> None:
    support = await missed(queue, A, "support", 20 * 60)
    billing = await missed(queue, B, "billing", 10 * 60)
    assert [c.id for c in await queue.waiting()] == [support, billing]
    await queue.set_category(billing, "new_connection", actor="olga")
    assert [c.id for c in await queue.waiting()] == [billing, support]
    with pytest.raises(QueueInputError, match="unknown category 'vip'"):
        await queue.set_category(billing, "vip", actor="olga")
    counts = await queue.counts()
    assert counts["pending"] == {"support": 1, "new_connection": 1}


async def test_a_callback_added_by_hand(queue: CallbackQueue) -> None:
    result = await queue.add_manual(A, "billing", actor="olga", name="Ivan", note="asked by mail")
    cb = await queue.get(result.id)
    assert (cb.source, cb.category, cb.name, cb.note) == (
        Source.MANUAL,
        "billing",
        "Ivan",
        "asked by mail",
    )
    assert (await queue.history(result.id))[0].actor == "olga"
    with pytest.raises(QueueInputError, match=r"E\.164"):
        await queue.add_manual("8 916 123", "billing", actor="olga")


async def test_counts_by_state_and_category(queue: CallbackQueue, clock) -> None:
    await missed(queue, A, "support", 60)
    await missed(queue, B, "new_connection", 60)
    await missed(queue, C, "new_connection", 30)
    claim = await queue.claim(["new_connection"], claimer="d")
    await queue.complete(
        claim, Attempt(at=clock.now(), agent="a", outcome="answered", talk_seconds=60)
    )
    counts = await queue.counts()
    assert counts["pending"] == {"support": 1, "new_connection": 1}
    assert counts["done"] == {"new_connection": 1}
    assert counts["dialing"] == {}


# ---------------------------------------------------------------- storage


async def test_finished_callbacks_expire_after_the_retention(
    queue: CallbackQueue, redis_client
) -> None:
    cb_id = await missed(queue, A, "support", 60)
    open_ttl = await redis_client.ttl(queue.keys.callback(cb_id))
    assert open_ttl == -1  # open callbacks never expire
    await queue.cancel(cb_id, "test", actor="t")
    ttl = await redis_client.ttl(queue.keys.callback(cb_id))
    keep = queue.config.queue.keep_finished_days * 86400
    assert keep - 10 <= ttl <= keep
    assert keep - 10 <= await redis_client.ttl(queue.keys.history(cb_id)) <= keep


def _slot(key: bytes) -> int:
    start = key.find(b"{")
    if start != -1:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    return binascii.crc_hqx(key, 0) % 16384


async def test_every_key_is_under_the_prefix_in_one_cluster_slot(
    queue: CallbackQueue, redis_client, clock
) -> None:
    await missed(queue, A, "support", 60)
    await missed(queue, B, "new_connection", 60)
    claim = await queue.claim(["support"], claimer="d")
    await queue.retry(claim, Attempt(at=clock.now(), agent="a", outcome="busy"))
    await queue.resolve_number(B)
    keys = [k async for k in redis_client.scan_iter(match=queue.keys.pattern())]
    assert len(keys) >= 10
    assert {_slot(k) for k in keys} == {_slot(queue.keys.open().encode())}
    assert all(k.startswith(f"{{{queue.keys.prefix}}}:".encode()) for k in keys)


async def test_redis_outage_raises_a_clear_error(config, clock) -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    queue = CallbackQueue(dead, config, clock)
    with pytest.raises(QueueUnavailable, match="Redis unreachable"):
        await queue.add_missed(
            number=A, category="support", source=Source.ABANDON, missed_at=clock.now()
        )
    assert await queue.ping() is False
    await dead.aclose()


async def test_day_statistics_count_every_missed_call(queue: CallbackQueue, clock) -> None:
    await missed(queue, A, "support", 60, source=Source.ABANDON)
    await missed(queue, A, "support", 30, source=Source.EXPLICIT)
    await missed(queue, B, "new_connection", 30, source=Source.IVR_HANGUP)
    day = queue.hours.day_key(clock.now())
    stats = await queue.day_stats(day)
    assert stats["missed:total"] == 3
    assert stats["missed:cat:support"] == 2 and stats["missed:cat:new_connection"] == 1
    assert stats["missed:src:explicit"] == 1
    claim = await queue.claim(["new_connection"], claimer="d")
    await clock.advance(40)
    await queue.renew(claim, stage=Stage.RINGING_CUSTOMER, agent="a")
    assert await queue.time_to_callback(day) == [pytest.approx(70)]


# ---------------------------------------------------------------- dispatch control


async def test_the_dispatch_switch_is_saved_and_read_back_with_its_time(
    queue: CallbackQueue, clock: ManualClock
) -> None:
    assert await queue.load_control() is None  # never saved: the config decides
    await queue.save_control(
        DispatchControl(paused=True, by="system", reason="originate_failures", alarm="3 failed")
    )
    assert await queue.load_control() == DispatchControl(
        paused=True,
        by="system",
        reason="originate_failures",
        alarm="3 failed",
        at=pytest.approx(clock.now(), abs=0.001),
    )
    await clock.advance(60)
    await queue.save_control(DispatchControl(paused=False, by="olga"))
    assert await queue.load_control() == DispatchControl(
        paused=False, by="olga", at=pytest.approx(clock.now(), abs=0.001)
    )


async def test_the_next_due_time_counts_only_callbacks_due_later(
    queue: CallbackQueue, clock: ManualClock
) -> None:
    assert await queue.next_due_after(clock.now()) is None
    for number, delay in ((A, 120.0), (B, 30.0)):
        await missed(queue, number, "support", 60)
        claim = await queue.claim(["support"], claimer="d")
        await queue.release(claim, "test", not_before=clock.now() + delay)
    now = clock.now()
    assert await queue.next_due_after(now) == pytest.approx(now + 30, abs=0.001)
    # Once the first is due (not yet promoted), the next one later is what counts.
    assert await queue.next_due_after(now + 30) == pytest.approx(now + 120, abs=0.001)
    assert await queue.next_due_after(now + 120) is None


async def test_the_dispatch_switch_in_a_redis_outage_raises_a_clear_error(config, clock) -> None:
    dead = aioredis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.5)
    queue = CallbackQueue(dead, config, clock)
    with pytest.raises(QueueUnavailable, match="Redis unreachable"):
        await queue.load_control()
    with pytest.raises(QueueUnavailable, match="Redis unreachable"):
        await queue.save_control(DispatchControl(paused=True, by="olga"))
    with pytest.raises(QueueUnavailable, match="Redis unreachable"):
        await queue.next_due_after(clock.now())
    await dead.aclose()


# ---------------------------------------------------------------- listeners


@pytest.fixture
def changes(queue: CallbackQueue) -> list[QueueChange]:
    told: list[QueueChange] = []
    queue.on_change(told.append)
    return told


async def test_every_write_that_may_make_a_callback_ready_tells_the_listeners(
    queue: CallbackQueue, clock: ManualClock, changes: list[QueueChange]
) -> None:
    a = await missed(queue, A, "support", 60, call_id="c1")
    await missed(queue, A, "support", 30, call_id="c2")  # merged
    await missed(queue, A, "support", 30, call_id="c2")  # the same call again: nothing new
    await queue.set_category(a, "billing", actor="olga")
    manual = await queue.add_manual(B, "support", actor="olga")
    claim = await queue.claim(["support"], claimer="d")
    assert claim is not None and claim.callback.id == manual.id
    await queue.release(claim, "agent_busy")
    assert changes == [
        QueueChange(a, "created", State.PENDING),
        QueueChange(a, "merged", State.PENDING),
        QueueChange(a, "category_changed", State.PENDING),
        QueueChange(manual.id, "created", State.PENDING),
        QueueChange(manual.id, "released", State.PENDING, previous_state=State.DIALING),
    ]
    assert all(c.ready and not c.closed for c in changes)


async def test_a_callback_due_later_tells_when_and_call_now_makes_it_ready(
    queue: CallbackQueue, clock: ManualClock, changes: list[QueueChange]
) -> None:
    a = await missed(queue, A, "support", 60)
    claim = await queue.claim(["support"], claimer="d")
    await queue.retry(claim, Attempt(at=clock.now(), agent="PJSIP/101", outcome="busy"))
    await queue.call_now(a, actor="olga")
    await queue.schedule(a, clock.now() + 600, actor="olga")
    due = clock.now() + 300  # retry.delays[0]
    assert changes[1:] == [
        QueueChange(a, "retry", State.SCHEDULED, previous_state=State.DIALING, due_at=due),
        QueueChange(a, "call_now", State.PENDING),
        QueueChange(a, "scheduled", State.SCHEDULED, due_at=clock.now() + 600),
    ]
    assert [c.ready for c in changes[1:]] == [False, True, False]


async def test_a_missed_call_outside_calling_hours_tells_its_opening(
    make_config, redis_client
) -> None:
    config = make_config(hours={"timezone": "Europe/Moscow", "weekly": {"tue": ["09:00-21:00"]}})
    clock = ManualClock(start=1795462200.0)  # Monday 22:30 Moscow: open Tuesday 09:00
    queue = CallbackQueue(redis_client, config, clock)
    told: list[QueueChange] = []
    queue.on_change(told.append)
    a = await missed(queue, A, "support", 60)
    assert told == [QueueChange(a, "created", State.SCHEDULED, due_at=1795500000.0)]


async def test_closing_a_callback_tells_the_listeners_what_it_was(
    queue: CallbackQueue, clock: ManualClock, changes: list[QueueChange]
) -> None:
    served = await missed(queue, A, "support", 60)
    cancelled = await missed(queue, B, "new_connection", 60)
    done = await missed(queue, C, "billing", 60)
    dialling = await queue.claim(["support"], claimer="d")
    assert dialling is not None and dialling.callback.id == served
    await queue.resolve_number(A, "served_inbound")
    await queue.cancel(cancelled, "wrong number", actor="olga")
    talked = await queue.claim(["billing"], claimer="d")
    await queue.complete(talked, Attempt(at=clock.now(), agent="PJSIP/101", outcome="answered"))
    assert changes[3:] == [
        QueueChange(served, "served_inbound", State.DONE, previous_state=State.DIALING),
        QueueChange(cancelled, "cancelled", State.CANCELLED, previous_state=State.PENDING),
        QueueChange(done, "done", State.DONE, previous_state=State.DIALING),
    ]
    assert all(c.closed for c in changes[3:])


async def test_writes_that_change_nothing_tell_nobody(
    queue: CallbackQueue, clock: ManualClock, changes: list[QueueChange]
) -> None:
    a = await missed(queue, A, "support", 60)
    stale = await queue.claim(["support"], claimer="d")
    await queue.cancel(a, "asked by email", actor="olga")
    del changes[:]
    assert (await queue.call_now(a, actor="olga")).result == "not_open"
    assert (await queue.call_now("cb-999", actor="olga")).result == "not_found"
    assert await queue.release(stale, "agent_busy") is None  # the claim is worthless now
    assert not (await queue.resolve_number(A)).closed
    assert changes == []


async def test_a_failing_listener_neither_loses_the_write_nor_silences_the_others(
    queue: CallbackQueue,
) -> None:
    def broken(change: QueueChange) -> None:
        raise RuntimeError("listener bug")

    told: list[QueueChange] = []
    stop = queue.on_change(broken)  # first in line
    queue.on_change(told.append)
    a = await missed(queue, A, "support", 60)
    assert (await queue.get(a)).state == State.PENDING
    assert [c.id for c in told] == [a]
    stop()
    await queue.call_now(a, actor="olga")
    assert [c.event for c in told] == ["created", "call_now"]


async def test_the_estimates_light_read_agrees_with_the_whole_records(queue: CallbackQueue) -> None:
    """waiting_index reads only the indexes (and two fields of a scheduled callback): it must
    give the estimate what the whole records would, ready and scheduled alike."""
    await missed(queue, A, "support", 300)
    await missed(queue, B, "new_connection", 100)
    await missed(queue, C, "support", 50)
    claim = await queue.claim(["support"], claimer="test")
    await queue.release(claim, "test", not_before=queue.clock.now() + 600)
    whole = {
        (cb.id, cb.category, cb.score, cb.next_at if cb.state is State.SCHEDULED else None)
        for cb in await queue.waiting(limit=1000)
    }
    light = {(e.id, e.category, e.score, e.due_at) for e in await queue.waiting_index()}
    assert light == whole
    assert sum(1 for *_, due in light if due is not None) == 1  # the one put off
