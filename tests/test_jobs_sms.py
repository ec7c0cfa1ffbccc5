"""SMS through a real HTTP gateway stand-in: template, limits, hours, blocklist."""

from __future__ import annotations

import asyncio

import pytest
import redis

from callback_dialer.jobs import sms
from callback_dialer.jobs.admin import JobsAdmin
from callback_dialer.jobs.bridge import JobsBridge
from callback_dialer.jobs.common import rq_queue
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Attempt, Source, Stage
from callback_dialer.queue.store import CallbackQueue

from .test_jobs_support import Receiver, hand_over_all, purge_rq, run_worker

A, B = "+79161234567", "+79031234564"
HOSTILE_NAME = '", "to": "+10000000000", "x": "{number} {text_json} =cmd|calc'
TEXT = "Мы пропустили ваш звонок & перезвоним через {minutes} мин."


@pytest.fixture(autouse=True)
def _rq_cleanup(redis_url, key_prefix):
    yield
    purge_rq(redis_url, key_prefix)


@pytest.fixture
async def gateway():
    r = await Receiver().start()
    yield r
    await r.stop()


def sms_config(make_config, gateway, **sections):
    sms_section = {
        "enabled": True,
        "url": gateway.url("/send") + "?to={number}&msg={text_urlencoded}",
        "headers": {"Authorization": "Bearer gw-token"},
        "body": '{"to": "{digits}", "text": {text_json}, "e164": "{number}"}',
        "missed_text": TEXT,
        "min_interval": "1h",
        **sections.pop("sms", {}),
    }
    return make_config(
        sms=sms_section,
        reports={"enabled": False},
        jobs={"max_tries": 1, "retry_delays": ["1s"]},
        **sections,
    )


async def seven_minutes(callback) -> int:
    return 7


async def missed(queue: CallbackQueue, number: str, call_id: str, **extra) -> str:
    result = await queue.add_missed(
        number=number,
        category="support",
        source=Source.ABANDON,
        missed_at=queue.clock.now(),
        call_id=call_id,
        **extra,
    )
    return result.id


def enqueue_sms_directly(config, **kwargs) -> None:
    """An SMS job as the bridge would queue it, bypassing the bridge's own checks."""
    conn = redis.Redis.from_url(config.redis.url)
    try:
        rq_queue(config, conn).enqueue_call(
            "callback_dialer.jobs.sms.send_sms",
            kwargs=sms.sms_job_kwargs(kind=sms.MISSED, text="hi", token="t1", **kwargs),
        )
    finally:
        conn.close()


def queued_sms(config) -> int:
    conn = redis.Redis.from_url(config.redis.url)
    try:
        return rq_queue(config, conn).count
    finally:
        conn.close()


async def test_the_missed_call_sms_fills_the_gateway_template(
    make_config, redis_client, clock, gateway
) -> None:
    config = sms_config(make_config, gateway)
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock, estimate_minutes=seven_minutes)
    await bridge.prime()
    await missed(queue, A, "c1", name=HOSTILE_NAME)
    await hand_over_all(bridge)
    await run_worker(config)
    await bridge.close()

    [got] = gateway.requests
    text = TEXT.replace("{minutes}", "7")
    assert got.json() == {"to": A[1:], "text": text, "e164": A}
    assert got.query == {"to": A, "msg": text}  # "+" and "&" arrived percent-encoded
    assert got.headers["Authorization"] == "Bearer gw-token"
    assert got.headers["Content-Type"] == "application/json"
    # Nothing of the caller's name reaches the gateway.
    assert b"10000000000" not in got.body and b"cmd" not in got.body


def test_only_an_e164_number_can_fill_a_template(make_config) -> None:
    config = make_config(
        sms={
            "enabled": True,
            "method": "GET",
            "url": "https://gw.example/send?to={number}&text={text}",
        }
    )
    method, url, body, _ = sms.render_request(config.sms, A, 'say "hi" & go')
    assert (method, body) == ("GET", None)
    assert url == "https://gw.example/send?to=%2B79161234567&text=say%20%22hi%22%20%26%20go"
    for bad in ('+7916"}, "x": "1', "79161234567", "+7916123456789012", "{digits}", ""):
        with pytest.raises(ValueError, match=r"not an E\.164 number"):
            sms.render_request(config.sms, bad, "hi")


async def test_a_forged_event_with_a_hostile_number_sends_nothing(
    make_config,
    redis_client,
    clock,
    gateway,
) -> None:
    config = sms_config(make_config, gateway)
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock, estimate_minutes=seven_minutes)
    await bridge.prime()
    # Something else wrote to our events stream; the bridge must not trust its number.
    await redis_client.xadd(
        Keys(config.redis.key_prefix).events(),
        {
            "id": "cb-666",
            "event": "created",
            "state": "pending",
            "reason": "abandon",
            "actor": "system",
            "category": "support",
            "number": '+7916", "to": "+1900',
            "at": f"{clock.now():.3f}",
            "detail": "",
        },
    )
    assert await hand_over_all(bridge) == 1
    assert queued_sms(config) == 0
    # And the job itself refuses such a number if one ever gets that far.
    enqueue_sms_directly(config, callback_id="cb-666", number="+7916; rm -rf /", at=clock.now())
    await run_worker(config)
    await bridge.close()
    assert gateway.requests == []


