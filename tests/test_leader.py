"""The leader lease and its fencing token, against the real Redis: one holder at a time, a
token that only grows, claims/renewals/outcomes refused on a stale holding, a holder that
stops acting by its own clock before anyone else may start, a standby taking over just after
the lease runs out, and two instances detecting one missed call making one callback."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from callback_dialer.dispatch.leadership import Leadership
from callback_dialer.queue.lease import Fence, LeaderLease
from callback_dialer.queue.models import Adoption, Attempt, Source, Stage, State
from callback_dialer.queue.store import CallbackQueue, NotLeader

A = "+79161234567"


async def missed(queue: CallbackQueue, number: str = A, call_id: str = "c1") -> str:
    result = await queue.add_missed(
        number=number,
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now() - 60,
        call_id=call_id,
    )
    return result.id


def attempt(queue: CallbackQueue) -> Attempt:
    return Attempt(at=queue.clock.now(), agent="PJSIP/101", outcome="answered", counted=True)


@pytest.fixture
def lease(redis_client, config) -> LeaderLease:
    return LeaderLease(redis_client, config)


async def test_one_holder_at_a_time_and_the_token_only_grows(lease, redis_client) -> None:
    first = await lease.tick("a", None, 30)
    assert (first.result, first.holder, first.token) == ("acquired", "a", 1)
    other = await lease.tick("b", None, 30)
    assert (other.result, other.holder, other.token) == ("held", "a", 1)
    assert 29 < other.seconds <= 30  # how long until b may try again
    renewed = await lease.tick("a", Fence("a", 1), 30)
    assert (renewed.result, renewed.token) == ("renewed", 1)
    # A holding that is not the current one renews nothing, even with the right name.
    assert (await lease.tick("a", Fence("a", 7), 30)).result == "held"
    assert (await lease.release(Fence("b", 1))).result == "not_holder"
    assert (await lease.release(Fence("a", 1))).result == "released"
    taken = await lease.tick("b", None, 30)
    assert (taken.result, taken.holder, taken.token) == ("acquired", "b", 2)
    # Released and taken again: the token went on from 2, never back to 1.
    await lease.release(Fence("b", 2))
    assert (await lease.tick("a", None, 30)).token == 3
    # The key never expires: a lapse of the whole fleet cannot restart the count.
    assert await redis_client.ttl(lease.keys.leader()) == -1


async def test_a_run_out_lease_is_taken_over_with_a_new_token(lease) -> None:
    assert (await lease.tick("a", None, 0.15)).token == 1
    assert (await lease.tick("b", None, 0.15)).result == "held"
    await asyncio.sleep(0.2)
    taken = await lease.tick("b", None, 5)
    assert (taken.result, taken.holder, taken.token) == ("acquired", "b", 2)
    # The old holder's next renewal learns it lost: the holder and token it is told are b's.
    late = await lease.tick("a", Fence("a", 1), 5)
    assert (late.result, late.holder, late.token) == ("held", "b", 2)


async def test_a_replaced_holder_can_claim_renew_or_settle_nothing(
    redis_client, config, clock, lease
) -> None:
    holding: dict[str, Fence | None] = {"a": None, "b": None}
    qa = CallbackQueue(redis_client, config, clock, fence=lambda: holding["a"])
    qb = CallbackQueue(redis_client, config, clock, fence=lambda: holding["b"])
    first, second = await missed(qa, A, "c1"), await missed(qa, "+79031234564", "c2")
    holding["a"] = Fence("a", (await lease.tick("a", None, 0.15)).token)
    claim = await qa.claim(["support"], claimer="a")
    assert claim is not None and claim.callback.id == first
    # b cannot act while a holds the lease.
    with pytest.raises(NotLeader):
        await qb.claim(["support"], claimer="b")
    await asyncio.sleep(0.2)
    holding["b"] = Fence("b", (await lease.tick("b", None, 30)).token)
    before = await qa.get(first)
    # a was frozen through all this and still believes it leads: Redis says no to each step.
    with pytest.raises(NotLeader):
        await qa.renew(claim)
    with pytest.raises(NotLeader):
        await qa.complete(claim, attempt(qa))
    with pytest.raises(NotLeader):
        await qa.claim(["support"], claimer="a")
    assert await qa.get(first) == before  # nothing changed by the stale holder
    assert (await qa.get(second)).state is State.PENDING
    # b leads: it claims what is ready (a's claim stays a's until adopted or run out).
    assert (await qb.claim(["support"], claimer="b")).callback.id == second


async def test_a_holder_that_ran_out_takes_no_new_work_but_records_what_it_has(
    redis_client, config, clock, lease
) -> None:
    # Redis was away longer than the lease and nobody else took over: no new claim on the
    # run-out holding, but the outcome of the call it made is still its own to store.
    holding = Fence("a", (await lease.tick("a", None, 0.2)).token)
    queue = CallbackQueue(redis_client, config, clock, fence=lambda: holding)
    first = await missed(queue, A, "c1")
    await missed(queue, "+79031234564", "c2")
    claim = await queue.claim(["support"], claimer="a")
    await asyncio.sleep(0.25)
    with pytest.raises(NotLeader):
        await queue.claim(["support"], claimer="a")
    assert await queue.renew(claim)
    done = await queue.complete(claim, attempt(queue))
    assert done is not None and done.id == first and done.state is State.DONE
    # Renewing the same holding after the lapse keeps its token: nobody else held one.
    assert (await lease.tick("a", holding, 5)).result == "renewed"
    assert (await queue.claim(["support"], claimer="a")) is not None


async def test_without_a_holding_nothing_is_claimed_once_a_leader_exists(
    redis_client, config, clock, lease
) -> None:
    queue = CallbackQueue(redis_client, config, clock)  # carries no holding at all
    await missed(queue)
    await lease.tick("a", None, 30)
    with pytest.raises(NotLeader):
        await queue.claim(["support"], claimer="rogue")


class Monotonic:
    """The leadership's own clock, moved by hand: a frozen process is time passing unseen."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_leader_stops_acting_by_its_own_clock_before_its_lease_ends(lease, make_config):
    config = make_config(leader={"lease": 6, "renew_every": 2})
    clock = Monotonic()
    heard: list[tuple[bool, bool]] = []
    leadership = Leadership(
        config, lease, on_change=lambda g, s: heard.append((g, s)), monotonic=clock
    )
    await leadership.tick()
    assert leadership.may_act() and heard == [(True, False)]
    # Frozen: no renewal ran. The lease is 6 s counted from when the renewal was sent, less
    # the margin (0.6 s): at 5.3 s it still acts, at 5.5 s it does not, with nobody telling it.
    clock.now += 5.3
    assert leadership.may_act()
    clock.now += 0.2
    assert not leadership.may_act()
    assert leadership.fence() == Fence(leadership.instance, 1)  # still its holding to record


