"""Webhooks end to end: queue events -> bridge -> Redis outbox -> real rq worker -> receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time

import pytest
import redis

from callback_dialer.jobs.admin import JobsAdmin
from callback_dialer.jobs.bridge import JobsBridge
from callback_dialer.jobs.common import display_url, receiver_id
from callback_dialer.jobs.webhooks import verify_signature
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Attempt, Source, Stage
from callback_dialer.queue.store import CallbackQueue

from .test_jobs_support import Receiver, hand_over_all, purge_rq, run_worker

A, B, C = "+79161234567", "+79031234564", "+74951234563"
SECRET = "s3cret-for-tests"


@pytest.fixture(autouse=True)
def _rq_cleanup(redis_url, key_prefix):
    yield
    purge_rq(redis_url, key_prefix)


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


def jobs_config(make_config, *hooks, **sections):
    return make_config(
        webhooks=list(hooks),
        reports={"enabled": False},
        jobs=sections.pop("jobs", {"max_tries": 3, "retry_delays": ["1s"]}),
        **sections,
    )


async def life_of_a_callback(queue: CallbackQueue, number: str, call: str) -> str:
    """created, merged, claimed (dialing), stage, done: the usual story."""
    now = queue.clock.now()
    first = await queue.add_missed(
        number=number,
        category="support",
        source=Source.ABANDON,
        missed_at=now - 60,
        call_id=f"{call}-1",
        name="Ivan",
    )
    await queue.add_missed(
        number=number,
        category="support",
        source=Source.EXPLICIT,
        missed_at=now - 30,
        call_id=f"{call}-2",
    )
    claim = await queue.claim(["support"], claimer="d", agent="PJSIP/101")
    await queue.renew(claim, stage=Stage.RINGING_CUSTOMER, agent="PJSIP/101")
    await queue.complete(
        claim, Attempt(at=now, agent="PJSIP/101", outcome="answered", talk_seconds=60)
    )
    return first.id


async def test_a_webhook_arrives_signed_and_the_receiver_can_verify_it(
    make_config,
    redis_client,
    clock,
    receiver,
) -> None:
    config = jobs_config(make_config, {"url": receiver.url(), "secret": SECRET})
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    result = await queue.add_missed(
        number=A,
        category="support",
        source=Source.ABANDON,
        missed_at=clock.now(),
        call_id="c1",
        name="Ivan",
    )
    assert await hand_over_all(bridge) == 1
    await run_worker(config)
    await bridge.close()

    [got] = receiver.requests
    header = got.headers["X-Callback-Dialer-Signature"]
    # Checked the way a receiver in another language would, from the documented recipe.
    t = int(header.split(",")[0].removeprefix("t="))
    v1 = header.split(",")[1].removeprefix("v1=")
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + got.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(v1, expected)
    assert abs(time.time() - t) < 60
    assert verify_signature(SECRET, header, got.body)
    assert not verify_signature(SECRET, header, got.body.replace(b"Ivan", b"Eve"))
    assert not verify_signature("wrong", header, got.body)
    assert not verify_signature(SECRET, header, got.body, now=t + 301)

    doc = got.json()
    assert (doc["event"], doc["callback_id"], doc["number"], doc["state"]) == (
        "created",
        result.id,
        A,
        "pending",
    )
    assert doc["callback"]["name"] == "Ivan"
    assert got.headers["X-Callback-Dialer-Event"] == "created"
    assert got.headers["X-Callback-Dialer-Delivery"] == doc["id"]
    assert got.headers["Content-Type"].startswith("application/json")


async def test_queue_events_map_to_webhook_names(
    make_config, redis_client, clock, receiver
) -> None:
    config = jobs_config(make_config, {"url": receiver.url()})
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    await life_of_a_callback(queue, A, "a")
    b = await queue.add_missed(
        number=B, category="billing", source=Source.ABANDON, missed_at=clock.now(), call_id="b1"
    )
    await queue.resolve_number(B, "served_inbound")
    c = await queue.add_missed(
        number=C, category="billing", source=Source.ABANDON, missed_at=clock.now(), call_id="c1"
    )
    await queue.set_category(c.id, "support", actor="olga")  # not a webhook
    await queue.cancel(c.id, "wrong number", actor="olga")
    await hand_over_all(bridge)
    await run_worker(config)
    await bridge.close()
    names = [(r.json()["callback_id"], r.json()["event"]) for r in receiver.requests]
    a = names[0][0]
    assert names == [
        (a, "created"),
        (a, "merged"),
        (a, "dialing"),
        (a, "done"),
        (b.id, "created"),
        (b.id, "served_inbound"),
        (c.id, "created"),
        (c.id, "cancelled"),
    ]
    done = receiver.requests[3].json()
    assert (done["state"], done["reason"], done["detail"]["attempt"]["outcome"]) == (
        "done",
        "called_back",
        "answered",
    )


async def test_each_url_gets_only_the_events_it_asked_for(
    make_config, redis_client, clock, receiver
) -> None:
    config = jobs_config(
        make_config,
        {"url": receiver.url("/crm"), "events": ["done", "failed"]},
        {"url": receiver.url("/all")},
    )
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    await life_of_a_callback(queue, A, "a")
    await hand_over_all(bridge)
    await run_worker(config)
    await bridge.close()
    assert [r.json()["event"] for r in receiver.on("/crm")] == ["done"]
    assert [r.json()["event"] for r in receiver.on("/all")] == [
        "created",
        "merged",
        "dialing",
        "done",
    ]


async def test_a_receiver_down_then_up_gets_every_event_in_order(
    make_config,
    redis_client,
    clock,
    receiver,
) -> None:
    config = jobs_config(make_config, {"url": receiver.url(), "timeout": "2s"})
    await receiver.stop()  # the CRM is down; its port stays reserved for it
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    first = await life_of_a_callback(queue, A, "a")
    await hand_over_all(bridge)
    await run_worker(config)  # refused: the delivery job waits for its retry
    assert receiver.requests == []
    admin = JobsAdmin(config)
    [state] = admin.receivers()
    assert (state.waiting, state.delivering) == (4, True)
    assert admin.counts().scheduled == 1

    # Events keep coming while the receiver is down; they queue up behind the others.
    second = await life_of_a_callback(queue, B, "b")
    await hand_over_all(bridge)
    await receiver.start()
    await asyncio.sleep(1.1)  # retry_delays = 1s
    await run_worker(config)
    await bridge.close()

    got = [(r.json()["callback_id"], r.json()["event"]) for r in receiver.requests]
    story = ["created", "merged", "dialing", "done"]
    assert got == [(first, e) for e in story] + [(second, e) for e in story]
    ids = [r.json()["id"] for r in receiver.requests]
    assert ids == sorted(ids, key=lambda i: tuple(int(x) for x in i.split("-")))
    assert admin.receivers()[0].waiting == 0
    assert admin.counts().failed == 0
    admin.close()


async def test_a_refused_event_is_parked_not_blocking_the_rest_and_can_be_rerun(
    make_config,
    redis_client,
    clock,
    receiver,
) -> None:
    refuse = {"merged"}
    receiver.respond = lambda r: 422 if r.json()["event"] in refuse else 200
    config = jobs_config(make_config, {"url": receiver.url()})
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    cb = await life_of_a_callback(queue, A, "a")
    await hand_over_all(bridge)
    await run_worker(config)
    taken = [r.json()["event"] for r in receiver.requests if r.json()["event"] not in refuse]
    assert taken == ["created", "dialing", "done"]

    admin = JobsAdmin(config)
    [parked] = admin.parked_events()
    assert (parked.event, parked.callback_id, parked.status) == ("merged", cb, 422)
    assert "422" in parked.error
    refuse.clear()  # the CRM fixed its side
    receiver.requests.clear()
    assert admin.rerun_parked() == 1
    await run_worker(config)
    await bridge.close()
    assert [r.json()["event"] for r in receiver.requests] == ["merged"]
    assert admin.parked_events() == []
    admin.close()


async def test_a_delivery_out_of_tries_is_listed_as_failed_and_a_rerun_delivers(
    make_config,
    redis_client,
    clock,
    receiver,
) -> None:
    receiver.status = 503
    config = jobs_config(
        make_config, {"url": receiver.url()}, jobs={"max_tries": 1, "retry_delays": ["1s"]}
    )
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    await queue.add_missed(
        number=A, category="support", source=Source.ABANDON, missed_at=clock.now(), call_id="c1"
    )
    await hand_over_all(bridge)
    await run_worker(config)
    admin = JobsAdmin(config)
    [failed] = admin.failed_jobs()
    assert failed.description == f"deliver webhooks to {receiver.url()}"
    assert "DeliveryFailed" in failed.error and "503" in failed.error
    assert admin.counts().failed == 1 and admin.receivers()[0].waiting == 1

    receiver.status = 200
    receiver.requests.clear()
    assert admin.rerun_failed(failed.id) is True
    assert admin.rerun_failed(failed.id) is False  # not failed any more
    await run_worker(config)
    await bridge.close()
    assert [r.json()["event"] for r in receiver.requests] == ["created"]
    assert admin.failed_jobs() == [] and admin.receivers()[0].waiting == 0
    admin.close()


async def test_after_delivery_gave_up_the_next_event_starts_it_again(
    make_config,
    redis_client,
    clock,
    receiver,
) -> None:
    receiver.status = 503
    config = jobs_config(
        make_config, {"url": receiver.url()}, jobs={"max_tries": 1, "retry_delays": ["1s"]}
    )
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    await queue.add_missed(
        number=A, category="support", source=Source.ABANDON, missed_at=clock.now(), call_id="a1"
    )
    await hand_over_all(bridge)
    await run_worker(config)  # out of tries: failed, the event still waits
    receiver.status = 200
    await queue.add_missed(
        number=B, category="support", source=Source.ABANDON, missed_at=clock.now(), call_id="b1"
    )
    await hand_over_all(bridge)
    await run_worker(config)
    await bridge.close()
    got = [(r.json()["number"], r.json()["event"]) for r in receiver.requests]
    assert got == [(A, "created"), (A, "created"), (B, "created")]  # A's first try got 503


async def test_outbox_lives_under_the_prefix_keyed_by_url(
    make_config, redis_client, clock, receiver, redis_url
) -> None:
    config = jobs_config(make_config, {"url": receiver.url()})
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    await bridge.prime()
    await queue.add_missed(
        number=A, category="support", source=Source.ABANDON, missed_at=clock.now(), call_id="c1"
    )
    await hand_over_all(bridge)
    await bridge.close()
    sync = redis.Redis.from_url(redis_url)
    outbox = Keys(config.redis.key_prefix).webhook_outbox(receiver_id(receiver.url()))
    assert sync.llen(outbox) == 1
    sync.close()


def test_urls_shown_in_logs_and_on_the_page_hide_passwords_and_tokens() -> None:
    assert display_url("https://bot:pa55@crm.example:8443/hook?token=abc&debug") == (
        "https://***@crm.example:8443/hook?token=***&debug"
    )
    assert display_url("http://127.0.0.1:8080/hook") == "http://127.0.0.1:8080/hook"
