"""The daily report: every missed call of a day and its fate, by category and by hour.

Made by an rq job at ``[reports] at`` (local time in ``[hours] timezone``) for that day, and
made again at the same time the next day, when most callbacks still open the evening before
have their fate. ``generate_report(config, day)`` makes one on demand (the status page offers
it); ``list_reports(config)`` lists what is in ``[reports] folder``; ``report_file(config,
name)`` resolves a download name safely.

Files, for day D in ``[reports] folder`` (created when missing; relative to the worker's
working directory):

- ``callbacks-D.csv``             one row per missed call (``MISSED_COLUMNS``)
- ``callbacks-D-categories.csv``  summary by category (``CATEGORY_COLUMNS``)
- ``callbacks-D-hours.csv``       summary by hour of day (``HOUR_COLUMNS``)
- ``callbacks-D.xlsx``            the same three tables as sheets, when ``[reports] xlsx``

CSV files are UTF-8 with a byte order mark (Excel then shows Cyrillic names correctly). Text
that a spreadsheet would run as a formula (starting with = + - @) is written as plain text.
Stored text is written cleaned (``phone.clean_text``: no control, bidi or other invisible
characters), so no name, note or reason can make a report fail (the XLSX format forbids
control characters) or reorder a cell. The files of a day are replaced together: all new, or,
when anything fails, all as they were.
Every function here is synchronous (Redis and file I/O): call them from async code through
``asyncio.to_thread``.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import re
import statistics
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from rq import get_current_job
from rq.job import Job

from ..config import Config
from ..hours import CallingHours
from ..logs import get_logger
from ..phone import clean_text, is_e164
from ..queue.keys import Keys
from ..queue.models import Callback
from ..queue.replies import text as _text
from .common import connect, retry_policy, rq_queue, worker_config

REPORT_JOB_TIMEOUT = 900
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$", re.ASCII)
# Days a report or a page can be about: a week before one stays a real date, and every
# timestamp of one fits the platform's clock.
FIRST_DAY, LAST_DAY = dt.date(1971, 1, 1), dt.date(9998, 12, 31)
_FILE = re.compile(r"^callbacks-(\d{4}-\d{2}-\d{2})(-categories|-hours)?\.(csv|xlsx)$")
_LIVE = {b"queued", b"started", b"scheduled", b"deferred"}

# (column, meaning): the meanings are the documentation (docs/side-jobs.md repeats them).
MISSED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("missed_at", "local date and time of the missed call"),
    ("hour", "its hour of day, 0-23"),
    ("number", "the caller's number, E.164"),
    ("name", "the caller's name as the PBX gave it (may be empty)"),
    ("category", "the category of this call"),
    (
        "source",
        "abandon, ivr_hangup, timeout, explicit, manual, or self_service (the IVR served "
        "the caller itself: no callback)",
    ),
    ("repeat", "yes when the caller already had an open callback and this call joined it"),
    ("call_id", "the PBX's id of the call"),
    ("callback_id", "the callback that answers this call"),
    (
        "fate",
        "called_back, served_inbound, served_outbound (got through on their own), "
        "failed, cancelled, waiting, in_progress, self_service (no callback owed), held "
        "(an outage holds it), outage_dropped (dropped when the outage ended), "
        "or unknown (record expired)",
    ),
    (
        "reason",
        "why it failed or was cancelled: busy, no_answer, expired, a supervisor's note; "
        "for self_service the dialplan's reason (balance, ...)",
    ),
    ("note", "the note typed when the callback was added by hand"),
    ("attempts", "customer attempts made so far"),
    ("first_call_at", "local time our first call to the customer started ringing"),
    (
        "minutes_to_first_call",
        "minutes from this missed call to our first call; empty when "
        "we had called before this call or have not called yet",
    ),
    ("closed_at", "local time the callback was finished"),
    ("agent", "the agent of the last attempt"),
    (
        "outage",
        "the outage that held this callback (it was held, then released or dropped); empty if none",
    ),
)
CATEGORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("category", "category of the missed calls (total: all of them)"),
    ("label", "its label from the config"),
    ("missed_calls", "missed calls in this category"),
    ("callbacks", "different callbacks answering them (one per caller while open)"),
    ("called_back", "callbacks done by our call"),
    ("served", "callbacks whose caller got through on their own (inbound or an agent's own call)"),
    ("failed", "callbacks that failed after their last attempt or expired"),
    ("cancelled", "callbacks cancelled by a supervisor"),
    ("open", "callbacks still waiting or in progress"),
    (
        "within_target",
        "callbacks whose first call came within the web target of the first missed call",
    ),
    ("median_minutes_to_first_call", "median minutes from first missed call to our first call"),
    ("self_service", "calls that ended in self-service (the IVR served them; not missed)"),
    ("held", "callbacks an outage held (still held, released or dropped)"),
    ("outage_released", "held callbacks released to the agents when their outage ended"),
    ("outage_dropped", "held callbacks dropped when their outage ended (service is back)"),
)
HOUR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("hour", "hour of day, local time (total: the whole day)"),
    ("missed_calls", "missed calls in this hour"),
    ("callbacks_dialed", "our calls to customers started in this hour"),
    ("called_back", "callbacks done in this hour"),
)

log = get_logger("callback_dialer.jobs.reports")


@dataclass(frozen=True, slots=True)
class ReportFiles:
    day: str
    missed_csv: Path
    categories_csv: Path
    hours_csv: Path
    xlsx: Path | None

    def paths(self) -> list[Path]:
        found = [self.missed_csv, self.categories_csv, self.hours_csv]
        return found + ([self.xlsx] if self.xlsx else [])


@dataclass(frozen=True, slots=True)
class Report:
    day: str
    missed: list[dict[str, Any]]
    categories: list[dict[str, Any]]
    hours: list[dict[str, Any]]


def check_day(day: str) -> str:
    """``day`` itself when it is a real date written YYYY-MM-DD, from 1971 to 9998; ValueError
    otherwise."""
    try:
        if not _DAY.match(day):
            raise ValueError
        date = dt.date.fromisoformat(day)
    except (ValueError, TypeError):
        raise ValueError(f"day must be a date like 2026-11-23, got {day!r}") from None
    if not FIRST_DAY <= date <= LAST_DAY:
        raise ValueError(
            f"day must be a date from {FIRST_DAY.isoformat()} to {LAST_DAY.isoformat()}, "
            f"got {day!r}"
        )
    return day


# --------------------------------------------------------------------------- collecting


def collect(config: Config, day: str, conn: redis.Redis) -> Report:
    """Read one day's missed calls, their callbacks and counters from Redis."""
    check_day(day)
    keys = Keys(config.redis.key_prefix)
    hours = CallingHours(config.hours)
    entries = [
        {_text(k): _text(v) for k, v in fields.items()}
        for _, fields in conn.xrange(keys.missed(day))
    ]
    ids = sorted({e.get("callback", "") for e in entries} - {""})
    pipe = conn.pipeline(transaction=False)
    for callback_id in ids:
        pipe.hgetall(keys.callback(callback_id))
    callbacks: dict[str, Callback] = {}
    for callback_id, raw in zip(ids, pipe.execute() if ids else [], strict=True):
        if raw:
            try:
                callbacks[callback_id] = Callback.from_redis(
                    {_text(k): _text(v) for k, v in raw.items()}
                )
            except (KeyError, ValueError):
                log.warning("report_unreadable_callback", callback_id=callback_id)
    stats = {_text(k): int(v) for k, v in conn.hgetall(keys.stats(day)).items()}

    def local(ts: float | None) -> dt.datetime | None:
        return hours.local(ts).replace(tzinfo=None) if ts else None

    rows = []
    for e in sorted(entries, key=lambda e: float(e.get("at") or 0)):
        at = float(e.get("at") or 0)
        if e.get("source") == "self_service":
            rows.append(_self_served_row(e, local(at), hours.hour(at)))
            continue
        cb = callbacks.get(e.get("callback", ""))
        first_call = cb.first_dialed_at if cb else None
        rows.append(
            {
                "missed_at": local(at),
                "hour": hours.hour(at),
                "number": e.get("number", ""),
                "name": cb.name if cb else "",
                "category": e.get("category", ""),
                "source": e.get("source", ""),
                "repeat": "yes" if e.get("merged") == "1" else "no",
                "call_id": e.get("call_id", ""),
                "callback_id": e.get("callback", ""),
                "fate": fate(cb),
                "reason": cb.reason if cb and cb.state.value in ("failed", "cancelled") else "",
                "note": cb.note if cb else "",
                "attempts": cb.attempts if cb else None,
                "first_call_at": local(first_call),
                "minutes_to_first_call": (
                    round((first_call - at) / 60, 1) if first_call and first_call >= at else None
                ),
                "closed_at": local(cb.closed_at) if cb else None,
                "agent": cb.agent if cb else "",
                "outage": cb.outage if cb else "",
            }
        )
    return Report(
        day=day,
        missed=rows,
        categories=_by_category(config, rows, callbacks),
        hours=_by_hour(rows, stats),
    )


