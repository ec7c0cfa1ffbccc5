"""What a request that cannot be served gets: a JSON error naming the problem, never a trace.

Every handler, the sign-in and the API alike, checks its input with ``json_body`` and
``text_field`` and refuses with ``ApiError(status, code, message)``; the ``json_errors``
middleware turns that, Redis being down (``QueueUnavailable``: 503) and aiohttp's own
404/405/413 under ``/api/`` into ``{"error": code, "message": ...}``, and anything unexpected
into a 500 whose details go to the dialer's log only. Kept apart from the handlers so that
sign-in (sessions) and the API share it without importing each other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ..logs import get_logger
from ..phone import clean_text
from ..queue.store import QueueUnavailable

log = get_logger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def error_response(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message)
    except QueueUnavailable as exc:
        return error_response(503, "redis_unavailable", str(exc))
    except web.HTTPException as exc:
        if request.path.startswith("/api/") and exc.status >= 400:
            code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
                exc.status, f"http_{exc.status}"
            )
            return error_response(
                exc.status, code, f"{exc.reason}: {request.method} {request.path}"
            )
        raise
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("status page request failed", path=request.path, method=request.method)
        return error_response(500, "internal", "internal error; see the dialer's log")


async def json_body(request: web.Request, allowed: tuple[str, ...]) -> dict[str, Any]:
    """The request's JSON object with only ``allowed`` keys; an empty body is ``{}``."""
    if not request.body_exists:
        return {}
    if request.content_type != "application/json":
        raise ApiError(
            415,
            "unsupported_media_type",
            "send the body as JSON with Content-Type: application/json",
        )
    try:
        data = await request.json()
    except ValueError:
        raise ApiError(400, "bad_json", "the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ApiError(400, "bad_json", "the body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ApiError(
            400,
            "unknown_field",
            f"unknown field {unknown[0]!r}; allowed: " + (", ".join(allowed) or "none"),
        )
    return data


def text_field(data: dict[str, Any], name: str, *, required: bool, limit: int) -> str:
    """A text field, cleaned (``phone.clean_text``: one line, no control or bidi characters)
    before it is checked, so what is stored is what was checked."""
    value = data.get(name)
    if value is None:
        if required:
            raise ApiError(400, "missing_field", f"{name} is required")
        return ""
    if not isinstance(value, str):
        raise ApiError(400, "bad_field", f"{name} must be a string")
    value = clean_text(value)
    if required and not value:
        raise ApiError(400, "missing_field", f"{name} must not be empty")
    if len(value) > limit:
        raise ApiError(
            400, "too_long", f"{name} may have at most {limit} characters, got {len(value)}"
        )
    return value
