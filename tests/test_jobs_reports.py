"""The daily report from a seeded day: rows, fates, totals, CSV and XLSX, and its schedule."""

from __future__ import annotations

import csv
import datetime as dt

import pytest
import redis
from openpyxl import load_workbook

from callback_dialer.clock import ManualClock
from callback_dialer.jobs import reports
from callback_dialer.jobs.common import rq_queue
from callback_dialer.queue.keys import Keys
from callback_dialer.queue.models import Attempt, Source, Stage
from callback_dialer.queue.store import CallbackQueue

from .test_jobs_support import purge_rq, run_worker

A, B, C, D, E = "+79161234567", "+79031234564", "+74951234563", "+79261112233", "+79035556677"
EVIL = '=HYPERLINK("http://evil.example","click")'
# 2026-11-23 09:00 Moscow (06:00 UTC): a Monday, the day starts at 09:00.
START = 1795413600.0
DAY = "2026-11-23"


@pytest.fixture(autouse=True)
def _rq_cleanup(redis_url, key_prefix):
    yield
    purge_rq(redis_url, key_prefix)


@pytest.fixture
def config(make_config, tmp_path):
    return make_config(
        reports={"folder": str(tmp_path / "reports"), "at": "23:55"},
        hours={"timezone": "Europe/Moscow"},
        web={"auth": "none", "target": "15m"},
        jobs={"max_tries": 1},
    )


async def seed_day(queue: CallbackQueue, clock: ManualClock) -> dict[str, str]:
    """Six missed calls from five callers, each callback with another fate."""

    async def missed(number, category, source, call_id, **kw):
        result = await queue.add_missed(
            number=number,
            category=category,
            source=source,
            missed_at=clock.now(),
            call_id=call_id,
            **kw,
        )
        return result.id

    async def ring(claim):
        await queue.renew(claim, stage=Stage.RINGING_CUSTOMER, agent="PJSIP/101")

    ids = {}
    ids["a"] = await missed(A, "support", Source.ABANDON, "a1", name=EVIL)  # 09:00
    await clock.advance(120)
    await missed(A, "support", Source.EXPLICIT, "a2")  # 09:02, joins A's callback
    await clock.advance(180)
    claim = await queue.claim(["support"], claimer="d")  # A, 5 min after the first call
    await ring(claim)
    await clock.advance(60)
    await queue.complete(
        claim, Attempt(at=clock.now(), agent="PJSIP/101", outcome="answered", talk_seconds=50)
    )
    await clock.advance(3600)  # 10:06
    ids["b"] = await missed(B, "new_connection", Source.IVR_HANGUP, "b1")
    for outcome in ("busy", "no_answer", "busy"):
        claim = await queue.claim(["new_connection"], claimer="d")
        await ring(claim)
        await queue.retry(claim, Attempt(at=clock.now(), agent="PJSIP/102", outcome=outcome))
        await clock.advance(3601)
    # 13:09
    ids["c"] = await missed(C, "billing", Source.TIMEOUT, "c1")
    await queue.resolve_number(C, "served_inbound")
    ids["d"] = await missed(D, "other", Source.ABANDON, "d1")
    await queue.cancel(ids["d"], "wrong number", actor="olga")
    ids["e"] = await missed(E, "support", Source.ABANDON, "e1")
    return ids


def read_csv(path):
    with path.open(encoding="utf-8-sig", newline="") as fh:
        return list(csv.DictReader(fh))


async def test_a_seeded_day_gives_one_row_per_missed_call_with_its_fate(
    config,
    redis_client,
    redis_url,
) -> None:
    clock = ManualClock(start=START)
    queue = CallbackQueue(redis_client, config, clock)
    ids = await seed_day(queue, clock)
    files = reports.generate_report(config, DAY)

    rows = read_csv(files.missed_csv)
    assert list(rows[0]) == [name for name, _ in reports.MISSED_COLUMNS]
    got = [
        (r["callback_id"], r["number"], r["category"], r["repeat"], r["fate"], r["reason"])
        for r in rows
    ]
    assert got == [
        (ids["a"], A, "support", "no", "called_back", ""),
        (ids["a"], A, "support", "yes", "called_back", ""),
        (ids["b"], B, "new_connection", "no", "failed", "busy"),
        (ids["c"], C, "billing", "no", "served_inbound", ""),
        (ids["d"], D, "other", "no", "cancelled", "wrong number"),
        (ids["e"], E, "support", "no", "waiting", ""),
    ]
    first, repeat = rows[0], rows[1]
    assert (first["missed_at"], first["hour"], first["first_call_at"]) == (
        f"{DAY} 09:00:00",
        "9",
        f"{DAY} 09:05:00",
    )
    assert (first["minutes_to_first_call"], repeat["minutes_to_first_call"]) == ("5.0", "3.0")
    assert (first["attempts"], first["agent"], first["closed_at"]) == (
        "1",
        "PJSIP/101",
        f"{DAY} 09:06:00",
    )
    assert rows[2]["attempts"] == "3"
    # A stranger's caller name cannot become a spreadsheet formula.
    assert first["name"] == "'" + EVIL
    stats = await queue.day_stats(DAY)
    assert len(rows) == stats["missed:total"] == 6