def _self_served_row(e: dict[str, str], at: dt.datetime | None, hour: int) -> dict[str, Any]:
    """A call the IVR served itself: one row, no callback behind it."""
    row: dict[str, Any] = {name: "" for name, _ in MISSED_COLUMNS}
    row.update(
        missed_at=at,
        hour=hour,
        number=e.get("number", ""),
        category=e.get("category", ""),
        source="self_service",
        repeat="no",
        call_id=e.get("call_id", ""),
        fate="self_service",
        reason=e.get("self_service", ""),
        attempts=None,
        first_call_at=None,
        minutes_to_first_call=None,
        closed_at=None,
    )
    return row


def fate(cb: Callback | None) -> str:
    if cb is None:
        return "unknown"
    state = cb.state.value
    if state == "done":
        return cb.reason or "called_back"
    if state == "cancelled" and cb.outage and cb.reason == "outage_over":
        return "outage_dropped"
    return {
        "pending": "waiting",
        "scheduled": "waiting",
        "dialing": "in_progress",
        "held": "held",
    }.get(state, state)


def _summary(
    rows: list[dict[str, Any]], callbacks: dict[str, Callback], target: float
) -> dict[str, Any]:
    served_by_ivr = sum(1 for r in rows if r["fate"] == "self_service")
    ids = {r["callback_id"] for r in rows if r["callback_id"]}
    by_outage = [cb for i in ids if (cb := callbacks.get(i)) is not None and cb.outage]
    fates = [fate(callbacks.get(i)) for i in ids]
    waits = [
        cb.first_dialed_at - cb.first_missed
        for i in ids
        if (cb := callbacks.get(i)) is not None and cb.first_dialed_at
    ]
    return {
        "missed_calls": len(rows) - served_by_ivr,
        "callbacks": len(ids),
        "called_back": fates.count("called_back"),
        "served": fates.count("served_inbound") + fates.count("served_outbound"),
        "failed": fates.count("failed"),
        "cancelled": fates.count("cancelled") + fates.count("outage_dropped"),
        "open": fates.count("waiting") + fates.count("in_progress") + fates.count("held"),
        "within_target": sum(1 for w in waits if w <= target),
        "median_minutes_to_first_call": (
            round(statistics.median(waits) / 60, 1) if waits else None
        ),
        "self_service": served_by_ivr,
        "held": len(by_outage),
        "outage_released": sum(1 for cb in by_outage if fate(cb) not in ("held", "outage_dropped")),
        "outage_dropped": sum(1 for cb in by_outage if fate(cb) == "outage_dropped"),
    }


