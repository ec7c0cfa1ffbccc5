"""Redis high availability on Redis's own engines, with real processes on loopback.

Sentinel: a master, one replica and three sentinels (tests/helpers/redis_ha.py). The dialer
side, the rq side and the whole dialer reach the master through redis-py's Sentinel client
(``[redis] sentinels``, ``service_name``); the master is killed with SIGKILL during traffic and
the sentinels promote the replica. With ``wait_replicas = 1`` no acknowledged write is lost
and none is doubled (what that means precisely: tests/helpers/failover_traffic.py).

Cluster: three masters. Every key of ours is in one hash slot, so the queue's scripts run on
the one node that holds it: the whole dialer works against the cluster (``[redis] cluster``).
rq does not, and is refused with a clear message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
import redis
from rq import Queue, SimpleWorker
from simpbx.ami import PbxAmi
from simpbx.clock import run_for
from simpbx.customers import PerNumber
from simpbx.ledger import Ledger, number_key
from simpbx.model import CallerScript, CustomerResponse, FixedAgent, PbxSpec
from simpbx.pbx import SimPbx

from callback_dialer.ami.asterisk import DialStatus
from callback_dialer.app import build_dialer
from callback_dialer.clock import RealClock, ScaledClock
from callback_dialer.jobs.admin import JobsAdmin
from callback_dialer.jobs.common import connect, rq_queue
from callback_dialer.jobs.worker import run_worker
from callback_dialer.queue.connect import ClusterNotSupported, async_client, close_async_client
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.lease import Fence, LeaderLease
from callback_dialer.queue.models import State
from callback_dialer.queue.store import CallbackQueue

from .helpers.failover_traffic import run_traffic
from .helpers.redis_ha import SERVICE, ClusterSet, FailoverDrill, SentinelSet
from .helpers.wait import until


class _Answers:
    def respond(self, number: str, now: float) -> CustomerResponse:
        return CustomerResponse(DialStatus.ANSWER, ring=2, talk=15)


ONE_AGENT_CALLS_BACK = {
    # Support callers find no agent (102 and 103 are on a break) and give up; 101, in sales
    # only, calls them back one after the other.
    "queues": {"sales": ["new_connection", "support", "billing", "other"], "support": []},
    "wrapup_seconds": 5,
}


def one_agent_pbx(clock) -> tuple[SimPbx, Ledger]:
    agents = tuple(dataclasses.replace(a, behaviour=FixedAgent(talk=12)) for a in PbxSpec().agents)
    pbx = SimPbx(clock, PbxSpec(agents=agents), customers=PerNumber({}, rest=_Answers()))
    for ext in ("102", "103"):
        pbx.scheduler.run(pbx.pause, ext, True, "break")
    ledger = Ledger()
    pbx.observers.append(ledger)
    return pbx, ledger


async def all_called_back_once(ledger: Ledger, numbers: list[str], timeout: float = 90) -> None:
    """Every caller missed, and each was called back once, answered (customers all answer)."""
    deadline = time.monotonic() + timeout
    wanted = {number_key(n) for n in numbers}
    while True:
        subs = {s.number: s for s in ledger.subscribers()}
        if set(subs) >= wanted and all(subs[n].served_by == "callback" for n in wanted):
            break
        assert time.monotonic() < deadline, [(s.number, s.served_by) for s in subs.values()]
        await asyncio.sleep(0.2)
    assert ledger.callbacks_to_served() == () and ledger.concurrent_calls() == ()
    for sub in ledger.subscribers():
        assert [cb.status for cb in sub.callbacks] == ["ANSWER"], sub


@pytest.fixture
def sentinel_set(tmp_path):
    made = SentinelSet(tmp_path).start()
    yield made
    made.stop()


def sentinel_config(make_config, sentinels: SentinelSet, **redis_section):
    return make_config(
        redis={
            "url": "redis://127.0.0.1/0",  # host and port unused: the sentinels say
            "sentinels": sentinels.sentinels,
            "service_name": SERVICE,
            "socket_timeout": 1,
            **redis_section,
        },
        queue={"lease_seconds": 1},  # a claim whose answer was lost comes back soon
    )


async def test_a_master_killed_during_traffic_loses_and_doubles_nothing_with_wait(
    sentinel_set, make_config
) -> None:
    config = sentinel_config(make_config, sentinel_set, wait_replicas=1, wait_timeout="200ms")
    client = async_client(config)
    holding: list[Fence] = []
    failover = FailoverDrill(sentinel_set)
    try:
        queue = CallbackQueue(client, config, RealClock(), fence=lambda: holding[0])
        state = await LeaderLease(client, config).tick("ha", None, 600)
        holding.append(Fence("ha", state.token))
        account = await run_traffic(queue, calls=400, kill_after=150, kill=failover.kill)
        lost, doubled = await account.check(queue)
        finished = await queue.finished_between(0, float("inf"), limit=1000)
    finally:
        await close_async_client(client)
        failover.join()
    assert failover.new_master not in (None, failover.old_master)
    assert account.retries > 0  # the failover was felt
    assert (lost, doubled) == ([], [])
    # Everyone was called back, once. (An outcome whose answer was lost with the master is
    # tried again and finds its callback already done: stored once, acknowledged never.)
    assert sorted(cb.state for cb in finished) == [State.DONE] * 400
    print(
        f"\nfailover with WAIT: queue unavailable {account.unavailable_for:.2f} s, "
        f"{account.retries} retried writes, lost {len(lost)}, doubled {len(doubled)}"
    )


async def test_the_whole_dialer_rides_a_sentinel_failover(sentinel_set, make_config, tmp_path):
    # A real dialer against the simulated PBX, its queue on the Sentinel's master: callers
    # abandon before and after the master is killed; each is called back once.
    config = sentinel_config(make_config, sentinel_set, wait_replicas=1)
    clock = ScaledClock(20.0)
    pbx, ledger = one_agent_pbx(clock)
    ami = await PbxAmi.serve(pbx, secret="s3cret")
    config = config.model_copy(
        update={
            "ami": config.ami.model_copy(
                update={"port": ami.port, "secret": "s3cret", "reconnect_min_delay": 0.05}
            ),
            "dispatch": config.dispatch.model_copy(update=ONE_AGENT_CALLS_BACK),
            "leader": config.leader.model_copy(update={"lease": 3, "renew_every": 1}),
        }
    )
    dialer = build_dialer(config, clock=clock, spool=tmp_path / "spool.jsonl")
    await dialer.start()
    try:
        await until(lambda: dialer.ami.authenticated and dialer.leadership.may_act())
        numbers = [f"+7916777{n:04d}" for n in range(12)]
        for i, number in enumerate(numbers):
            if i == 6:  # callbacks under way, more callers giving up: the master dies
                old = sentinel_set.kill_master()
                await asyncio.to_thread(sentinel_set.wait_failover, old)
                await asyncio.to_thread(sentinel_set.restart_as_replica, old)
            pbx.place_call(number, CallerScript(choice="2", patience=4))
            await run_for(clock, 6)
        await all_called_back_once(ledger, numbers)
        await run_for(clock, 30)  # time for a doubled call to show up, if there were one
        await all_called_back_once(ledger, numbers, timeout=0)
        done = await dialer.queue.finished_between(0, float("inf"))
        assert sorted(cb.number for cb in done if cb.state is State.DONE) == sorted(numbers)
    finally:
        await dialer.stop()
        await ami.stop()
        await pbx.close()


def test_the_side_jobs_reach_the_master_through_sentinel_before_and_after_a_failover(
    sentinel_set, make_config
) -> None:
    config = sentinel_config(make_config, sentinel_set, wait_replicas=1)
    conn = connect(config, socket_timeout=1)
    try:
        queue = rq_queue(config, conn)
        queue.enqueue("builtins.print", "before")
        old = sentinel_set.kill_master()
        new = sentinel_set.wait_failover(old)
        deadline = time.monotonic() + 10
        while True:  # the first commands after a failover may still meet the dead master
            try:
                queue.enqueue("builtins.print", "after")
                break
            except (redis.ConnectionError, redis.TimeoutError):
                assert time.monotonic() < deadline
                time.sleep(0.1)
        assert conn.connection_pool.get_master_address() == ("127.0.0.1", new)
        # Both jobs are there: the replica had the first before it was promoted.
        assert JobsAdmin(config, conn).counts().queued == 2
    finally:
        conn.close()


# ---------------------------------------------------------------------- Cluster


@pytest.fixture
def cluster(tmp_path):
    made = ClusterSet(tmp_path).start()
    yield made
    made.stop()


async def test_the_whole_dialer_works_on_a_three_master_cluster(cluster, make_config, tmp_path):
    config = make_config(redis={"url": cluster.url, "cluster": True, "socket_timeout": 2})
    # Our keys all land in the slot of "{prefix}", on one of the three masters.
    slot = redis.cluster.key_slot(Keys(config.redis.key_prefix).open().encode())
    assert slot == redis.cluster.key_slot(Keys(config.redis.key_prefix).leader().encode())
    clock = ScaledClock(20.0)
    pbx, ledger = one_agent_pbx(clock)
    ami = await PbxAmi.serve(pbx, secret="s3cret")
    config = config.model_copy(
        update={
            "ami": config.ami.model_copy(update={"port": ami.port, "secret": "s3cret"}),
            "dispatch": config.dispatch.model_copy(update=ONE_AGENT_CALLS_BACK),
        }
    )
    dialer = build_dialer(config, clock=clock, spool=tmp_path / "spool.jsonl", web=False)
    await dialer.start()
    try:
        await until(lambda: dialer.ami.authenticated and dialer.leadership.may_act())
        numbers = [f"+7916888{n:04d}" for n in range(6)]
        for number in numbers:
            pbx.place_call(number, CallerScript(choice="2", patience=4))
        await all_called_back_once(ledger, numbers)
        done = await dialer.queue.finished_between(0, float("inf"))
        assert sorted(cb.number for cb in done if cb.state is State.DONE) == sorted(numbers)
        # The page's reads work there too: the status the web layer gets.
        assert (await dialer.status.counts())["done"] == {"support": 6}
        assert dialer.status.dispatch_state().leader == dialer.leadership.instance
        # Every key the dialer wrote is in that one slot.
        nodes = [redis.Redis(port=p) for p in cluster.ports]
        keys = [
            k for n in nodes for k in n.scan_iter(match=Keys(config.redis.key_prefix).pattern())
        ]
        assert keys and {redis.cluster.key_slot(k) for k in keys} == {slot}
        for n in nodes:
            n.close()
    finally:
        await dialer.stop()
        await ami.stop()
        await pbx.close()


def test_rq_cannot_use_the_cluster_and_the_side_jobs_say_so(cluster, make_config) -> None:
    config = make_config(redis={"url": cluster.url, "cluster": True})
    with pytest.raises(ClusterNotSupported, match="cannot use a Redis Cluster"):
        connect(config)
    assert run_worker(config, burst=True) == 1  # `callback-dialer worker` says so and exits
    # Why, on this cluster: rq's worker cannot run on a cluster client at all, and the
    # bridge's exactly-once hand-off is one MULTI/EXEC over our cursor key and rq's keys,
    # which a cluster refuses when they are in different slots (they are).
    client = redis.cluster.RedisCluster.from_url(cluster.url)
    try:
        queue = Queue(Keys(config.redis.key_prefix).rq_queue_name("jobs"), connection=client)
        with pytest.raises(Exception):  # noqa: B017 - whatever rq raises, it cannot work
            SimpleWorker([queue], connection=client).work(burst=True)
        handoff = client.pipeline(transaction=True)
        handoff.set(Keys(config.redis.key_prefix).jobs_cursor(), "0-0")
        handoff.rpush(queue.key, "job-id")
        with pytest.raises(redis.exceptions.CrossSlotTransactionError):
            handoff.execute()
    finally:
        client.close()
