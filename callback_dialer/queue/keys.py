"""Every Redis key name the program uses, in one place.

All keys of one installation start with ``{prefix}:`` — the braces make ``prefix`` a Redis
Cluster hash tag, so every key lands in one slot and multi-key scripts stay legal. The Lua
scripts get their key helpers generated from the same table (``lua_prelude``), so a name is
never spelled twice.
"""

from __future__ import annotations

import re

# name -> suffix after "{prefix}:"; "%s" marks the one variable part.
_LAYOUT: dict[str, str] = {
    "callback": "cb:%s",  # hash: one callback
    "history": "cb:%s:history",  # stream: every change of one callback
    # hash: E.164 number -> id of its open callback; a callback to a number typed in the IVR
    # is under both that number and the caller ID (enqueue.lua), so either merges or closes it
    "open": "open",
    # zset per E.164 number: ids of its callbacks -> when created (the caller ID's too)
    "number": "number:%s",
    "ready": "ready:%s",  # zset per category: id -> priority score (lower goes first)
    "scheduled": "scheduled",  # zset: id -> time it becomes ready
    "leases": "leases",  # zset: id -> time its claim runs out
    "age": "age",  # zset: open id -> first missed time (expiry, oldest waiting)
    "finished": "finished",  # zset: id -> time it was closed
    "counts": "counts",  # hash: "state:category" -> how many
    "seq": "seq",  # counter for callback ids
    "seen": "seen",  # zset: call ids already counted (replays and resyncs are no-ops)
    "events": "events",  # stream: every change of every callback (live page, webhooks)
    "stats": "stats:%s",  # hash per day: counters for the page and the reports
    "ttc": "ttc:%s",  # zset per day: id -> seconds from missed call to our first call
    "day": "day:%s",  # zset per day: ids first missed that day -> first missed time
    "missed": "missed:%s",  # stream per day: every missed call (merged ones too)
    "control": "control",  # hash: dispatching paused, by whom, alarms
    "sms_sent": "sms:%s",  # string per number: set while no SMS may go to it again
    "webhook_outbox": "webhooks:%s",  # list per receiver: events waiting, in order
    "webhook_dead": "webhooks:%s:dead",  # list per receiver: refused events, kept for re-run
    "rq_prefix": "rq",  # rq's queue name lives under this (see jobs)
    "jobs_cursor": "jobs:cursor",  # string: last events entry the jobs bridge handed over
    "queue_log_cursor": "queuelog:cursor",  # string: last events entry written to queue_log
    "webhook_job": "webhooks:%s:job",  # string per receiver: rq job id now delivering its outbox
    "webhook_lock": "webhooks:%s:lock",  # string per receiver: held by the one worker delivering
    "report_job": "reports:job",  # string: rq job id of the next scheduled daily report
    "session": "session:%s",  # hash per status-page session (by cookie digest): user, times
    "user_sessions": "sessions:%s",  # set per web user: digests of their open sessions
    "outage": "outage:%s",  # hash per outage: what it covers, its message, state, counters
    "outages": "outages",  # zset: every outage id -> when it was declared
    "outages_active": "outages:active",  # zset: ids of outages holding calls now -> declared
    "held": "held:%s",  # zset per outage: ids of the callbacks it holds -> priority score
    # hash: the leader lease: holder (instance), token (only grows), until (Redis ms); never
    # expires, so the token never starts again from 1
    "leader": "leader",
}


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tag = "{" + prefix + "}"

    def _k(self, name: str, part: str | None = None) -> str:
        suffix = _LAYOUT[name]
        if "%s" in suffix:
            if part is None:
                raise ValueError(f"key {name} needs a part")
            suffix = suffix % part
        return f"{self.tag}:{suffix}"

    def callback(self, callback_id: str) -> str:
        return self._k("callback", callback_id)

    def history(self, callback_id: str) -> str:
        return self._k("history", callback_id)

    def open(self) -> str:
        return self._k("open")

    def number(self, number: str) -> str:
        return self._k("number", number)

    def ready(self, category: str) -> str:
        return self._k("ready", category)

    def scheduled(self) -> str:
        return self._k("scheduled")

    def leases(self) -> str:
        return self._k("leases")

    def age(self) -> str:
        return self._k("age")

    def finished(self) -> str:
        return self._k("finished")

    def counts(self) -> str:
        return self._k("counts")

    def seq(self) -> str:
        return self._k("seq")

    def seen(self) -> str:
        return self._k("seen")

    def events(self) -> str:
        return self._k("events")

    def stats(self, day: str) -> str:
        return self._k("stats", day)

    def ttc(self, day: str) -> str:
        return self._k("ttc", day)

    def day(self, day: str) -> str:
        return self._k("day", day)

    def missed(self, day: str) -> str:
        return self._k("missed", day)

    def queue_log_cursor(self) -> str:
        return self._k("queue_log_cursor")

    def control(self) -> str:
        return self._k("control")

    def sms_sent(self, number: str) -> str:
        return self._k("sms_sent", number)

    def webhook_outbox(self, receiver: str) -> str:
        return self._k("webhook_outbox", receiver)

    def webhook_dead(self, receiver: str) -> str:
        return self._k("webhook_dead", receiver)

    def rq_queue_name(self, name: str) -> str:
        # rq builds its own keys from this name; it stays recognisable as ours.
        return f"{self.prefix}:{_LAYOUT['rq_prefix']}:{name}"

    def rq_id_prefix(self) -> str:
        """The start of our rq job ids and worker names. rq names a job's keys after its id
        (``rq:job:<id>``, ``rq:results:<id>``) and allows only letters, digits, ``_`` and ``-``
        in it, so the prefix is spelled with those: every rq key of ours then carries it."""
        return re.sub(r"[^A-Za-z0-9_-]", "-", self.prefix)

    def pattern(self) -> str:
        """A SCAN pattern for every key of this installation (tests use it to clean up)."""
        return self.tag.replace("{", "\\{").replace("}", "\\}") + ":*"

    def jobs_cursor(self) -> str:
        return self._k("jobs_cursor")

    def webhook_job(self, receiver: str) -> str:
        return self._k("webhook_job", receiver)

    def webhook_lock(self, receiver: str) -> str:
        return self._k("webhook_lock", receiver)

    def report_job(self) -> str:
        return self._k("report_job")

    def session(self, digest: str) -> str:
        return self._k("session", digest)

    def user_sessions(self, user: str) -> str:
        return self._k("user_sessions", user)

    def leader(self) -> str:
        return self._k("leader")

    def outage(self, outage_id: str) -> str:
        return self._k("outage", outage_id)

    def outages(self) -> str:
        return self._k("outages")

    def outages_active(self) -> str:
        return self._k("outages_active")

    def held(self, outage_id: str) -> str:
        return self._k("held", outage_id)


def lua_prelude() -> str:
    """Lua functions ``K.<name>(part)`` building the same key names, from ``ARGV[1]`` (the tag)."""
    lines = ["local TAG = ARGV[1]", "local K = {}"]
    for name, suffix in _LAYOUT.items():
        if "%s" in suffix:
            head, tail = suffix.split("%s")
            lines.append(
                f"K.{name} = function(part) return TAG .. ':{head}' .. part .. '{tail}' end"
            )
        else:
            lines.append(f"K.{name} = function() return TAG .. ':{suffix}' end")
    return "\n".join(lines) + "\n"