def _by_category(
    config: Config, rows: list[dict[str, Any]], callbacks: dict[str, Callback]
) -> list[dict[str, Any]]:
    names = list(config.category_names())
    names += sorted({r["category"] for r in rows} - set(names))
    out = []
    for name in names:
        category = config.category(name)
        out.append(
            {
                "category": name,
                "label": category.label if category else "",
                **_summary(
                    [r for r in rows if r["category"] == name], callbacks, config.web.target
                ),
            }
        )
    out.append({"category": "total", "label": "", **_summary(rows, callbacks, config.web.target)})
    return out


def _by_hour(rows: list[dict[str, Any]], stats: dict[str, int]) -> list[dict[str, Any]]:
    out = [
        {
            "hour": hour,
            "missed_calls": sum(
                1 for r in rows if r["hour"] == hour and r["fate"] != "self_service"
            ),
            "callbacks_dialed": stats.get(f"callbacks:hour:{hour}", 0),
            "called_back": stats.get(f"done:hour:{hour}", 0),
        }
        for hour in range(24)
    ]
    out.append(
        {
            "hour": "total",
            **{
                k: sum(int(r[k]) for r in out)
                for k in ("missed_calls", "callbacks_dialed", "called_back")
            },
        }
    )
    return out


# --------------------------------------------------------------------------- writing