async def test_the_summaries_count_by_category_and_by_hour(config, redis_client) -> None:
    clock = ManualClock(start=START)
    queue = CallbackQueue(redis_client, config, clock)
    await seed_day(queue, clock)
    files = reports.generate_report(config, DAY)

    by_category = {r["category"]: r for r in read_csv(files.categories_csv)}
    assert list(by_category) == ["new_connection", "support", "billing", "other", "total"]
    columns = (
        "missed_calls",
        "callbacks",
        "called_back",
        "served",
        "failed",
        "cancelled",
        "open",
        "within_target",
    )
    counts = {name: tuple(int(row[c]) for c in columns) for name, row in by_category.items()}
    assert counts == {
        "new_connection": (1, 1, 0, 0, 1, 0, 0, 1),
        "support": (3, 2, 1, 0, 0, 0, 1, 1),
        "billing": (1, 1, 0, 1, 0, 0, 0, 0),
        "other": (1, 1, 0, 0, 0, 1, 0, 0),
        "total": (6, 5, 1, 1, 1, 1, 1, 2),
    }
    assert by_category["support"]["label"] == "Support"
    assert by_category["support"]["median_minutes_to_first_call"] == "5.0"
    assert by_category["new_connection"]["median_minutes_to_first_call"] == "0.0"

    by_hour = read_csv(files.hours_csv)
    assert [r["hour"] for r in by_hour] == [str(h) for h in range(24)] + ["total"]
    nonzero = {
        r["hour"]: (int(r["missed_calls"]), int(r["callbacks_dialed"]), int(r["called_back"]))
        for r in by_hour
        if r["hour"] != "total"
        and any(int(r[c]) for c in ("missed_calls", "callbacks_dialed", "called_back"))
    }
    # 09: A twice, A rung and done; 10, 11, 12: B rung three times; 13: C, D, E.
    assert nonzero == {
        "9": (2, 1, 1),
        "10": (1, 1, 0),
        "11": (0, 1, 0),
        "12": (0, 1, 0),
        "13": (3, 0, 0),
    }
    assert by_hour[-1] == {
        "hour": "total",
        "missed_calls": "6",
        "callbacks_dialed": "4",
        "called_back": "1",
    }


async def test_the_xlsx_holds_the_same_tables_with_real_types(config, redis_client) -> None:
    clock = ManualClock(start=START)
    queue = CallbackQueue(redis_client, config, clock)
    ids = await seed_day(queue, clock)
    files = reports.generate_report(config, DAY)
    assert files.xlsx is not None
    book = load_workbook(files.xlsx)
    assert book.sheetnames == ["Missed calls", "By category", "By hour"]
    sheet = book["Missed calls"]
    header = [c.value for c in sheet[1]]
    assert header == [name for name, _ in reports.MISSED_COLUMNS]
    first = dict(zip(header, [c.value for c in sheet[2]], strict=True))
    assert first["callback_id"] == ids["a"] and first["fate"] == "called_back"
    assert first["missed_at"] == dt.datetime(2026, 11, 23, 9, 0)
    assert first["attempts"] == 1 and first["minutes_to_first_call"] == 5.0
    name_cell = sheet.cell(row=2, column=header.index("name") + 1)
    assert (name_cell.value, name_cell.data_type) == (EVIL, "s")  # text, never a formula
    assert sheet.max_row == 7
    total = [c.value for c in book["By category"][book["By category"].max_row]]
    assert total[:4] == ["total", None, 6, 5]
    assert [c.value for c in book["By hour"][26]][:2] == ["total", 6]


HOSTILE_TEXT = "called back\r\n\u0000\u202e by email\x0b\x1f"


async def test_stored_text_with_control_and_bidi_characters_never_breaks_a_report(
    config, redis_client
) -> None:
    # Stored straight into the queue, as a record written before the API cleaned its input.
    clock = ManualClock(start=START)
    queue = CallbackQueue(redis_client, config, clock)
    name = "\u202e=HYPERLINK(1)\x00"
    first = await queue.add_missed(
        number=A, category="support", source=Source.ABANDON, missed_at=clock.now(), name=name
    )
    await queue.cancel(first.id, HOSTILE_TEXT, actor="web:alice")
    manual = await queue.add_manual(B, "billing", "web:alice", note="note\x07 with\u2028 breaks")
    files = reports.generate_report(config, DAY)
    rows = {r["callback_id"]: r for r in read_csv(files.missed_csv)}
    assert rows[first.id]["reason"] == "called back by email"
    # Cleaned before the formula check: the invisible character cannot hide the "=".
    assert rows[first.id]["name"] == "'=HYPERLINK(1)"
    assert rows[manual.id]["note"] == "note with breaks"
    book = load_workbook(files.xlsx)
    header = [c.value for c in book["Missed calls"][1]]
    cells = {
        row[header.index("callback_id")]: dict(zip(header, row, strict=True))
        for row in book["Missed calls"].iter_rows(min_row=2, values_only=True)
    }
    assert cells[first.id]["reason"] == "called back by email"
    assert cells[first.id]["name"] == "=HYPERLINK(1)"  # a text cell: never a formula
    assert cells[manual.id]["note"] == "note with breaks"


