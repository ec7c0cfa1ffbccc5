"""``callback-dialer worker``: an rq worker, with its scheduler, for webhooks, SMS and reports.

It listens on ``Keys(prefix).rq_queue_name(config.jobs.queue_name)`` in the configured Redis,
logs through structlog like the dialer, and schedules the daily report when
``[reports] enabled``. The scheduler moves retries (rq's Retry with intervals) and the daily
report onto the queue when they are due; in ``--burst`` mode it does so once at start, then the
worker works until the queue is empty and exits. Several workers may run; rq's scheduler lock
lets one of them schedule.
"""

from __future__ import annotations

import redis
from rq import Worker

from ..config import Config, ConfigError
from ..logs import configure_logging, get_logger
from ..queue.connect import ClusterNotSupported
from .common import (
    check_jobs_config,
    connect,
    display_url,
    rq_queue,
    rq_worker_name,
    set_worker_config,
)
from .reports import schedule_daily_report


def run_worker(config: Config, burst: bool = False) -> int:
    """Run until stopped (SIGINT/SIGTERM: the running job finishes first), or, with
    ``burst``, until the queue is empty. Returns the process exit status."""
    configure_logging(config.logging)
    log = get_logger("callback_dialer.jobs.worker")
    problems = check_jobs_config(config)
    if problems:
        raise ConfigError("worker", problems)
    set_worker_config(config)
    try:
        conn = connect(config)
    except ClusterNotSupported as exc:
        log.error("worker_cannot_start", error=str(exc))
        return 1
    try:
        conn.ping()
    except (redis.exceptions.RedisError, OSError) as exc:
        log.error("worker_redis_unreachable", url=display_url(config.redis.url), error=str(exc))
        return 1
    queue = rq_queue(config, conn)
    if config.reports.enabled:
        schedule_daily_report(config, conn)
    worker = Worker([queue], connection=conn, name=rq_worker_name(config))
    log.info(
        "worker_started",
        queue=queue.name,
        burst=burst,
        webhooks=len(config.webhooks),
        sms=config.sms.enabled,
        reports=config.reports.enabled,
    )
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level=config.logging.level.upper())
    finally:
        conn.close()
    log.info("worker_stopped", queue=queue.name)
    return 0