def _cell_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if not isinstance(value, str):
        return str(value)
    # Cleaned first: an invisible character in front must not hide a formula from the check.
    text = clean_text(value)
    # A cell starting like a formula would run in the reader's spreadsheet (CSV injection);
    # caller names come from strangers. E.164 numbers start with + and are safe.
    if text[:1] in ("=", "+", "-", "@") and not is_e164(text):
        return "'" + text
    return text


def _write_together(writes: list[tuple[Path, Any]]) -> None:
    """Write every file beside its target, then rename them all: a download never gets half
    a file, and when one cannot be written none is replaced (no stale file beside new ones)."""
    done: list[tuple[str, Path]] = []
    try:
        for path, write in writes:
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            os.close(fd)
            done.append((tmp, path))
            write(Path(tmp))
        for tmp, path in done:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in done:
            Path(tmp).unlink(missing_ok=True)
        raise


def _write_csv(tmp: Path, columns: Iterable[tuple[str, str]], rows: list[dict[str, Any]]) -> None:
    names = [name for name, _ in columns]
    with tmp.open("w", encoding="utf-8-sig", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(names)
        for row in rows:
            writer.writerow([_cell_text(row.get(n)) for n in names])


def _write_xlsx(tmp: Path, report: Report) -> None:
    from openpyxl import Workbook
    from openpyxl.utils import get_column_letter

    book = Workbook()
    sheets = (
        ("Missed calls", MISSED_COLUMNS, report.missed),
        ("By category", CATEGORY_COLUMNS, report.categories),
        ("By hour", HOUR_COLUMNS, report.hours),
    )
    for index, (title, columns, rows) in enumerate(sheets):
        sheet = book.active if index == 0 else book.create_sheet()
        assert sheet is not None
        sheet.title = title
        names = [name for name, _ in columns]
        sheet.append(names)
        for row in rows:
            sheet.append([None for _ in names])
            for col, name in enumerate(names, start=1):
                cell = sheet.cell(row=sheet.max_row, column=col)
                value = row.get(name)
                if isinstance(value, str):
                    value = clean_text(value)  # the format refuses control characters
                cell.value = value
                if isinstance(value, str):
                    cell.data_type = "s"  # never a formula, whatever the text starts with
                elif isinstance(value, dt.datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
        sheet.freeze_panes = "A2"
        for col, name in enumerate(names, start=1):
            sheet.column_dimensions[get_column_letter(col)].width = max(10, len(name) + 2)
    book.save(tmp)


def files_for(config: Config, day: str) -> ReportFiles:
    folder = Path(config.reports.folder)
    return ReportFiles(
        day=day,
        missed_csv=folder / f"callbacks-{day}.csv",
        categories_csv=folder / f"callbacks-{day}-categories.csv",
        hours_csv=folder / f"callbacks-{day}-hours.csv",
        xlsx=folder / f"callbacks-{day}.xlsx" if config.reports.xlsx else None,
    )


def write_report(config: Config, report: Report) -> ReportFiles:
    files = files_for(config, report.day)
    files.missed_csv.parent.mkdir(parents=True, exist_ok=True)
    writes: list[tuple[Path, Any]] = [
        (files.missed_csv, lambda tmp: _write_csv(tmp, MISSED_COLUMNS, report.missed)),
        (files.categories_csv, lambda tmp: _write_csv(tmp, CATEGORY_COLUMNS, report.categories)),
        (files.hours_csv, lambda tmp: _write_csv(tmp, HOUR_COLUMNS, report.hours)),
    ]
    if files.xlsx is not None:
        writes.append((files.xlsx, lambda tmp: _write_xlsx(tmp, report)))
    _write_together(writes)
    return files


def generate_report(
    config: Config, day: str, *, connection: redis.Redis | None = None
) -> ReportFiles:
    """Make (or remake) the report of ``day`` (YYYY-MM-DD, local). Synchronous."""
    check_day(day)
    conn = connection or connect(config, socket_timeout=config.redis.socket_timeout)
    try:
        report = collect(config, day, conn)
    finally:
        if connection is None:
            conn.close()
    files = write_report(config, report)
    log.info(
        "report_written",
        day=day,
        missed_calls=len(report.missed),
        folder=str(files.missed_csv.parent),
    )
    return files


def list_reports(config: Config) -> list[ReportFiles]:
    """Reports in the folder, newest day first (only days whose main CSV exists)."""
    folder = Path(config.reports.folder)
    if not folder.is_dir():
        return []
    days = sorted(
        {
            m.group(1)
            for p in folder.iterdir()
            if (m := _FILE.match(p.name)) and not m.group(2) and m.group(3) == "csv"
        },
        reverse=True,
    )
    out = []
    for day in days:
        files = files_for(config, day)
        xlsx = folder / f"callbacks-{day}.xlsx"
        out.append(
            ReportFiles(
                day,
                files.missed_csv,
                files.categories_csv,
                files.hours_csv,
                xlsx if xlsx.is_file() else None,
            )
        )
    return out


def report_file(config: Config, name: str) -> Path | None:
    """The file called ``name`` in the reports folder, or None: only our own file names, so a
    download link cannot reach anything else."""
    if not _FILE.match(name):
        return None
    path = Path(config.reports.folder) / name
    return path if path.is_file() else None


# --------------------------------------------------------------------------- scheduling


def next_report_time(config: Config, now: float) -> tuple[dt.datetime, str]:
    """The next ``[reports] at`` after ``now`` (aware datetime) and the day it reports on."""
    tz = config.hours.tzinfo()
    hour, minute = (int(x) for x in config.reports.at.split(":"))
    today = dt.datetime.fromtimestamp(now, tz).date()
    for offset in (0, 1, 2):
        day = today + dt.timedelta(days=offset)
        when = dt.datetime.combine(day, dt.time(hour, minute), tz)
        if when.timestamp() > now:
            return when, day.isoformat()
    raise AssertionError("unreachable: a day later is always later")


def schedule_daily_report(
    config: Config, conn: redis.Redis, *, now: float | None = None, replacing: str | None = None
) -> Job | None:
    """Schedule the next daily report unless one is already waiting; returns the new job.
    ``replacing``: the id of the report job now running (it is no longer waiting)."""
    keys = Keys(config.redis.key_prefix)
    current = conn.get(keys.report_job())
    if (
        current
        and current.decode() != replacing
        and conn.hget(Job.key_for(current.decode()), "status") in _LIVE
    ):
        return None
    when, day = next_report_time(config, dt.datetime.now().timestamp() if now is None else now)
    job = rq_queue(config, conn).enqueue_at(
        when,
        "callback_dialer.jobs.reports.daily_report",
        args=(day,),
        job_timeout=REPORT_JOB_TIMEOUT,
        retry=retry_policy(config.jobs),
        description=f"daily report {day}",
    )
    conn.set(keys.report_job(), job.id)
    log.info("report_scheduled", day=day, at=when.isoformat())
    return job


def daily_report(day: str) -> dict[str, Any]:
    """rq job: the report of ``day``, the previous day's again (fates settled overnight),
    then the next run."""
    config = worker_config()
    job = get_current_job()
    if job is None:
        raise RuntimeError("daily_report runs as an rq job")
    conn = job.connection
    written = [generate_report(config, day, connection=conn).day]
    previous = (dt.date.fromisoformat(day) - dt.timedelta(days=1)).isoformat()
    if conn.exists(Keys(config.redis.key_prefix).missed(previous)):
        written.append(generate_report(config, previous, connection=conn).day)
    if config.reports.enabled:
        # After this day's own slot even when run early (a re-run), so a day is not planned
        # twice.
        own_slot, _ = next_report_time(config, _day_start(config, day))
        schedule_daily_report(
            config,
            conn,
            replacing=job.id,
            now=max(dt.datetime.now().timestamp(), own_slot.timestamp()),
        )
    return {"written": written}


def _day_start(config: Config, day: str) -> float:
    start = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(0), config.hours.tzinfo())
    return start.timestamp() - 1