async def test_a_report_that_cannot_be_written_leaves_the_day_s_files_as_they_were(
    config, redis_client, monkeypatch
) -> None:
    clock = ManualClock(start=START)
    queue = CallbackQueue(redis_client, config, clock)
    await seed_day(queue, clock)
    files = reports.generate_report(config, DAY)
    before = {p: p.read_bytes() for p in files.paths()}
    await queue.add_missed(
        number="+79169998877", category="other", source=Source.ABANDON, missed_at=clock.now()
    )

    def broken(tmp, report):
        raise OSError("disk full")

    monkeypatch.setattr(reports, "_write_xlsx", broken)
    with pytest.raises(OSError, match="disk full"):
        reports.generate_report(config, DAY)
    # No new CSV beside the old XLSX, no half-written file left behind.
    assert {p: p.read_bytes() for p in files.paths()} == before
    assert sorted(p.name for p in files.missed_csv.parent.iterdir()) == sorted(
        p.name for p in files.paths()
    )


@pytest.mark.parametrize("day", ["0001-01-01", "1970-01-07", "9999-12-31", "２０２６-11-23"])
def test_a_day_no_report_can_be_about_is_refused_with_the_range(day) -> None:
    with pytest.raises(ValueError, match="day must be a date"):
        reports.check_day(day)
    assert reports.check_day("1971-01-01") == "1971-01-01"


async def test_reports_are_listed_and_only_our_files_can_be_fetched(
    config, redis_client, tmp_path
) -> None:
    clock = ManualClock(start=START)
    queue = CallbackQueue(redis_client, config, clock)
    await seed_day(queue, clock)
    assert reports.list_reports(config) == []
    reports.generate_report(config, DAY)
    reports.generate_report(config, "2026-11-22")  # an empty day is a report too
    listed = reports.list_reports(config)
    assert [r.day for r in listed] == [DAY, "2026-11-22"]
    assert listed[0].xlsx is not None and all(p.is_file() for p in listed[0].paths())
    assert reports.report_file(config, f"callbacks-{DAY}-hours.csv") == listed[0].hours_csv
    (tmp_path / "secret.txt").write_text("x")
    for name in (
        "../secret.txt",
        "callbacks-../../secret.txt",
        f"callbacks-{DAY}.csv/../x",
        "callbacks-2026-01-01.csv",
    ):
        assert reports.report_file(config, name) is None
    with pytest.raises(ValueError, match="day must be a date like 2026-11-23, got '2026-13-01'"):
        reports.generate_report(config, "2026-13-01")


def test_the_report_runs_at_the_configured_local_time(config) -> None:
    # 23:00 Moscow: today's report at 23:55; 23:56: tomorrow's.
    at_23 = dt.datetime(2026, 11, 23, 23, 0, tzinfo=config.hours.tzinfo()).timestamp()
    when, day = reports.next_report_time(config, at_23)
    assert (when.isoformat(), day) == ("2026-11-23T23:55:00+03:00", DAY)
    when, day = reports.next_report_time(config, at_23 + 56 * 60)
    assert (when.isoformat(), day) == ("2026-11-24T23:55:00+03:00", "2026-11-24")


async def test_the_scheduled_job_writes_the_report_and_schedules_the_next(
    config,
    redis_client,
    redis_url,
) -> None:
    clock = ManualClock(start=START)
    queue = CallbackQueue(redis_client, config, clock)
    await seed_day(queue, clock)
    conn = redis.Redis.from_url(redis_url)
    keys = Keys(config.redis.key_prefix)
    rq = rq_queue(config, conn)
    # The worker schedules the first run itself ...
    await run_worker(config)
    first = conn.get(keys.report_job()).decode()
    [scheduled] = rq.scheduled_job_registry.get_job_ids()
    assert scheduled == first
    when = rq.scheduled_job_registry.get_scheduled_time(first)
    expected, _ = reports.next_report_time(config, dt.datetime.now().timestamp())
    assert when.timestamp() == expected.timestamp()
    # ... and when it is due (made due now here), it writes the report and plans the next.
    conn.zadd(rq.scheduled_job_registry.key, {first: 0})
    await run_worker(config)
    assert expected.date().isoformat() in [r.day for r in reports.list_reports(config)]
    [following] = rq.scheduled_job_registry.get_job_ids()
    assert following != first and conn.get(keys.report_job()).decode() == following
    after = rq.scheduled_job_registry.get_scheduled_time(following).timestamp()
    assert after - expected.timestamp() == pytest.approx(86400, abs=3600)
    conn.close()
