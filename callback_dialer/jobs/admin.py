"""What the status page and /metrics need from the side jobs: counts, failures, re-runs.

Every method is synchronous (rq and redis-py's sync client): from the web layer call them
through ``asyncio.to_thread``. One ``JobsAdmin`` may be shared; its Redis client is a pool.

- ``counts()``: jobs queued, running, scheduled (retries waiting, the next report), failed,
  and webhook events waiting / parked;
- ``failed_jobs()``: jobs that used up their tries, with the last line of their error;
  ``rerun_failed(id)`` / ``rerun_all_failed()`` give them all their tries again;
- ``receivers()``: per webhook URL, events waiting, events parked, delivery running;
- ``parked_events()``: events a receiver refused (4xx); ``rerun_parked()`` sends them again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import redis
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from ..config import Config
from ..queue.keys import Keys
from .common import connect, display_url, rq_queue, webhooks_by_receiver
from .webhooks import delivery_is_live, rerun_dead

_ERROR_MAX = 300


@dataclass(frozen=True, slots=True)
class JobCounts:
    queued: int
    started: int
    scheduled: int
    failed: int
    webhooks_waiting: int
    webhooks_parked: int


@dataclass(frozen=True, slots=True)
class FailedJob:
    id: str
    description: str
    failed_at: float | None  # epoch seconds
    error: str  # the last line of the exception, e.g. "DeliveryFailed: https://...: 503 ..."


@dataclass(frozen=True, slots=True)
class ReceiverState:
    receiver: str  # the id used in Redis keys
    url: str
    waiting: int
    parked: int
    delivering: bool  # a delivery job is queued, scheduled (retry) or running


@dataclass(frozen=True, slots=True)
class ParkedEvent:
    receiver: str
    url: str
    event_id: str
    event: str
    callback_id: str
    status: int
    error: str
    parked_at: float


def _last_line(text: str | None) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1][:_ERROR_MAX] if lines else ""


class JobsAdmin:
    def __init__(self, config: Config, connection: redis.Redis | None = None) -> None:
        self.config = config
        self._owns = connection is None
        self.conn = connection or connect(config, socket_timeout=config.redis.socket_timeout)
        self.queue = rq_queue(config, self.conn)
        self.keys = Keys(config.redis.key_prefix)
        self.hooks = webhooks_by_receiver(config)

    def close(self) -> None:
        if self._owns:
            self.conn.close()

    def counts(self) -> JobCounts:
        receivers = self.receivers()
        return JobCounts(
            queued=self.queue.count,
            started=self.queue.started_job_registry.count,
            scheduled=self.queue.scheduled_job_registry.count,
            failed=self.queue.failed_job_registry.count,
            webhooks_waiting=sum(r.waiting for r in receivers),
            webhooks_parked=sum(r.parked for r in receivers),
        )

    # ------------------------------------------------------------------ failed jobs

    def failed_jobs(self, limit: int = 100) -> list[FailedJob]:
        """Newest failures first."""
        registry = FailedJobRegistry(queue=self.queue)
        ids = registry.get_job_ids(0, limit - 1, desc=True)
        out = []
        for job_id, job in zip(ids, Job.fetch_many(ids, connection=self.conn), strict=True):
            if job is None:
                continue
            result = job.latest_result()
            error = _last_line(result.exc_string if result is not None else None)
            out.append(
                FailedJob(
                    id=job_id,
                    description=job.description or job.func_name,
                    failed_at=job.ended_at.timestamp() if job.ended_at else None,
                    error=error or "(no error recorded)",
                )
            )
        return out

    def rerun_failed(self, job_id: str) -> bool:
        """Queue a failed job again with all its tries; False when it is not a failed job
        of this queue (already re-run, expired, unknown id)."""
        try:
            job = Job.fetch(job_id, connection=self.conn)
        except (NoSuchJobError, ValueError):
            return False
        if job.origin != self.queue.name:
            return False
        retries = self.config.jobs.max_tries - 1
        if job.retry_intervals is not None and retries > 0:
            job.retries_left = retries
        try:
            FailedJobRegistry(queue=self.queue).requeue(job)
        except InvalidJobOperation:
            return False
        return True

    def rerun_all_failed(self) -> int:
        ids = FailedJobRegistry(queue=self.queue).get_job_ids()
        return sum(1 for job_id in ids if self.rerun_failed(job_id))

    # ------------------------------------------------------------------ webhooks

    def receivers(self) -> list[ReceiverState]:
        out = []
        for receiver, hook in self.hooks.items():
            out.append(
                ReceiverState(
                    receiver=receiver,
                    url=display_url(hook.url),
                    waiting=int(self.conn.llen(self.keys.webhook_outbox(receiver))),
                    parked=int(self.conn.llen(self.keys.webhook_dead(receiver))),
                    delivering=delivery_is_live(self.conn, self.keys, receiver),
                )
            )
        return out

    def parked_events(self, receiver: str | None = None, limit: int = 100) -> list[ParkedEvent]:
        """Events refused by a receiver, oldest first."""
        out = []
        for rid, hook in self.hooks.items():
            if receiver is not None and rid != receiver:
                continue
            for raw in self.conn.lrange(self.keys.webhook_dead(rid), 0, limit - 1):
                entry = json.loads(raw)
                doc = json.loads(entry.get("body") or "{}")
                out.append(
                    ParkedEvent(
                        receiver=rid,
                        url=display_url(hook.url),
                        event_id=str(doc.get("id", "")),
                        event=str(doc.get("event", "")),
                        callback_id=str(doc.get("callback_id", "")),
                        status=int(entry.get("status") or 0),
                        error=str(entry.get("error", "")),
                        parked_at=float(entry.get("parked_at") or 0),
                    )
                )
        return out

    def rerun_parked(self, receiver: str | None = None) -> int:
        """Send parked events again (before anything still waiting); how many were moved."""
        return sum(
            rerun_dead(self.conn, self.config, rid)
            for rid in self.hooks
            if receiver is None or rid == receiver
        )