async def test_one_sms_per_number_per_min_interval(
    make_config, redis_client, clock, gateway
) -> None:
    config = sms_config(make_config, gateway)
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock, estimate_minutes=seven_minutes)
    await bridge.prime()
    for number, call in ((A, "a1"), (A, "a2"), (B, "b1")):  # A's second call merges
        await missed(queue, number, call)
        await hand_over_all(bridge)
    # Two notices for A were due when the bridge looked; the job's SET NX lets one through.
    assert queued_sms(config) == 3
    await run_worker(config)
    assert sorted(r.json()["e164"] for r in gateway.requests) == [B, A]
    ttl = await redis_client.ttl(Keys(config.redis.key_prefix).sms_sent(A))
    assert 3500 < ttl <= 3600

    # Later calls are not even queued while the number is within its interval.
    await missed(queue, A, "a3")
    await hand_over_all(bridge)
    await bridge.close()
    assert queued_sms(config) == 0


async def test_no_sms_outside_calling_hours(make_config, redis_client, clock, gateway) -> None:
    config = sms_config(make_config, gateway, hours={"weekly": {}})  # closed every day
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock, estimate_minutes=seven_minutes)
    await bridge.prime()
    cb = await missed(queue, A, "c1")
    await hand_over_all(bridge)
    assert queued_sms(config) == 0  # the bridge does not even queue it
    # The job checks again when it runs (it may run hours after it was queued).
    enqueue_sms_directly(config, callback_id=cb, number=A, at=clock.now())
    output = await run_worker(config)
    await bridge.close()
    assert gateway.requests == []
    assert "outside_calling_hours" in output


async def test_no_sms_to_a_blocked_number(make_config, redis_client, clock, gateway) -> None:
    config = sms_config(make_config, gateway, phone={"blocklist": ["+7916*"]})
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock, estimate_minutes=seven_minutes)
    await bridge.prime()
    cb = await missed(queue, A, "a1")
    await missed(queue, B, "b1")
    await hand_over_all(bridge)
    assert queued_sms(config) == 1  # B only
    enqueue_sms_directly(config, callback_id=cb, number=A, at=clock.now())
    output = await run_worker(config)
    await bridge.close()
    assert [r.json()["e164"] for r in gateway.requests] == [B]
    assert '"reason": "blocked"' in output


async def test_final_failure_notice_and_none_for_a_callback_already_done(
    make_config,
    redis_client,
    clock,
    gateway,
) -> None:
    config = sms_config(
        make_config,
        gateway,
        retry={"max_attempts": 1},
        sms={"notify_final_failure": True, "final_text": "Sorry, no luck.", "min_interval": "1s"},
    )
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock, estimate_minutes=seven_minutes)
    await bridge.prime()
    await missed(queue, A, "a1")
    await hand_over_all(bridge)
    await run_worker(config)
    assert [r.json()["text"] for r in gateway.requests] == [TEXT.replace("{minutes}", "7")]

    await asyncio.sleep(1.1)  # past A's min_interval
    claim = await queue.claim(["support"], claimer="d")
    await queue.retry(claim, Attempt(at=clock.now(), agent="PJSIP/101", outcome="busy"))
    # B is called back before the bridge sees its missed call: no "we will call you" for B.
    await missed(queue, B, "b1")
    claim = await queue.claim(["support"], claimer="d")
    await queue.complete(
        claim, Attempt(at=clock.now(), agent="PJSIP/101", outcome="answered", talk_seconds=30)
    )
    await hand_over_all(bridge)
    await run_worker(config)
    await bridge.close()
    assert [(r.json()["e164"], r.json()["text"]) for r in gateway.requests[1:]] == [
        (A, "Sorry, no luck.")
    ]


async def test_a_gateway_error_leaves_a_failed_job_that_a_rerun_sends(
    make_config,
    redis_client,
    clock,
    gateway,
) -> None:
    gateway.status = 502
    config = sms_config(make_config, gateway)
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock, estimate_minutes=seven_minutes)
    await bridge.prime()
    cb = await missed(queue, A, "a1")
    await hand_over_all(bridge)
    await run_worker(config)
    admin = JobsAdmin(config)
    [failed] = admin.failed_jobs()
    assert failed.description == f"SMS missed notice for {cb}"
    assert "SmsFailed" in failed.error and "502" in failed.error
    gateway.status = 200
    gateway.requests.clear()
    # The failed try already claimed the number's slot; the same message may still use it.
    assert admin.rerun_all_failed() == 1
    await run_worker(config)
    await bridge.close()
    assert [r.json()["e164"] for r in gateway.requests] == [A]
    assert admin.failed_jobs() == []
    admin.close()


def test_estimates_are_round_numbers_of_minutes() -> None:
    assert [sms.round_minutes(m) for m in (0, 1, 5, 5.1, 14, 61)] == [5, 5, 5, 10, 15, 65]


async def test_without_an_estimator_the_queue_gives_one(make_config, redis_client, clock) -> None:
    config = make_config(web={"auth": "none", "target": "5m"})
    queue = CallbackQueue(redis_client, config, clock)
    waiting = await queue.get(await missed(queue, A, "a1"))
    # Nothing called back today yet: the web target is the promise.
    assert await sms.estimate_from_queue(queue, waiting, clock.now()) == 5
    for n, waited in enumerate((600, 1500, 1800)):
        await queue.add_missed(
            number=f"+7903000000{n}",
            category="billing",
            source=Source.ABANDON,
            missed_at=clock.now() - waited,
            call_id=f"x{n}",
        )
        claim = await queue.claim(["billing"], claimer="d")
        await queue.renew(claim, stage=Stage.RINGING_CUSTOMER, agent="PJSIP/101")
    # Today's median time to callback (25 min) once there are three.
    assert await sms.estimate_from_queue(queue, waiting, clock.now()) == 25
    scheduled = await queue.schedule(waiting.id, clock.now() + 3 * 3600, actor="olga")
    assert await sms.estimate_from_queue(queue, scheduled.callback, clock.now()) == 180
