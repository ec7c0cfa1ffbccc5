"""The OpenAPI 3.1 document of the JSON API, served at ``/api/openapi.json``.

Written by hand next to the handlers (``web.api``); a test checks that every route under
``/api`` is documented here and that the document is valid, and validates real answers
against these schemas.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..config import Config
from .auth import CSRF_HEADER, SESSION_COOKIE

STATES = ["pending", "scheduled", "dialing", "held", "done", "failed", "cancelled"]
STATE_FILTERS = [*STATES, "open", "waiting", "finished"]
SOURCES = ["abandon", "ivr_hangup", "timeout", "explicit", "manual"]
STAGES = ["claimed", "ringing_agent", "ringing_customer", "talking"]
AGENT_STATES = [
    "free",
    "ringing",
    "talking",
    "wrapup",
    "paused",
    "unavailable",
    "cooldown",
    "reserved",
]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(
    props: dict[str, Any], required: list[str] | None = None, extra: bool = False
) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": extra,
    }


def _arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


S = {"type": "string"}
N = {"type": "number"}
I = {"type": "integer"}  # noqa: E741
B = {"type": "boolean"}
N_OR_NULL = {"type": ["number", "null"]}
COUNTS = {"type": "object", "additionalProperties": I}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


COMMON_ERRORS = {
    "401": _err("Not signed in (or the reverse proxy named no user)."),
    "503": _err("Redis cannot be reached; the message says why. Nothing was changed."),
}
ACTION_ERRORS = {
    **COMMON_ERRORS,
    "400": _err("Bad input; the message names the field and what is allowed. Nothing was changed."),
    "403": _err(
        "CSRF token missing or wrong, a request from another site, or a viewer "
        "trying to act (supervisors only). Nothing was changed."
    ),
    "415": _err("The body is not JSON (send Content-Type: application/json)."),
}


def _get(
    summary: str,
    schema: dict[str, Any],
    *,
    params: list[Any] | None = None,
    errors: dict[str, Any] | None = None,
    description: str = "",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "responses": {"200": _json(schema, "OK"), **COMMON_ERRORS, **(errors or {})},
    }
    if description:
        op["description"] = description
    if params:
        op["parameters"] = params
    return {"get": op}


def _post(
    summary: str,
    schema: dict[str, Any],
    *,
    body: dict[str, Any] | None = None,
    status: str = "200",
    params: list[Any] | None = None,
    errors: dict[str, Any] | None = None,
    description: str = "",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": [{"$ref": "#/components/parameters/CsrfToken"}, *(params or [])],
        "responses": {status: _json(schema, "Done"), **ACTION_ERRORS, **(errors or {})},
    }
    if description:
        op["description"] = description
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return {"post": op}


ID_PARAM = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": S,
    "description": "A callback id, e.g. cb-42.",
}
NOT_FOUND = {"404": _err("No callback with this id.")}
CONFLICT = {
    "409": _err(
        "The callback is finished (or being called right now, for call-now); nothing was changed."
    )
}


def _schemas(config: Config) -> dict[str, Any]:
    categories = list(config.category_names())
    callback_props = {
        "id": S,
        "number": {
            "type": "string",
            "description": "The number called back: E.164, or masked for viewers (+7•••••••••67).",
        },
        "caller_id": {
            "type": "string",
            "description": "The number the missed call came from, when the caller asked in the"
            " IVR to be called back on another one (`number`); empty when they are the same."
            " Masked for viewers like `number`.",
        },
        "promised_by": {
            "type": ["number", "null"],
            "description": "When the IVR's offer told the caller we would call back by (Unix"
            " time; null: no promise was made). Compare with first_dialed_at.",
        },
        "name": {"type": "string", "description": "As the PBX gave it: raw text, never HTML."},
        "category": S,
        "source": {"enum": SOURCES},
        "state": {"enum": STATES},
        "reason": S,
        "first_missed": N,
        "last_missed": N,
        "missed_count": I,
        "attempts": I,
        "next_at": N_OR_NULL,
        "closed_at": N_OR_NULL,
        "agent": S,
        "stage": S,
        "pinned": B,
        "note": S,
        "outage": {
            "type": "string",
            "description": "The outage that held it (kept after release or drop); '' if none.",
        },
        "attempt_log": _arr(_ref("Attempt")),
        "first_dialed_at": N_OR_NULL,
        "day": {"type": "string", "description": "Local date of the first missed call."},
        "position": {"type": "integer", "description": "Place in the take order (waiting)."},
    }
    fates = {
        "callbacks": I,
        "called_back": I,
        "served_inbound": I,
        "served_outbound": I,
        "failed": I,
        "failed_by_reason": COUNTS,
        "cancelled": I,
        "open": I,
        "success_rate": {
            "type": ["number", "null"],
            "description": "called_back / (called_back + failed)",
        },
        "time_to_callback": _obj(
            {"count": I, "median_seconds": N_OR_NULL, "p90_seconds": N_OR_NULL}
        ),
        "within_target": _obj({"count": I, "of": I, "share": N_OR_NULL}),
    }
    hourly = {"type": "array", "items": N, "minItems": 24, "maxItems": 24}
    return {
        "Error": _obj(
            {
                "error": {"type": "string", "description": "A stable code."},
                "message": {
                    "type": "string",
                    "description": "What is wrong, in words, naming the field.",
                },
            }
        ),
        "Attempt": _obj({"at": N, "agent": S, "outcome": S, "talk_seconds": N, "counted": B}),
        "Callback": _obj(callback_props, required=[k for k in callback_props if k != "position"]),
        "CallbackList": _obj({"callbacks": _arr(_ref("Callback")), "count": I}),
        "HistoryEntry": _obj(
            {
                "at": N,
                "event": S,
                "state": S,
                "reason": S,
                "actor": {
                    "type": "string",
                    "description": "Who did it: web:<user> for people, or system, dispatcher, pbx.",
                },
                "detail": {"type": "object"},
            }
        ),
        "CallbackDetail": _obj(
            {"callback": _ref("Callback"), "history": _arr(_ref("HistoryEntry"))}
        ),
        "ActionResult": _obj(
            {
                "result": {"enum": ["ok", "created", "merged"]},
                "callback": _ref("Callback"),
                "previous_state": S,
            },
            required=["result", "callback"],
        ),
        "Agent": _obj(
            {
                "interface": S,
                "name": S,
                "state": {"enum": AGENT_STATES},
                "paused_reason": S,
                "queues": _arr(S),
                "categories": _arr(S),
                "since": N,
                "reserved_for": S,
            }
        ),
        "AgentList": _obj({"agents": _arr(_ref("Agent"))}),
        "LiveQueue": _obj(
            {
                "queue": S,
                "waiting": {"type": "integer", "description": "Live callers waiting now."},
                "longest_wait_seconds": {
                    "type": "number",
                    "description": "How long the longest-waiting of them has held.",
                },
                "oldest_joined_at": N_OR_NULL,
                "logged_in": I,
                "agents_free": I,
                "agents_on_live": {"type": "integer", "description": "On a queue call now."},
                "agents_on_callbacks": {"type": "integer", "description": "On our callbacks."},
                "agents_paused": I,
            }
        ),
        "HoldingOff": _obj(
            {
                "agent": S,
                "queue": S,
                "reason": {"enum": ["live_caller_ahead", "max_callback_share", "reserve_agents"]},
                "waiting": I,
                "longest_wait_seconds": N,
                "detail": {"type": "string", "description": "Why, in words."},
            }
        ),
        "LiveQueues": _obj(
            {
                "queues": _arr(_ref("LiveQueue")),
                "holding_off": {
                    **_arr(_ref("HoldingOff")),
                    "description": "Free agents left to Asterisk's queue for live callers by "
                    "the last dispatch pass (README, Callbacks and live callers).",
                },
                "holding_since": N_OR_NULL,
                "callback_handicap_seconds": N,
            }
        ),
        "InProgress": _obj(
            {
                "id": S,
                "agent": S,
                "agent_name": S,
                "number": S,
                "name": S,
                "category": S,
                "stage": {"enum": STAGES},
                "since": N,
                "started_at": N,
                "adopted": {
                    "type": "boolean",
                    "description": "Placed by a previous run or a replaced leader, found up in "
                    "Asterisk and followed to its end by this dialer.",
                },
            }
        ),
        "InProgressList": _obj({"in_progress": _arr(_ref("InProgress"))}),
        "Dispatch": _obj(
            {
                "paused": B,
                "paused_by": S,
                "paused_reason": S,
                "alarm": S,
                "dispatching": B,
                "blocked_by": {
                    "type": "string",
                    "description": "Why nothing is dialled now: standby (another "
                    "dialer holds the leader lease), paused, stopping, "
                    "ami_down, resyncing, outside_calling_hours; "
                    "empty when "
                    "dialling.",
                },
                "instance": {"type": "string", "description": "This dialer's name."},
                "leader": {
                    "type": "string",
                    "description": "The dialer holding the leader lease (the one that "
                    "dispatches); empty when none does.",
                },
            }
        ),
        "CategoryStats": _obj({"category": S, "label": S, "label_ru": S, "missed": I, **fates}),
        "Stats": _obj(
            {
                "day": S,
                "today": B,
                "target_seconds": N,
                "missed": _obj({"total": I, "by_category": COUNTS, "by_source": COUNTS}),
                "self_service": _obj({"total": I, "by_reason": COUNTS, "by_category": COUNTS}),
                **fates,
                "by_category": _arr(_ref("CategoryStats")),
                "hourly": _obj(
                    {
                        "missed": hourly,
                        "dialed": hourly,
                        "called_back": hourly,
                        "week_missed": hourly,
                        "week_called_back": hourly,
                    },
                    required=["missed", "dialed", "called_back"],
                ),
            }
        ),
        "Session": _obj(
            {
                "user": S,
                "role": {"enum": ["viewer", "supervisor"]},
                "can_act": B,
                "masked": B,
                "csrf_token": S,
                "auth": {"enum": ["users", "proxy", "none"]},
                "language": {"enum": ["en", "ru"]},
                "timezone": S,
                "target_seconds": N,
                "target_share": N,
                "outage_release_per_hour": I,
                "categories": _arr(_obj({"name": {"enum": categories}, "label": S, "label_ru": S})),
            }
        ),
        "FailedJob": _obj({"id": S, "description": S, "failed_at": N_OR_NULL, "error": S}),
        "ParkedEvent": _obj(
            {
                "receiver": S,
                "url": S,
                "event_id": S,
                "event": S,
                "callback_id": S,
                "status": I,
                "error": S,
                "parked_at": N,
            }
        ),
        "Receiver": _obj({"receiver": S, "url": S, "waiting": I, "parked": I, "delivering": B}),
        "Report": _obj(
            {"day": S, "files": _arr(_obj({"name": S, "kind": S, "bytes": I, "url": S}))}
        ),
        "Jobs": _obj(
            {
                "available": B,
                "error": S,
                "counts": _obj(
                    {
                        "queued": I,
                        "started": I,
                        "scheduled": I,
                        "failed": I,
                        "webhooks_waiting": I,
                        "webhooks_parked": I,
                    }
                ),
                "failed": _arr(_ref("FailedJob")),
                "parked": _arr(_ref("ParkedEvent")),
                "receivers": _arr(_ref("Receiver")),
                "reports": _arr(_ref("Report")),
            },
            required=["available"],
        ),
        "Snapshot": _obj(
            {
                "now": N,
                "clock_rate": N,
                "day": S,
                "dispatch": _ref("Dispatch"),
                "health": _obj({"ami": B, "ami_error": S, "redis": B, "redis_error": S}),
                "waiting": _arr(_ref("Callback")),
                "waiting_total": I,
                "oldest_waiting_since": N_OR_NULL,
                "in_progress": _arr(_ref("InProgress")),
                "agents": _arr(_ref("Agent")),
                "live": _ref("LiveQueues"),
                "counts": {"type": "object", "additionalProperties": COUNTS},
                "outages": _arr(_ref("Outage")),
            }
        ),
        "Outage": _obj(
            {
                "id": S,
                "state": {"enum": ["active", "ending", "ended"]},
                "categories": _arr(S),
                "prefixes": _arr(S),
                "areas": _arr(S),
                "message": S,
                "expected_end": N_OR_NULL,
                "declared_by": S,
                "declared_at": N,
                "end_choice": {"enum": ["", "drop", "release"]},
                "release_per_hour": I,
                "ended_by": S,
                "ended_at": N_OR_NULL,
                "held": {"type": "integer", "description": "Callbacks it held, in all."},
                "released": I,
                "dropped": I,
                "waiting": {"type": "integer", "description": "Callbacks it holds now."},
            }
        ),
        "OutageResult": _obj(
            {"result": {"enum": ["declared", "exists", "ok"]}, "outage": _ref("Outage")}
        ),
    }


def build_openapi(config: Config) -> dict[str, Any]:
    categories = list(config.category_names())
    day_param = {
        "name": "day",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
        "description": "A local date (calling-hours time zone), YYYY-MM-DD.",
    }
    text_body = {"type": "string", "maxLength": 200}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "callback-dialer status API",
            "version": __version__,
            "description": (
                "The status page's own API. Sign in as on the page: with [web] auth = "
                f'"users", POST /login (form or JSON) sets the `{SESSION_COOKIE}` cookie '
                "(a session kept on the server: POST /logout ends it for good; it also ends "
                "after [web] session_idle unused and session_max after sign-in); "
                'with "proxy", the reverse proxy names the user in '
                f'`{config.web.proxy_user_header}`; with "none" everyone is a supervisor.\n\n'
                f"Every POST needs the `{CSRF_HEADER}` header: take `csrf_token` from "
                "GET /api/session (it is tied to your user and the `cbd_csrf` cookie, so keep "
                "the cookies). Viewers may read everything (numbers masked when [web] "
                "mask_numbers_for_viewers) and get 403 on every action.\n\n"
                'Errors are JSON `{"error": code, "message": text}`; on any 4xx nothing '
                "was changed. Times are Unix epoch seconds."
            ),
        },
        "components": {
            "schemas": _schemas(config),
            "parameters": {
                "CsrfToken": {
                    "name": CSRF_HEADER,
                    "in": "header",
                    "required": True,
                    "schema": S,
                    "description": "csrf_token from GET /api/session.",
                },
            },
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": SESSION_COOKIE},
                "proxy": {"type": "apiKey", "in": "header", "name": config.web.proxy_user_header},
                "metrics_token": {"type": "http", "scheme": "bearer"},
            },
        },
        "security": [{"session": []}, {"proxy": []}, {}],
        "paths": {
            "/api/session": _get(
                "Who am I, my CSRF token, and the page's settings", _ref("Session")
            ),
            "/api/callbacks": {
                **_get(
                    "Callbacks, filtered",
                    _ref("CallbackList"),
                    params=[
                        {
                            "name": "state",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": STATE_FILTERS},
                            "description": "open = waiting + dialing; "
                            "waiting = pending + scheduled (in take order); "
                            "finished = done + failed + cancelled.",
                        },
                        {
                            "name": "category",
                            "in": "query",
                            "required": False,
                            "schema": {"enum": categories},
                        },
                        day_param,
                        {
                            "name": "number",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "maxLength": 64},
                            "description": "Every callback this number had, open and "
                            "finished, newest first; any spelling the phone policy accepts "
                            "(89161234567, +7 916 123-45-67).",
                        },
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {
                                "type": "integer",
                                "minimum": 1,
                                "maximum": 1000,
                                "default": 200,
                            },
                        },
                    ],
                    errors={"400": _err("Unknown state or category, bad day, number or limit.")},
                    description=(
                        "With `day`: the callbacks first missed that day, in the order of "
                        "their first missed call. Without: open callbacks from the live queue "
                        "(waiting ones in the order they will be called, then those being "
                        "called) and callbacks finished within the last 24 hours."
                    ),
                ),
                **_post(
                    "Add a callback by hand",
                    _ref("ActionResult"),
                    status="201",
                    body=_obj(
                        {
                            "number": {
                                "type": "string",
                                "maxLength": 32,
                                "description": "Any spelling the phone policy accepts: "
                                "+79161234567, 89161234567, +7 916 123-45-67; stored as "
                                "E.164.",
                            },
                            "category": {"enum": categories},
                            "name": {"type": "string", "maxLength": 64},
                            "note": {"type": "string", "maxLength": 500},
                        },
                        required=["number", "category"],
                    ),
                    errors={
                        "200": _json(
                            _ref("ActionResult"),
                            "The number already had an open callback; this "
                            "call joined it (result: merged).",
                        )
                    },
                    description="Recorded with source manual and you as the actor.",
                ),
            },
            "/api/callbacks/{id}": _get(
                "One callback and its history",
                _ref("CallbackDetail"),
                params=[ID_PARAM],
                errors=NOT_FOUND,
            ),
            "/api/callbacks/{id}/call-now": _post(
                "Call this one next (to the head of its category)",
                _ref("ActionResult"),
                params=[ID_PARAM],
                errors={**NOT_FOUND, **CONFLICT},
            ),
            "/api/callbacks/{id}/cancel": _post(
                "Cancel, with a reason",
                _ref("ActionResult"),
                params=[ID_PARAM],
                body=_obj({"reason": {**text_body, "minLength": 1}}),
                errors={**NOT_FOUND, **CONFLICT},
                description="A call in progress for it is hung up.",
            ),
            "/api/callbacks/{id}/category": _post(
                "Change the category",
                _ref("ActionResult"),
                params=[ID_PARAM],
                body=_obj({"category": {"enum": categories}}),
                errors={**NOT_FOUND, **CONFLICT},
            ),
            "/api/in-progress": _get("Callbacks being called now", _ref("InProgressList")),
            "/api/agents": _get("Agents and their states", _ref("AgentList")),
            "/api/live-queues": _get(
                "Callers waiting live in Asterisk's queues, and agents left to them",
                _ref("LiveQueues"),
            ),
            "/api/stats": _get(
                "The numbers of one day (default today)",
                _ref("Stats"),
                params=[day_param],
                errors={"400": _err("Not a date like 2026-11-23.")},
            ),
            "/api/dispatch": _get("Is the dialer calling back?", _ref("Dispatch")),
            "/api/dispatch/pause": _post(
                "Pause calling back",
                _ref("Dispatch"),
                body=_obj({"reason": text_body}, required=[]),
            ),
            "/api/dispatch/resume": _post("Resume calling back", _ref("Dispatch")),
            "/api/outages": {
                **_get("Outages: active and ending first", _obj({"outages": _arr(_ref("Outage"))})),
                **_post(
                    "Declare an outage: the missed calls it covers are held, not dialled",
                    _ref("OutageResult"),
                    status="201",
                    body=_obj(
                        {
                            "categories": _arr({"enum": categories}),
                            "prefixes": _arr(
                                {"type": "string", "description": "E.164 start, +7495123"}
                            ),
                            "areas": _arr({"type": "string", "description": "CRM area names"}),
                            "message": text_body,
                            "expected_end": N_OR_NULL,
                        },
                        required=[],
                    ),
                    errors={"400": _err("An unknown category, a bad prefix or time.")},
                    description=(
                        "No categories: [outage] default_categories. No prefixes and no "
                        "areas: every caller of those categories."
                    ),
                ),
            },
            "/api/outages/{id}/end": _post(
                "End an outage: drop its held callbacks or release them, capped per hour",
                _ref("OutageResult"),
                params=[{"name": "id", "in": "path", "required": True, "schema": S}],
                body=_obj(
                    {
                        "choice": {"enum": ["drop", "release"]},
                        "per_hour": {"type": ["integer", "null"], "minimum": 0},
                    },
                    required=["choice"],
                ),
                errors={
                    "404": _err("No outage with this id."),
                    "409": _err("The outage has ended already."),
                },
            ),
            "/api/jobs": _get(
                "Side jobs: failed jobs, refused webhook events, reports", _ref("Jobs")
            ),
            "/api/jobs/{job_id}/rerun": _post(
                "Run a failed job again, with all its tries",
                _obj({"rerun": I}),
                params=[{"name": "job_id", "in": "path", "required": True, "schema": S}],
                errors={"404": _err("No failed job with this id.")},
            ),
            "/api/jobs/rerun-failed": _post("Run every failed job again", _obj({"rerun": I})),
            "/api/webhooks/rerun-parked": _post(
                "Send refused webhook events again", _obj({"rerun": I})
            ),
            "/api/reports": {
                **_get(
                    "Daily reports on disk, newest first", _obj({"reports": _arr(_ref("Report"))})
                ),
                **_post(
                    "Make (or make again) the report of a day",
                    _ref("Report"),
                    status="201",
                    body=_obj({"day": {"type": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}}),
                ),
            },
            "/api/sessions/end": _post(
                "Sign a user out everywhere",
                _obj({"user": S, "ended": I}),
                body=_obj({"user": {"type": "string", "maxLength": 64}}, required=[]),
                errors={"404": _err("No such user, or [web] auth keeps no sessions.")},
                description=(
                    "Ends every session of `user` (default: you) on every dialer serving the "
                    "page: their cookies stop working at once and open pages are told within "
                    "seconds. Supervisors only."
                ),
            ),
            "/api/stream": {
                "get": {
                    "summary": "Live updates (server-sent events)",
                    "description": (
                        "text/event-stream. Events: `snapshot` (Snapshot), `stats` (Stats of "
                        "today), `jobs` (Jobs), `ping` every 15 s, `expired` when the session "
                        "ends. Each event carries the whole current state; reconnect at will."
                    ),
                    "responses": {
                        "200": {
                            "description": "The stream",
                            "content": {"text/event-stream": {"schema": S}},
                        },
                        **COMMON_ERRORS,
                    },
                }
            },
            "/login": {
                "post": {
                    "summary": 'Sign in ([web] auth = "users")',
                    "security": [{}],
                    "description": (
                        "Sets the session cookie (and a device cookie: this browser signed in "
                        "before). Every try is counted when it starts, per address and user, "
                        "per user and per address; past five wrong passwords (ten for a user "
                        "from anywhere, twenty from one address) each try must wait longer "
                        "than the last: 15 s, doubling up to 15 min (429 with Retry-After), "
                        "never a lock-out. A browser holding this user's device cookie is "
                        "counted on its own, so others' guessing cannot keep it out. At most "
                        "two passwords are checked at once; when many more wait, 503 with "
                        "Retry-After."
                    ),
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {"schema": _obj({"user": S, "password": S})}
                        },
                    },
                    "responses": {
                        "200": _json(
                            _obj(
                                {
                                    "user": S,
                                    "role": {"enum": ["viewer", "supervisor"]},
                                    "csrf_token": S,
                                }
                            ),
                            "Signed in",
                        ),
                        "400": _err("user or password missing"),
                        "401": _err("Wrong user name or password."),
                        "429": _json(
                            _obj(
                                {"error": S, "message": S, "retry_after": I},
                                required=["error", "message"],
                            ),
                            "Too many wrong passwords: wait retry_after seconds.",
                        ),
                        "503": _err("Too many sign-ins wait for a password check; try again."),
                    },
                }
            },
            "/api/openapi.json": {
                "get": {
                    "summary": "This document",
                    "description": (
                        "Open to anyone unless [web] public leaves out openapi; then it "
                        "needs a sign-in or Authorization: Bearer <[web] metrics_token> "
                        "(as /metrics and /healthz do when they are left out)."
                    ),
                    "security": [{}, {"session": []}, {"metrics_token": []}],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                }
            },
        },
    }
