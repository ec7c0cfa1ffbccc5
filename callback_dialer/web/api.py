"""The JSON API under ``/api`` (documented in ``web.openapi``).

Every handler checks its whole input before it touches anything: a bad request gets a 4xx
whose message names the field and what is allowed, and changes nothing. Reads go through
``StatusSource``, actions through ``Commands`` (``web.ports``). Actions need a supervisor; the
queue records the actor (``web:<user>``) in the callback's history.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import Config
from ..jobs import reports as report_jobs
from ..logs import get_logger
from ..phone import NumberPolicy, Rejected, clean_name
from ..queue.models import FINISHED_STATES, OPEN_STATES, Callback, OutageEnd, State
from ..queue.store import ActionResult, QueueInputError
from .errors import ApiError, json_body, text_field
from .live import LiveHub
from .openapi import STATE_FILTERS
from .pages import Pages
from .sessions import Sessions, principal, require_supervisor, session_of
from .sidejobs import SideJobsView
from .stats import day_summary
from .views import Views

if TYPE_CHECKING:
    from .ports import Commands, StatusSource

log = get_logger(__name__)

MAX_REASON = 200
MAX_NAME = 64
MAX_NOTE = 500
MAX_OUTAGE_MESSAGE = 300
DEFAULT_LIMIT = 200
MAX_LIMIT = 1000
RECENT_FINISHED = 86400.0
# The queue names callbacks cb-<n>; anything else cannot exist, and must never become part
# of a Redis key (an id like "1:history" would address another record).
_CALLBACK_ID = re.compile(r"^cb-\d{1,18}$", re.ASCII)


class Api:
    def __init__(
        self,
        config: Config,
        status: StatusSource,
        commands: Commands,
        *,
        views: Views,
        pages: Pages,
        sessions: Sessions,
        side_jobs: SideJobsView,
        hub: LiveHub,
        openapi: dict[str, Any],
    ) -> None:
        self.config = config
        self.status = status
        self.commands = commands
        self.views = views
        self.pages = pages
        self.sessions = sessions
        self.side_jobs = side_jobs
        self.hub = hub
        self.document = openapi
        self.numbers = NumberPolicy(config.phone)

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/api/session", self.session),
            web.get("/api/callbacks", self.list_callbacks),
            web.post("/api/callbacks", self.add_callback),
            web.get("/api/callbacks/{id}", self.get_callback),
            web.post("/api/callbacks/{id}/call-now", self.call_now),
            web.post("/api/callbacks/{id}/cancel", self.cancel),
            web.post("/api/callbacks/{id}/category", self.set_category),
            web.get("/api/in-progress", self.in_progress),
            web.get("/api/agents", self.agents),
            web.get("/api/live-queues", self.live_queues),
            web.get("/api/stats", self.stats),
            web.get("/api/dispatch", self.dispatch),
            web.post("/api/dispatch/pause", self.pause),
            web.post("/api/dispatch/resume", self.resume),
            web.get("/api/jobs", self.jobs),
            web.post("/api/jobs/rerun-failed", self.rerun_all_failed),
            web.post("/api/jobs/{job_id}/rerun", self.rerun_failed),
            web.post("/api/webhooks/rerun-parked", self.rerun_parked),
            web.get("/api/outages", self.list_outages),
            web.post("/api/outages", self.declare_outage),
            web.post("/api/outages/{id}/end", self.end_outage),
            web.get("/api/reports", self.list_reports),
            web.post("/api/reports", self.make_report),
            web.post("/api/sessions/end", self.end_sessions),
            web.get("/api/stream", self.stream),
            web.get("/api/openapi.json", self.openapi),
        ]

    def masked(self, request: web.Request) -> bool:
        return self.views.masked_for(principal(request))

    # ------------------------------------------------------------------ reading

    async def session(self, request: web.Request) -> web.Response:
        who = principal(request)
        return web.json_response(
            {
                "user": who.user,
                "role": who.role,
                "can_act": who.is_supervisor,
                "masked": self.masked(request),
                "csrf_token": self.sessions.csrf_token_for(request),
                "auth": self.config.web.auth,
                "language": self.pages.language(request),
                "timezone": self.config.hours.timezone,
                "target_seconds": self.config.web.target,
                "target_share": self.config.web.target_share,
                "outage_release_per_hour": self.config.outage.release_per_hour,
                "categories": self.views.categories(),
            }
        )

    def _category_param(self, request: web.Request) -> str | None:
        category = request.query.get("category")
        if category is not None and category not in self.config.category_names():
            raise ApiError(
                400,
                "unknown_category",
                f"unknown category {category!r}; allowed: "
                + ", ".join(self.config.category_names()),
            )
        return category

    def _day_param(self, request: web.Request) -> str | None:
        day = request.query.get("day")
        if day is None:
            return None
        try:
            return report_jobs.check_day(day)
        except ValueError as exc:
            raise ApiError(400, "bad_day", str(exc)) from None

    async def list_callbacks(self, request: web.Request) -> web.Response:
        state = request.query.get("state")
        if state is not None and state not in STATE_FILTERS:
            raise ApiError(
                400, "bad_state", f"unknown state {state!r}; allowed: " + ", ".join(STATE_FILTERS)
            )
        category = self._category_param(request)
        day = self._day_param(request)
        raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
            raise ApiError(
                400,
                "bad_limit",
                f"limit must be a whole number from 1 to {MAX_LIMIT}, got {raw_limit!r}",
            )
        limit = int(raw_limit)
        wanted = _states(state)
        positioned = False
        number = self._number_param(request)
        if number is not None:
            # Any spelling of the number finds every callback it had, finished ones too.
            found = await self.status.callbacks_of(number)
            if day is not None:
                found = [cb for cb in found if cb.day == day]
        elif day is not None:
            found = sorted(await self.status.day_callbacks(day), key=lambda c: c.first_missed)
        else:
            found = []
            if wanted & {State.PENDING, State.SCHEDULED}:
                found += await self.status.waiting(limit, [category] if category else None)
                positioned = True
            if State.DIALING in wanted:
                found += await self.status.dialing()
            if State.HELD in wanted:
                found += await self.status.held_callbacks(limit)
            if wanted & set(FINISHED_STATES):
                now = self.status.now()
                found += await self.status.finished_between(now - RECENT_FINISHED, now)
        chosen = [
            cb
            for cb in found
            if cb.state in wanted and (category is None or cb.category == category)
        ]
        masked = self.masked(request)
        out = [
            self.views.callback(
                cb,
                masked,
                position=(i + 1)
                if positioned and cb.state in (State.PENDING, State.SCHEDULED)
                else None,
            )
            for i, cb in enumerate(chosen[:limit])
        ]
        return web.json_response({"callbacks": out, "count": len(out)})

    def _number_param(self, request: web.Request) -> str | None:
        raw = request.query.get("number")
        if raw is None:
            return None
        return self._number(raw[:64])

    def _number(self, raw: str) -> str:
        """The E.164 number of any spelling the phone policy accepts (89161234567,
        +7 916 123-45-67, (916) 1234567); a 400 naming the reason otherwise."""
        checked = self.numbers.normalize(raw)
        if isinstance(checked, Rejected):
            raise ApiError(
                400,
                "bad_number",
                f"number {raw!r} is refused: {checked.reason.value.replace('_', ' ')} "
                "(write it as you would dial it, e.g. +7 916 123-45-67 or 89161234567)",
            )
        return checked.e164

    def _callback_id(self, request: web.Request) -> str:
        callback_id = request.match_info["id"]
        if not _CALLBACK_ID.fullmatch(callback_id):
            raise ApiError(404, "not_found", f"no callback with id {callback_id!r}")
        return callback_id

    async def _callback_or_404(self, callback_id: str) -> Callback:
        cb = (
            await self.status.callback(callback_id) if _CALLBACK_ID.fullmatch(callback_id) else None
        )
        if cb is None:
            raise ApiError(404, "not_found", f"no callback with id {callback_id!r}")
        return cb

    async def get_callback(self, request: web.Request) -> web.Response:
        cb = await self._callback_or_404(request.match_info["id"])
        history = await self.status.history(cb.id)
        masked = self.masked(request)
        return web.json_response(
            {
                "callback": self.views.callback(cb, masked),
                "history": self.views.history(history, masked),
            }
        )

    async def in_progress(self, request: web.Request) -> web.Response:
        dialing = await self.status.dialing()
        return web.json_response(
            {
                "in_progress": self.views.in_progress(
                    self.status.attempts_in_progress(), dialing, self.masked(request)
                )
            }
        )

    async def agents(self, request: web.Request) -> web.Response:
        return web.json_response({"agents": self.views.agents(self.masked(request))})

    async def live_queues(self, request: web.Request) -> web.Response:
        return web.json_response(self.views.live(self.masked(request)))

    async def stats(self, request: web.Request) -> web.Response:
        now = self.status.now()
        day = self._day_param(request) or self.status.day_key(now)
        summary = await day_summary(self.status, self.config, day, now)
        return web.json_response(self.views.stats(summary, self.masked(request)))

    async def dispatch(self, request: web.Request) -> web.Response:
        return web.json_response(self.views.dispatch(self.masked(request)))

    # ------------------------------------------------------------------ actions

    async def _action_response(
        self, request: web.Request, result: ActionResult, callback_id: str, what: str
    ) -> web.Response:
        if result.result == "not_found":
            raise ApiError(404, "not_found", f"no callback with id {callback_id!r}")
        if result.result == "not_open":
            cb = result.callback or await self.status.callback(callback_id)
            state = cb.state.value if cb else "finished"
            raise ApiError(
                409,
                "not_open",
                f"callback {callback_id} is {state}; only open callbacks can {what}",
            )
        if result.result == "busy":
            raise ApiError(409, "busy", f"callback {callback_id} is being called right now")
        assert result.callback is not None
        return web.json_response(
            {
                "result": "ok",
                "callback": self.views.callback(result.callback, self.masked(request)),
                "previous_state": result.previous_state,
            }
        )

    async def call_now(self, request: web.Request) -> web.Response:
        who = require_supervisor(request)
        await json_body(request, ())
        callback_id = self._callback_id(request)
        result = await self.commands.call_now(callback_id, who.actor)
        response = await self._action_response(request, result, callback_id, "be called now")
        self.hub.poke()
        return response

    async def cancel(self, request: web.Request) -> web.Response:
        who = require_supervisor(request)
        data = await json_body(request, ("reason",))
        reason = text_field(data, "reason", required=True, limit=MAX_REASON)
        callback_id = self._callback_id(request)
        result = await self.commands.cancel(callback_id, reason, who.actor)
        response = await self._action_response(request, result, callback_id, "be cancelled")
        self.hub.poke()
        return response

    async def set_category(self, request: web.Request) -> web.Response:
        who = require_supervisor(request)
        data = await json_body(request, ("category",))
        category = text_field(data, "category", required=True, limit=64)
        callback_id = self._callback_id(request)
        try:
            result = await self.commands.set_category(callback_id, category, who.actor)
        except QueueInputError as exc:
            raise ApiError(400, "unknown_category", str(exc)) from None
        response = await self._action_response(request, result, callback_id, "change category")
        self.hub.poke()
        return response

    async def add_callback(self, request: web.Request) -> web.Response:
        who = require_supervisor(request)
        data = await json_body(request, ("number", "category", "name", "note"))
        number = text_field(data, "number", required=True, limit=32)
        category = text_field(data, "category", required=True, limit=64)
        name = text_field(data, "name", required=False, limit=MAX_NAME)
        note = text_field(data, "note", required=False, limit=MAX_NOTE)
        e164 = self._number(number)
        if category not in self.config.category_names():
            raise ApiError(
                400,
                "unknown_category",
                f"unknown category {category!r}; allowed: "
                + ", ".join(self.config.category_names()),
            )
        try:
            result = await self.commands.add_manual(
                e164, category, who.actor, name=clean_name(name, MAX_NAME), note=note
            )
        except QueueInputError as exc:
            raise ApiError(400, "bad_input", str(exc)) from None
        cb = await self._callback_or_404(result.id)
        self.hub.poke()
        return web.json_response(
            {
                "result": result.result,
                "callback": self.views.callback(cb, self.masked(request)),
                "previous_state": "",
            },
            status=201 if result.result == "created" else 200,
        )

    async def pause(self, request: web.Request) -> web.Response:
        who = require_supervisor(request)
        data = await json_body(request, ("reason",))
        reason = text_field(data, "reason", required=False, limit=MAX_REASON)
        await self.commands.pause(who.actor, reason)
        return web.json_response(self.views.dispatch(self.masked(request)))

    async def resume(self, request: web.Request) -> web.Response:
        who = require_supervisor(request)
        await json_body(request, ())
        await self.commands.resume(who.actor)
        return web.json_response(self.views.dispatch(self.masked(request)))

    # ------------------------------------------------------------------ outages

    async def list_outages(self, request: web.Request) -> web.Response:
        masked = self.masked(request)
        outages = await self.status.outages()
        return web.json_response({"outages": [self.views.outage(o, masked) for o in outages]})

    async def declare_outage(self, request: web.Request) -> web.Response:
        who = require_supervisor(request)
        data = await json_body(
            request, ("categories", "prefixes", "areas", "message", "expected_end")
        )

        def names(field: str) -> list[str]:
            value = data.get(field, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ApiError(400, "bad_field", f"{field} must be a list of strings")
            if len(value) > 200:
                raise ApiError(400, "bad_field", f"{field}: at most 200 entries")
            return [v.strip() for v in value if v.strip()]

        categories = names("categories")
        for category in categories:
            if category not in self.config.category_names():
                raise ApiError(
                    400,
                    "unknown_category",
                    f"unknown category {category!r}; allowed: "
                    + ", ".join(self.config.category_names()),
                )
        end = data.get("expected_end")
        if end is not None and (isinstance(end, bool) or not isinstance(end, int | float)):
            raise ApiError(400, "bad_field", "expected_end must be a Unix time or null")
        try:
            created, outage = await self.commands.declare_outage(
                who.actor,
                categories=categories,
                prefixes=names("prefixes"),
                areas=names("areas"),
                message=text_field(data, "message", required=False, limit=MAX_OUTAGE_MESSAGE),
                expected_end=float(end) if end is not None else None,
            )
        except QueueInputError as exc:
            raise ApiError(400, "bad_outage", str(exc)) from None
        shown = self.views.outage(outage, False)
        return web.json_response(
            {"result": "declared" if created else "exists", "outage": shown},
            status=201 if created else 200,
        )

    async def end_outage(self, request: web.Request) -> web.Response:
        who = require_supervisor(request)
        data = await json_body(request, ("choice", "per_hour"))
        choice = data.get("choice")
        if choice not in ("drop", "release"):
            raise ApiError(400, "bad_field", "choice must be drop or release")
        per_hour = data.get("per_hour")
        whole = isinstance(per_hour, int) and not isinstance(per_hour, bool)
        if per_hour is not None and (not whole or not 0 <= per_hour <= 100_000):
            raise ApiError(400, "bad_field", "per_hour must be a whole number 0-100000 or null")
        result, outage = await self.commands.end_outage(
            request.match_info["id"], OutageEnd(choice), who.actor, per_hour=per_hour
        )
        if result == "not_found":
            raise ApiError(404, "not_found", "no such outage")
        if result != "ok" or outage is None:
            raise ApiError(409, "not_active", "this outage has ended already")
        return web.json_response({"result": "ok", "outage": self.views.outage(outage, False)})

    # ------------------------------------------------------------------ side jobs

    async def jobs(self, request: web.Request) -> web.Response:
        full, masked = await self.side_jobs.jobs()
        return web.json_response(masked if self.masked(request) else full)

    async def _rerun(
        self, request: web.Request, run: Callable[[], Awaitable[int | bool]], what: str
    ) -> int:
        """A side-job re-run: a supervisor's, logged with who asked."""
        require_supervisor(request)
        await json_body(request, ())
        count = int(await run())
        log.info(what, count=count, by=principal(request).actor)
        self.hub.poke()
        return count

    async def rerun_failed(self, request: web.Request) -> web.Response:
        job_id = request.match_info["job_id"]
        if not await self._rerun(
            request,
            lambda: self.commands.rerun_failed_job(job_id),
            f"failed job {job_id} re-run",
        ):
            raise ApiError(404, "not_found", f"no failed job with id {job_id!r}")
        return web.json_response({"rerun": 1})

    async def rerun_all_failed(self, request: web.Request) -> web.Response:
        count = await self._rerun(request, self.commands.rerun_failed_jobs, "failed jobs re-run")
        return web.json_response({"rerun": count})

    async def rerun_parked(self, request: web.Request) -> web.Response:
        count = await self._rerun(
            request, self.commands.rerun_parked_events, "parked webhook events re-sent"
        )
        return web.json_response({"rerun": count})

    async def list_reports(self, request: web.Request) -> web.Response:
        return web.json_response({"reports": await self.side_jobs.reports(self.masked(request))})

    async def make_report(self, request: web.Request) -> web.Response:
        require_supervisor(request)
        data = await json_body(request, ("day",))
        day = text_field(data, "day", required=True, limit=10)
        try:
            report_jobs.check_day(day)
        except ValueError as exc:
            raise ApiError(400, "bad_day", str(exc)) from None
        files = await self.commands.make_report(day)
        log.info("report made on request", day=day, by=principal(request).actor)
        self.hub.poke()
        return web.json_response(self.side_jobs.report_entry(files), status=201)

    # ------------------------------------------------------------------ sessions

    async def end_sessions(self, request: web.Request) -> web.Response:
        """Sign a user out everywhere (default: yourself), e.g. after a laptop went missing."""
        who = require_supervisor(request)
        data = await json_body(request, ("user",))
        user = text_field(data, "user", required=False, limit=64) or who.user
        book = self.sessions.book
        if book is None or self.config.web.auth != "users":
            raise ApiError(
                404,
                "no_sessions",
                f"[web] auth is {self.config.web.auth!r}; the page keeps no sessions",
            )
        if user not in book.users:
            raise ApiError(404, "not_found", f"no user {user!r} in [web] users")
        ended = await book.end_all(user)
        log.info("sessions ended", user=user, sessions=ended, by=who.actor)
        return web.json_response({"user": user, "ended": ended})

    # ------------------------------------------------------------------ the rest

    async def stream(self, request: web.Request) -> web.StreamResponse:
        session = session_of(request)
        return await self.hub.stream(
            request,
            self.masked(request),
            expires_at=session.ends_at if session is not None else None,
            # Signed out elsewhere, or ended by a supervisor: the open page learns it soon.
            still_valid=(lambda: self.sessions.still_signed_in(request)) if session else None,
        )

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(self.document)


def _states(state: str | None) -> set[State]:
    groups = {
        None: {*OPEN_STATES, *FINISHED_STATES},
        "open": set(OPEN_STATES),
        "waiting": {State.PENDING, State.SCHEDULED},
        "finished": set(FINISHED_STATES),
    }
    return groups[state] if state in groups else {State(state)}
