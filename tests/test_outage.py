"""Outage mode on a real Redis: covered missed calls held, never claimed; the outage ended by
dropping or releasing them (capped per hour, in the usual order); declared by the API, the
dialplan's UserEvent; mirrored into AstDB; resumed by another instance after a crash."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import web

from callback_dialer.ami.client import AmiActionFailed
from callback_dialer.ami.frames import AmiMessage
from callback_dialer.clock import ManualClock
from callback_dialer.outage.service import OutageInputError, OutageService, parse_until
from callback_dialer.queue.models import OutageEnd, OutageState, Source, State
from callback_dialer.queue.store import CallbackQueue, QueueInputError

from .helpers.wait import until_async

DISTRICT = "+7495123"
IN_DISTRICT = ["+74951230001", "+74951230002", "+74951230003", "+74951230004"]
ELSEWHERE = "+79161234567"


async def miss(queue: CallbackQueue, number: str, category: str = "support", ago: float = 0):
    return await queue.add_missed(
        number=number,
        category=category,
        source=Source.ABANDON,
        missed_at=queue.clock.now() - ago,
        call_id=f"{number}-{category}-{ago}-{queue.clock.now()}",
    )


async def declare(queue: CallbackQueue, **kw):
    kw.setdefault("outage_id", "o1")
    kw.setdefault("categories", ["support"])
    kw.setdefault("prefixes", [DISTRICT])
    kw.setdefault("message", "Known outage in your district, fix expected by 18:00")
    return await queue.declare_outage(actor="web:boss", **kw)


async def test_covered_calls_are_held_and_never_claimed(queue: CallbackQueue) -> None:
    await declare(queue)
    held = await miss(queue, IN_DISTRICT[0])
    other_area = await miss(queue, ELSEWHERE)
    new_subscriber = await miss(queue, IN_DISTRICT[1], "new_connection")
    states = {r.id: (await queue.get(r.id)).state for r in (held, other_area, new_subscriber)}
    assert states == {
        held.id: State.HELD,
        other_area.id: State.PENDING,
        new_subscriber.id: State.PENDING,
    }
    claimed = []
    while (claim := await queue.claim(["support", "new_connection"], claimer="t")) is not None:
        claimed.append(claim.callback.id)
    assert sorted(claimed) == sorted([other_area.id, new_subscriber.id])
    cb = await queue.get(held.id)
    assert cb.outage == "o1"
    assert [e.event for e in await queue.history(held.id)] == ["held"]
    # Held callbacks are not "waiting for an agent": not the oldest waiting, never expired.
    assert await queue.oldest_waiting_since() is None or held.id not in [
        c.id for c in await queue.waiting()
    ]
    outage = await queue.outage("o1")
    assert (outage.held, outage.waiting) == (1, 1)


async def test_a_held_caller_calling_again_stays_held_once(queue: CallbackQueue, clock) -> None:
    await declare(queue)
    first = await miss(queue, IN_DISTRICT[0])
    await clock.advance(60)
    again = await miss(queue, IN_DISTRICT[0])
    assert (again.result, again.id) == ("merged", first.id)
    cb = await queue.get(first.id)
    assert (cb.state, cb.missed_count) == (State.HELD, 2)
    assert (await queue.outage("o1")).waiting == 1


async def test_a_held_caller_who_gets_through_is_closed(queue: CallbackQueue) -> None:
    await declare(queue)
    held = await miss(queue, IN_DISTRICT[0])
    resolved = await queue.resolve_number(IN_DISTRICT[0], "served_inbound")
    assert resolved.closed and resolved.previous_state == "held"
    assert (await queue.outage("o1")).waiting == 0
    assert (await queue.get(held.id)).state is State.DONE


async def test_declaring_twice_by_id_is_one_outage(queue: CallbackQueue) -> None:
    created, _ = await declare(queue)
    again, outage = await declare(queue, message="other")
    assert (created, again) == (True, False)
    assert outage.message.startswith("Known outage")
    assert len(await queue.outages()) == 1


async def test_a_bad_declaration_is_refused_with_its_reason(queue: CallbackQueue) -> None:
    with pytest.raises(QueueInputError, match="unknown category"):
        await declare(queue, categories=["nope"])
    with pytest.raises(QueueInputError, match="prefix"):
        await declare(queue, prefixes=["495;DROP"])


async def test_ending_with_release_spaces_them_in_the_usual_order(
    queue: CallbackQueue, clock
) -> None:
    await declare(queue)
    ids = []
    for i, number in enumerate(IN_DISTRICT):
        ids.append((await miss(queue, number, ago=600 - i * 100)).id)  # oldest first
    changes = []
    queue.on_change(changes.append)
    result, outage = await queue.end_outage("o1", OutageEnd.RELEASE, per_hour=2, actor="web:boss")
    assert (result, outage.state) == ("ok", OutageState.ENDING)
    # From now on a new call from the district is dialled as usual.
    assert (await queue.get((await miss(queue, "+74951239999")).id)).state is State.PENDING
    assert await queue.settle_outage("o1") == 0
    released = [await queue.get(i) for i in ids]
    assert [cb.state for cb in released] == [State.SCHEDULED] * 4
    now = clock.now()
    assert [round(cb.next_at - now) for cb in released] == [0, 1800, 3600, 5400]
    assert [e.event for e in await queue.history(ids[0])] == ["held", "outage_released"]
    assert {c.event for c in changes if c.id in ids} == {"outage_released"}
    finished = await queue.outage("o1")
    assert (finished.state, finished.released, finished.waiting) == (OutageState.ENDED, 4, 0)
    stats = await queue.day_stats(queue.hours.day_key(now))
    assert (stats["held:total"], stats["outage_released:total"]) == (4, 4)
    # Released, they are claimed in the usual order as they fall due.
    assert (await queue.claim(["support"], claimer="t")).callback.id == ids[0]


async def test_ending_with_drop_cancels_them_for_good(queue: CallbackQueue, clock) -> None:
    await declare(queue)
    ids = [(await miss(queue, n)).id for n in IN_DISTRICT]
    await queue.end_outage("o1", OutageEnd.DROP, actor="web:boss")
    assert await queue.settle_outage("o1", batch=3) == 1  # bounded batches
    assert await queue.settle_outage("o1", batch=3) == 0
    dropped = [await queue.get(i) for i in ids]
    assert {(cb.state, cb.reason) for cb in dropped} == {(State.CANCELLED, "outage_over")}
    assert (await queue.history(ids[0]))[-1].event == "outage_dropped"
    assert (await queue.outage("o1")).dropped == 4
    assert await queue.claim(["support"], claimer="t") is None
    result, _ = await queue.end_outage("o1", OutageEnd.RELEASE, actor="web:boss")
    assert result == "not_active"


async def test_a_dialer_killed_mid_release_is_resumed_without_doubles(
    redis_client, config, clock
) -> None:
    first = CallbackQueue(redis_client, config, clock)
    await declare(first)
    ids = [(await miss(first, n)).id for n in IN_DISTRICT]
    await first.end_outage("o1", OutageEnd.RELEASE, per_hour=60, actor="web:boss")
    assert await first.settle_outage("o1", batch=2) == 2
    # The first dialer is gone; another one (a fresh process: nothing in memory) goes on.
    second = OutageService(config, clock, CallbackQueue(redis_client, config, clock))
    await second.refresh()
    await second.settle()
    callbacks = [await first.get(i) for i in ids]
    assert [cb.state for cb in callbacks] == [State.SCHEDULED] * 4
    now = clock.now()
    assert [round(cb.next_at - now) for cb in callbacks] == [0, 60, 120, 180]
    for i in ids:
        assert [e.event for e in await first.history(i)].count("outage_released") == 1


async def test_the_dialplan_declares_and_ends_by_user_event(queue, config, clock) -> None:
    service = OutageService(config, clock, queue)

    def event(**fields):
        return AmiMessage({"Event": "UserEvent", "UserEvent": "CallbackOutage", **fields})

    declared = event(
        Action="declare",
        Id="noc-7",
        Categories="support|billing",
        Prefixes="7495123",
        Message="Cable cut",
        Until="23:59",
        Channel="PJSIP/noc-1",
    )
    service.on_user_event(declared)
    service.on_user_event(declared)  # a second dialer saw it too: one outage
    await until_async(lambda: queue.outage("noc-7"))
    await asyncio.gather(*service._tasks)
    outage = await queue.outage("noc-7")
    assert (outage.categories, outage.prefixes, outage.message) == (
        ("support", "billing"),
        ("+7495123",),
        "Cable cut",
    )
    assert outage.declared_by == "pbx:PJSIP/noc-1" and outage.expected_end > clock.now()
    assert len(await queue.outages()) == 1
    service.on_user_event(event(Action="end", Id="noc-7", Choice="drop"))
    await asyncio.gather(*service._tasks)
    assert (await queue.outage("noc-7")).end_choice == "drop"


async def test_a_malformed_user_event_is_logged_not_raised(queue, config, clock) -> None:
    service = OutageService(config, clock, queue)
    service.on_user_event(
        AmiMessage({"Event": "UserEvent", "UserEvent": "CallbackOutage", "Until": "soon"})
    )
    await asyncio.gather(*service._tasks)
    assert await queue.outages() == []


def test_an_expected_end_is_local_time_today_or_tomorrow(config) -> None:
    from callback_dialer.hours import CallingHours

    hours = CallingHours(config.hours)
    now = 1795413600.0  # 09:00 Moscow
    assert parse_until("18:00", now, hours) == now + 9 * 3600
    assert parse_until("08:00", now, hours) == now + 23 * 3600
    with pytest.raises(OutageInputError):
        parse_until("tomorrow", now, hours)


class AstDb:
    """What Asterisk's DBPut/DBDel do to its database, one AMI round trip each (a real
    await in between, as on the socket): DBDel of a missing key is an error (``Response:
    Error``, ``Message: Database entry could not be deleted``, as the lab's Asterisk 22.9.0
    answers)."""

    def __init__(self) -> None:
        self.db: dict[str, str] = {}
        self.sent: list[dict] = []

    async def __call__(self, fields) -> None:
        self.sent.append(dict(fields))
        await asyncio.sleep(0.001)
        assert fields["Family"] == "callback-outage"
        if fields["Action"] == "DBPut":
            self.db[fields["Key"]] = fields["Val"]
        elif fields["Key"] in self.db:
            del self.db[fields["Key"]]
        else:
            raise AmiActionFailed("Database entry could not be deleted")  # 22.9.0's words


async def test_the_active_outage_is_mirrored_into_astdb(queue, config, clock) -> None:
    astdb = AstDb()
    astdb.db = {"cat-billing": "1", "message": "left from before a restart"}
    service = OutageService(config, clock, queue, ami_action=astdb)
    await service.ami_ready()
    assert astdb.db == {}
    await service.declare(actor="web:boss", categories=["support"], message="Cable cut")
    assert astdb.db == {"cat-support": "1", "message": "Cable cut", "until": ""}
    astdb.sent.clear()
    await service.refresh()  # nothing changed: nothing sent
    assert astdb.sent == []
    outage = (await queue.outages())[0]
    await service.end(outage.id, OutageEnd.RELEASE, actor="web:boss")
    assert astdb.db == {}


async def test_concurrent_declarations_and_ends_leave_astdb_as_redis_says(
    queue, config, clock
) -> None:
    astdb = AstDb()
    service = OutageService(config, clock, queue, ami_action=astdb)
    await service.declare(actor="pbx", categories=["support"], outage_id="a", message="A")
    # The loop's refresh, an API declaration and a UserEvent's end, all at once.
    await asyncio.gather(
        service.refresh(),
        service.declare(actor="web:x", categories=["billing"], outage_id="b", message="B"),
        service.end("a", OutageEnd.DROP, actor="pbx"),
        service.refresh(),
    )
    await service.refresh()
    assert astdb.db == {"cat-billing": "1", "message": "B", "until": ""}


async def area_server(handler):
    app = web.Application()
    app.router.add_post("/area", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, f"http://127.0.0.1:{port}/area"


async def test_an_outage_by_area_asks_the_crm_and_holds_its_callers(
    make_config, redis_client, clock
) -> None:
    asked = []

    async def crm(request):
        number = (await request.json())["number"]
        asked.append(number)
        return web.json_response({"area": "north" if number.endswith("1") else "south"})

    runner, url = await area_server(crm)
    try:
        config = make_config(outage={"area_lookup_url": url})
        queue = CallbackQueue(redis_client, config, clock)
        service = OutageService(config, clock, queue)
        assert await service.area_for("+79160000001", "support") == ""  # no outage: not asked
        await service.declare(actor="web:boss", categories=["support"], areas=["north"])
        north = await service.area_for("+79160000001", "support")
        south = await service.area_for("+79160000002", "support")
        assert (north, south) == ("north", "south")
        assert await service.area_for("+79160000001", "billing") == ""  # not covered: not asked
        held = await queue.add_missed(
            number="+79160000001",
            category="support",
            source=Source.ABANDON,
            missed_at=clock.now(),
            area=north,
        )
        assert (await queue.get(held.id)).state is State.HELD
        assert asked == ["+79160000001", "+79160000002"]
        await service.close()
    finally:
        await runner.cleanup()


async def test_a_crm_that_does_not_answer_in_time_means_not_held(
    make_config, redis_client, clock
) -> None:
    async def slow(request):
        await asyncio.sleep(5)
        return web.json_response({"area": "north"})

    runner, url = await area_server(slow)
    try:
        config = make_config(outage={"area_lookup_url": url, "area_lookup_timeout": 0.2})
        queue = CallbackQueue(redis_client, config, ManualClock())
        service = OutageService(config, clock, queue)
        await service.declare(actor="web:boss", categories=["support"], areas=["north"])
        assert await service.area_for("+79160000001", "support") == ""
        assert service.lookups_failed == 1
        await service.close()
    finally:
        await runner.cleanup()


async def test_receivers_and_the_sms_learn_of_held_and_dropped_callbacks(
    make_config, redis_client, clock, redis_url, key_prefix
) -> None:
    import json

    import redis as sync_redis

    from callback_dialer.jobs.bridge import JobsBridge
    from callback_dialer.jobs.common import receiver_id, rq_queue
    from callback_dialer.queue.keys import Keys

    from .test_jobs_support import hand_over_all, purge_rq

    hook = "http://127.0.0.1:9/crm"
    config = make_config(
        webhooks=[{"url": hook}],
        reports={"enabled": False},
        sms={"enabled": True, "url": "http://127.0.0.1:9/sms", "outage_text": "Outage: {message}"},
    )
    queue = CallbackQueue(redis_client, config, clock)
    bridge = JobsBridge(redis_client, config, queue, clock)
    sync = sync_redis.Redis.from_url(redis_url)
    try:
        await bridge.prime()
        await declare(queue)
        held = await miss(queue, IN_DISTRICT[0])
        await clock.advance(30)
        await miss(queue, IN_DISTRICT[0])  # calls again: merged, still held, no "N minutes"
        await queue.end_outage("o1", OutageEnd.DROP, actor="web:boss")
        await queue.settle_outage("o1")
        await hand_over_all(bridge)
        key = Keys(config.redis.key_prefix).webhook_outbox(receiver_id(hook))
        docs = [json.loads(d) for d in sync.lrange(key, 0, -1)]
        assert [(d["event"], d["callback_id"], d["outage_id"]) for d in docs] == [
            ("outage_declared", "", "o1"),
            ("held", held.id, "o1"),
            ("merged", held.id, ""),
            ("outage_ended", "", "o1"),
            ("outage_dropped", held.id, "o1"),
        ]
        assert docs[0]["detail"]["prefixes"] == [DISTRICT]
        jobs = rq_queue(config, sync).jobs
        sms = [j.kwargs for j in jobs if "text" in j.kwargs]
        texts = [(k["kind"], k["number"], k["text"]) for k in sms]
        assert texts == [
            (
                "outage",
                IN_DISTRICT[0],
                "Outage: Known outage in your district, fix expected by 18:00",
            ),
            ("service_back", IN_DISTRICT[0], config.sms.service_back_text),
        ]
    finally:
        await bridge.close()
        purge_rq(redis_url, key_prefix)
        sync.close()


async def test_the_daily_report_shows_held_dropped_and_released(
    make_config, redis_client, clock, tmp_path
) -> None:
    import redis as sync_redis

    from callback_dialer.jobs import reports

    config = make_config(reports={"folder": str(tmp_path)})
    queue = CallbackQueue(redis_client, config, clock)
    await declare(queue, outage_id="a")
    dropped = [(await miss(queue, n)).id for n in IN_DISTRICT[:2]]
    await queue.end_outage("a", OutageEnd.DROP, actor="web:boss")
    await queue.settle_outage("a")
    await declare(queue, outage_id="b")
    released = (await miss(queue, IN_DISTRICT[2])).id
    still = None
    await queue.end_outage("b", OutageEnd.RELEASE, actor="web:boss")
    await queue.settle_outage("b")
    await declare(queue, outage_id="c")
    still = (await miss(queue, IN_DISTRICT[3])).id
    report = reports.collect(
        config, queue.hours.day_key(clock.now()), sync_redis.Redis.from_url(config.redis.url)
    )
    fates = {r["callback_id"]: (r["fate"], r["outage"]) for r in report.missed}
    assert fates == {
        dropped[0]: ("outage_dropped", "a"),
        dropped[1]: ("outage_dropped", "a"),
        released: ("waiting", "b"),
        still: ("held", "c"),
    }
    total = next(r for r in report.categories if r["category"] == "total")
    assert (total["held"], total["outage_released"], total["outage_dropped"]) == (4, 1, 2)
    assert (total["cancelled"], total["open"], total["callbacks"]) == (2, 2, 4)


async def test_metrics_show_outages_held_callbacks_and_self_service(
    config, redis_url, tmp_path, clock
) -> None:
    from callback_dialer.app import build_dialer
    from callback_dialer.detect.facts import SelfServed

    dialer = build_dialer(config, clock=clock, redis_url=redis_url, spool=tmp_path / "s.jsonl")
    sink = asyncio.create_task(dialer.pipeline.sink.run())
    try:
        await declare(dialer.queue)
        await miss(dialer.queue, IN_DISTRICT[0])
        dialer.pipeline.sink.put(
            SelfServed("c1", "+74951230009", "support", "balance", clock.now(), clock.now())
        )
        await dialer.pipeline.sink.drain(5)
        text = await dialer.status.metrics_text()
        assert 'callback_dialer_outages{state="active"} 1' in text
        assert 'callback_dialer_queue_depth{category="support",state="held"} 1' in text
        assert 'callback_dialer_self_service_total{reason="balance"} 1' in text
    finally:
        sink.cancel()
        await dialer.outages.close()
        from callback_dialer.queue.connect import close_async_client

        await close_async_client(dialer.redis)