async def test_a_standby_takes_over_just_after_the_lease_runs_out(lease, make_config) -> None:
    config = make_config(leader={"lease": 1, "renew_every": 0.25})
    changes: dict[str, list[tuple[bool, bool]]] = {"a": [], "b": []}
    a = Leadership(
        config.model_copy(update={"leader": config.leader.model_copy(update={"instance": "a"})}),
        lease,
        on_change=lambda g, s: changes["a"].append((g, s)),
    )
    b = Leadership(
        config.model_copy(update={"leader": config.leader.model_copy(update={"instance": "b"})}),
        lease,
        on_change=lambda g, s: changes["b"].append((g, s)),
    )
    await a.tick()
    runs = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    await asyncio.sleep(1.5)  # several renewals: a keeps it, b stands by
    assert a.may_act() and not b.may_act() and b.leader == "a"
    runs[0].cancel()  # a dies without a word (no release)
    died = time.monotonic()
    while not b.may_act():
        assert time.monotonic() - died < 3, "no takeover"
        await asyncio.sleep(0.005)
    took = time.monotonic() - died
    assert took <= 1.0 + 0.15  # within the lease (plus the standby's wake-up slack)
    assert b.token == 2 and changes["b"] == [(True, False)]
    runs[1].cancel()
    await asyncio.gather(*runs, return_exceptions=True)


async def test_two_instances_detecting_one_missed_call_make_one_callback(
    redis_url, config, clock
) -> None:
    # Every instance detects every missed call; the call id makes the second report a no-op,
    # even when both arrive at the same moment.
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        queues = [CallbackQueue(c, config, clock) for c in clients]
        calls = [(f"+7916{n:07d}", f"1795345800.{n}") for n in range(200)]

        async def detect(queue: CallbackQueue) -> list[str]:
            out = []
            for number, call_id in calls:
                result = await queue.add_missed(
                    number=number,
                    category="support",
                    source=Source.ABANDON,
                    missed_at=clock.now() - 30,
                    call_id=call_id,
                )
                out.append(result.result)
            return out

        results = await asyncio.gather(*(detect(q) for q in queues))
        waiting = await queues[0].waiting(500)
    finally:
        for c in clients:
            await c.aclose()
    assert sorted(results[0] + results[1]) == ["created"] * 200 + ["duplicate"] * 200
    assert sorted(cb.number for cb in waiting) == sorted(n for n, _ in calls)
    assert all(cb.missed_count == 1 for cb in waiting)


async def test_adopting_a_dead_leaders_calls_takes_their_claims_under_the_new_token(
    redis_client, config, clock, lease
) -> None:
    holding: dict[str, Fence | None] = {"a": None, "b": None}
    qa = CallbackQueue(redis_client, config, clock, fence=lambda: holding["a"])
    qb = CallbackQueue(redis_client, config, clock, fence=lambda: holding["b"])
    talking, expired = await missed(qa, A, "c1"), await missed(qa, "+79031234564", "c2")
    done = await missed(qa, "+79261234567", "c3")
    holding["a"] = Fence("a", (await lease.tick("a", None, 0.15)).token)
    old = [await qa.claim(["support"], claimer="a", agent=f"PJSIP/10{i}") for i in (1, 2, 3)]
    assert [c.callback.id for c in old] == [talking, expired, done]
    await qa.complete(old[2], attempt(qa))
    # c2's claim ran out while its call went on (housekeeping offered it again).
    await redis_client.zadd(qa.keys.leases(), {expired: 0})
    await qa.housekeeping()
    assert (await qa.get(expired)).state is State.PENDING
    await asyncio.sleep(0.2)
    holding["b"] = Fence("b", (await lease.tick("b", None, 30)).token)
    wanted = [
        Adoption(talking, "t-new-1", agent="PJSIP/101", stage="talking", stage_at=100.0),
        Adoption(expired, "t-new-2", agent="PJSIP/102", stage="ringing_customer"),
        Adoption(done, "t-new-3", agent="PJSIP/103", stage="talking"),
        Adoption("cb-999", "t-new-4"),
    ]
    # The dead leader's holding adopts nothing; the new leader's takes them all at once.
    with pytest.raises(NotLeader):
        await qa.adopt(wanted, claimer="a")
    results = {r.callback_id: r for r in await qb.adopt(wanted, claimer="b")}
    assert {k: r.result for k, r in results.items()} == {
        talking: "adopted",
        expired: "reclaimed",
        done: "closed",
        "cb-999": "gone",
    }
    taken = await qb.get(talking)
    assert (taken.state, taken.claimed_by, taken.stage, taken.stage_at) == (
        State.DIALING,
        "b",
        "talking",
        100.0,
    )
    assert (await qb.get(expired)).state is State.DIALING
    # The new claim settles; the old one is dead twice over (stale fence, stale token).
    assert await qb.complete(results[talking].claim, attempt(qb)) is not None
    with pytest.raises(NotLeader):
        await qa.retry(old[0], attempt(qa))
    assert (await qb.get(talking)).state is State.DONE
    assert [e.event for e in await qb.history(talking)][-2:] == ["adopted", "done"]


async def test_a_placed_call_whose_claim_lapsed_as_outcome_unknown_is_taken_back_while_up(
    redis_client, config, clock, lease
) -> None:
    # The restart took longer than the claim's lease: housekeeping scheduled it as "outcome
    # unknown" for the retry delay, but its call is still up in Asterisk. Adopting it takes
    # it back (nobody dials it at the retry), and its one outcome replaces the unknown.
    holding: dict[str, Fence | None] = {"a": None, "b": None}
    qa = CallbackQueue(redis_client, config, clock, fence=lambda: holding["a"])
    qb = CallbackQueue(redis_client, config, clock, fence=lambda: holding["b"])
    cb = await missed(qa)
    holding["a"] = Fence("a", (await lease.tick("a", None, 0.15)).token)
    old = await qa.claim(["support"], claimer="a", agent="PJSIP/101")
    await qa.renew(old, stage=Stage.TALKING, agent="PJSIP/101")
    await redis_client.zadd(qa.keys.leases(), {cb: 0})
    await qa.housekeeping()
    lapsed = await qa.get(cb)
    assert (lapsed.state, lapsed.reason) == (State.SCHEDULED, "outcome_unknown")
    assert [a.outcome for a in lapsed.attempt_log] == ["outcome_unknown"]
    await asyncio.sleep(0.2)
    holding["b"] = Fence("b", (await lease.tick("b", None, 30)).token)
    wanted = [Adoption(cb, "t-new", agent="PJSIP/101", stage="talking")]
    assert [r.result for r in await qb.adopt(wanted, claimer="b", reclaim=False)] == ["closed"]
    (taken,) = await qb.adopt(wanted, claimer="b")
    assert taken.result == "reclaimed" and taken.claim.callback.attempt_log == ()
    done = await qb.complete(taken.claim, attempt(qb))
    assert (done.state, [a.outcome for a in done.attempt_log]) == (State.DONE, ["answered"])
