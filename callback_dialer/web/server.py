"""The status page server: aiohttp in the dialer's own event loop.

``WebServer(config, status, commands)`` is the listening side: the dialer runs it with its
other parts (it listens on ``[web] host:port`` until cancelled) and closes it when stopping
(the live streams end, then the listener). ``make_app`` builds the same application without
listening, for tests. The page knows the dialer only through ``status`` and ``commands``
(``web.ports``).

Routes:

- ``/``                    the page (HTML, ``/static/app.js``, ``/static/style.css``)
- ``/login``, ``/logout``  password sign-in ([web] auth = "users")
- ``/api/...``             the JSON API (``web.api``; OpenAPI at ``/api/openapi.json``)
- ``/api/stream``          live updates, server-sent events (``web.live``)
- ``/charts/hourly.svg``, ``/charts/categories.svg``   charts of a day (``?day=&lang=``)
- ``/reports/<file>``      a daily report download
- ``/metrics``             Prometheus text, no sign-in (holds no numbers or names)
- ``/healthz``             200 when Asterisk and Redis are up, 503 and the reasons otherwise

Security: sign-in and CSRF as ``web.auth`` describes; every answer carries a strict
Content-Security-Policy (only our own scripts, no inline script or handler), so even text that
slipped through unescaped could not run.
"""

from __future__ import annotations

import asyncio
import html
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from aiohttp import web

from ..config import Config
from ..jobs.reports import ReportFiles, check_day
from ..logs import get_logger
from ..metrics import Gauge
from ..phone import NumberPolicy
from ..queue.store import QueueUnavailable
from .api import Api, ApiError, error_response, json_body
from .auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    CSRF_SEED,
    CSRF_SEED_SECONDS,
    PRINCIPAL,
    ROTATE_SEED,
    SESSION_COOKIE,
    SESSION_EXPIRES,
    SESSION_SECONDS,
    Authority,
    Principal,
    new_csrf_seed,
)
from .charts import category_chart, hourly_chart
from .live import LiveHub
from .openapi import build_openapi
from .stats import day_summary
from .views import Views

if TYPE_CHECKING:
    from .ports import Commands, StatusSource

log = get_logger(__name__)

STATIC = resources.files(__package__).joinpath("static")
LANG_COOKIE = "cbd_lang"
LANGUAGES = ("en", "ru")
CHART_CACHE_SECONDS = 3.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sign-in and sign-out: browser forms whose CSRF token comes in the form (JSON sign-in needs
# none: a page on another site cannot send a JSON body without our consent).
FORM_PATHS = frozenset({"/login", "/logout"})
# Paths anyone may fetch: the sign-in page and its assets, and what monitoring scrapes.
PUBLIC_PATHS = frozenset(
    {"/login", "/healthz", "/metrics", "/api/openapi.json", "/favicon.ico", "/favicon.svg"}
)
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


# In the code rather than static/: the package data ships html, js, css and json only.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#2f7ed8"/>'
    '<path d="M10 7c1 0 2 3 2.5 4.5.3 1-.9 1.8-1.6 2.4 1.3 2.8 3.4 4.9 6.2 6.2.6-.7 1.4-1.9 '
    '2.4-1.6C21 19 24 20 24 21c0 2-2 4-4 4C13 25 7 19 7 12c0-2 2-5 3-5z" fill="#fff"/></svg>'
)


def _static_text(name: str) -> str:
    return STATIC.joinpath(name).read_text("utf-8")


class WebApp:
    """Everything the page's handlers share; one per dialer."""

    def __init__(self, config: Config, status: StatusSource, commands: Commands) -> None:
        self.config = config
        self.status = status
        self.commands = commands
        self.authority = Authority(config.web)
        self.views = Views(config, status)
        self.numbers = NumberPolicy(config.phone)
        self.strings: dict[str, dict[str, str]] = json.loads(_static_text("i18n.json"))
        self.openapi = build_openapi(config)
        self.hub = LiveHub(config, status, self.views, jobs=self.jobs_view)
        self._chart_cache: dict[tuple[str, bool], tuple[float, dict[str, Any]]] = {}
        self.api = Api(self)
        self._streams = Gauge(
            "callback_dialer_status_page_streams",
            "Status pages open right now.",
            (),
            self._stream_count,
        )

    async def _stream_count(self) -> list[tuple[tuple[str, ...], float]]:
        return [((), float(self.hub.watchers))]

    # ------------------------------------------------------------------ who, how

    def masked_for(self, who: Principal) -> bool:
        return who.role == "viewer" and self.config.web.mask_numbers_for_viewers

    def language(self, request: web.Request) -> str:
        chosen = request.query.get("lang") or request.cookies.get(LANG_COOKIE)
        return chosen if chosen in LANGUAGES else self.config.web.language

    def t(self, lang: str) -> dict[str, str]:
        return self.strings.get(lang, self.strings["en"])

    def csrf_token_for(self, request: web.Request) -> str:
        who: Principal | None = request.get(PRINCIPAL)
        return self.authority.csrf_token(who.user if who else "", request[CSRF_SEED])

    # ------------------------------------------------------------------ side jobs

    async def jobs_view(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Side jobs as (full, masked for viewers); a gateway's error text may hold a number."""
        jobs = await self.status.side_jobs()
        full = {
            "available": True,
            "error": "",
            "counts": asdict(jobs.counts),
            "failed": [asdict(j) for j in jobs.failed],
            "parked": [asdict(e) for e in jobs.parked],
            "receivers": [asdict(r) for r in jobs.receivers],
            "reports": [self.report_entry(r) for r in jobs.reports],
        }
        masked = json.loads(json.dumps(full))
        for row in masked["failed"] + masked["parked"]:
            row["error"] = self.views.text(row["error"], True)
        masked["reports"] = self.reports_for(full["reports"], masked=True)
        return full, masked

    def reports_for(self, entries: list[dict[str, Any]], masked: bool) -> list[dict[str, Any]]:
        if not (masked and self.config.web.mask_numbers_for_viewers):
            return entries
        # Reports hold every number in full: viewers see that they exist, not the files.
        return [{**r, "files": [{**f, "url": ""} for f in r["files"]]} for r in entries]

    def report_entry(self, files: ReportFiles) -> dict[str, Any]:
        out = []
        for path in files.paths():
            kind = "xlsx" if path.suffix == ".xlsx" else path.stem.split("-")[-1]
            kind = kind if kind in ("categories", "hours", "xlsx") else "calls"
            size = path.stat().st_size if path.is_file() else 0
            out.append(
                {
                    "name": path.name,
                    "kind": kind,
                    "bytes": size,
                    "url": f"/reports/{quote(path.name)}",
                }
            )
        return {"day": files.day, "files": out}

    async def reports(self, masked: bool) -> list[dict[str, Any]]:
        found = await self.status.reports()
        return self.reports_for([self.report_entry(r) for r in found], masked)

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
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

    @web.middleware
    async def security(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Outermost: headers on every answer (errors and redirects too) and the CSRF seed
        cookie for a browser that has none yet."""
        seed = request.cookies.get(CSRF_COOKIE)
        fresh_seed = not seed or len(seed) > 64
        request[CSRF_SEED] = new_csrf_seed() if fresh_seed else seed
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            self._decorate(request, exc, fresh_seed)
            raise
        if not response.prepared:
            self._decorate(request, response, fresh_seed)
        return response

    def _decorate(
        self, request: web.Request, response: web.StreamResponse, fresh_seed: bool
    ) -> None:
        headers = response.headers
        headers.setdefault("Content-Security-Policy", CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("Referrer-Policy", "same-origin")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Cache-Control", "no-store")
        if fresh_seed or request.get(ROTATE_SEED):
            response.set_cookie(
                CSRF_COOKIE,
                request[CSRF_SEED],
                max_age=CSRF_SEED_SECONDS,
                httponly=True,
                samesite="Strict",
                secure=self._secure(request),
                path="/",
            )

    @web.middleware
    async def authenticate(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Innermost (inside ``errors``): who is asking, and is a change really meant."""
        request[PRINCIPAL] = self._principal(request)
        self._guard(request)
        return await handler(request)

    def _principal(self, request: web.Request) -> Principal | None:
        mode = self.config.web.auth
        if mode == "none":
            return Principal(user="anonymous", role="supervisor")
        if mode == "proxy":
            return self.authority.proxy_principal(
                request.headers.get(self.config.web.proxy_user_header)
            )
        cookie = request.cookies.get(SESSION_COOKIE)
        who = self.authority.read_session(cookie)
        if who is not None:
            request[SESSION_EXPIRES] = self.authority.session_expires(cookie)
        return who

    def _guard(self, request: web.Request) -> None:
        path = request.path
        public = path in PUBLIC_PATHS or path.startswith("/static/")
        if request[PRINCIPAL] is None and not public:
            if self.config.web.auth == "proxy":
                raise ApiError(
                    401,
                    "unauthenticated",
                    "no user named by the reverse proxy "
                    f"(header {self.config.web.proxy_user_header})",
                )
            if path.startswith(("/api/", "/charts/", "/reports/")):
                raise ApiError(401, "unauthenticated", "sign in first (POST /login)")
            raise web.HTTPFound("/login")
        if request.method in SAFE_METHODS:
            return
        if not self._same_origin(request):
            raise ApiError(403, "cross_site", "request from another site refused")
        if path in FORM_PATHS:
            return  # these read their form first, then check its token (form_csrf_ok)
        who = request[PRINCIPAL]
        if not self.authority.csrf_ok(
            who.user if who else "",
            request.cookies.get(CSRF_COOKIE),
            request.headers.get(CSRF_HEADER),
        ):
            raise ApiError(
                403,
                "csrf",
                f"CSRF token missing or wrong: send {CSRF_HEADER} "
                "from GET /api/session (reload the page)",
            )

    def _same_origin(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True  # not a browser's cross-site request; the CSRF token decides
        hosts = {request.host}
        if self.config.web.auth == "proxy" and request.headers.get("X-Forwarded-Host"):
            hosts.add(request.headers["X-Forwarded-Host"].split(",")[0].strip())
        return urlsplit(origin).netloc in hosts

    @staticmethod
    def _secure(request: web.Request) -> bool:
        # Trusting the header only ever adds the Secure flag, which cannot weaken anything.
        return request.secure or request.headers.get("X-Forwarded-Proto", "") == "https"

    def form_csrf_ok(self, request: web.Request, form: Any) -> bool:
        who = request[PRINCIPAL]
        token = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        return self.authority.csrf_ok(
            who.user if who else "",
            request.cookies.get(CSRF_COOKIE),
            token if isinstance(token, str) else None,
        )

    # ------------------------------------------------------------------ pages

    async def index(self, request: web.Request) -> web.Response:
        lang = self.language(request)
        page = (
            _static_text("index.html")
            .replace("{{lang}}", lang)
            .replace("{{title}}", html.escape(self.t(lang)["title"]))
        )
        return web.Response(text=page, content_type="text/html", charset="utf-8")

    def _login_page(
        self, request: web.Request, message: str = "", status: int = 200, user: str = ""
    ) -> web.Response:
        lang = self.language(request)
        t = self.t(lang)
        values = {
            "lang": lang,
            "title": t["login_title"],
            "user_label": t["login_user"],
            "password_label": t["login_password"],
            "submit": t["login_submit"],
            "message": message,
            "user": user,
            "csrf": self.csrf_token_for(request),
            "next": "/",
        }
        page = _static_text("login.html")
        for key, value in values.items():
            page = page.replace("{{" + key + "}}", html.escape(value, quote=True))
        return web.Response(text=page, content_type="text/html", charset="utf-8", status=status)

    async def login_form(self, request: web.Request) -> web.Response:
        if self.config.web.auth != "users":
            raise web.HTTPFound("/")
        return self._login_page(request)

    async def login(self, request: web.Request) -> web.Response:
        """Form (the page) or JSON (API clients): user, password."""
        if self.config.web.auth != "users":
            raise ApiError(
                404,
                "no_login",
                f"[web] auth is {self.config.web.auth!r}; there is no password sign-in",
            )
        as_json = request.content_type == "application/json"
        if as_json:
            data = await json_body(request, ("user", "password"))
        else:
            data = dict(await request.post())
            if not self.form_csrf_ok(request, data):
                raise ApiError(403, "csrf", "CSRF token missing or wrong (reload the page)")
        user, password = data.get("user"), data.get("password")
        if not isinstance(user, str) or not isinstance(password, str) or not user:
            raise ApiError(400, "missing_field", "user and password are required")
        user = user.strip()[:64]
        address = request.remote or ""
        t = self.t(self.language(request))
        if self.authority.failures.blocked(address, user):
            log.warning("sign-in refused: too many wrong passwords", user=user, address=address)
            if as_json:
                raise ApiError(429, "throttled", "too many wrong passwords; wait a few minutes")
            return self._login_page(request, t["login_throttled"], 429, user)
        who = await self.authority.check_password(user, password)
        if who is None:
            self.authority.failures.failed(address, user)
            log.warning("sign-in failed", user=user, address=address)
            if as_json:
                raise ApiError(401, "bad_login", "wrong user name or password")
            return self._login_page(request, t["login_wrong"], 401, user)
        self.authority.failures.succeeded(address, user)
        cookie, _ = self.authority.make_session(who.user)
        log.info("signed in", user=who.user, role=who.role, address=address)
        # A new seed at sign-in: a token learnt before cannot serve the new session.
        request[ROTATE_SEED] = True
        request[CSRF_SEED] = new_csrf_seed()
        response: web.Response
        if as_json:
            response = web.json_response(
                {
                    "user": who.user,
                    "role": who.role,
                    "csrf_token": self.authority.csrf_token(who.user, request[CSRF_SEED]),
                }
            )
        else:
            response = _see_other("/")
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=SESSION_SECONDS,
            httponly=True,
            samesite="Lax",
            secure=self._secure(request),
            path="/",
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        form = (
            dict(await request.post())
            if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
            else {}
        )
        if not self.form_csrf_ok(request, form):
            raise ApiError(403, "csrf", "CSRF token missing or wrong (reload the page)")
        who = request[PRINCIPAL]
        log.info("signed out", user=who.user if who else "")
        request[ROTATE_SEED] = True
        request[CSRF_SEED] = new_csrf_seed()
        response = _see_other("/login" if self.config.web.auth == "users" else "/")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    async def chart(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        lang = self.language(request)
        now = self.status.now()
        day = request.query.get("day") or self.status.day_key(now)
        try:
            check_day(day)
        except ValueError as exc:
            raise ApiError(400, "bad_day", str(exc)) from None
        stats = await self._chart_stats(day, now, week=kind == "hourly")
        svg = (
            hourly_chart(stats, self.t(lang))
            if kind == "hourly"
            else category_chart(stats, self.t(lang), lang)
        )
        return web.Response(text=svg, content_type="image/svg+xml", charset="utf-8")

    async def _chart_stats(self, day: str, now: float, week: bool) -> dict[str, Any]:
        """Every open page fetches both charts after each stats update: they share one
        reading of the day for a few seconds instead of one each."""
        key = (day, week)
        cached = self._chart_cache.get(key)
        if cached is not None and time.monotonic() - cached[0] < CHART_CACHE_SECONDS:
            return cached[1]
        stats = await day_summary(self.status, self.config, day, now, week=week)
        if len(self._chart_cache) > 64:
            self._chart_cache.clear()
        self._chart_cache[key] = (time.monotonic(), stats)
        return stats

    async def report_download(self, request: web.Request) -> web.StreamResponse:
        who: Principal = request[PRINCIPAL]
        if self.masked_for(who):
            raise ApiError(
                403, "forbidden", "reports hold full numbers; only supervisors may download them"
            )
        name = request.match_info["name"]
        path = await self.status.report_file(name)
        if path is None:
            raise ApiError(404, "not_found", f"no report file {name!r}")
        return web.FileResponse(
            Path(path), headers={"Content-Disposition": f'attachment; filename="{name}"'}
        )

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        types = {"js": "text/javascript", "css": "text/css", "json": "application/json"}
        kind = types.get(name.rsplit(".", 1)[-1])
        if kind is None or "/" in name or name.startswith("."):
            raise web.HTTPNotFound()
        entry = STATIC.joinpath(name)
        if not entry.is_file():
            raise web.HTTPNotFound()
        response = web.Response(body=entry.read_bytes(), content_type=kind, charset="utf-8")
        # Assets change only with a new version of the program; revalidate each time anyway.
        response.headers["Cache-Control"] = "no-cache"
        return response

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(
            text=FAVICON, content_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"}
        )

    # ------------------------------------------------------------------ operations

    async def metrics(self, request: web.Request) -> web.Response:
        # The page's own number after the dialer's: its open streams.
        text = await self.status.metrics_text() + "\n".join(await self._streams.render()) + "\n"
        return web.Response(
            text=text,
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def healthz(self, request: web.Request) -> web.Response:
        ok, problems = await self.status.health()
        return web.json_response({"ok": ok, "problems": problems}, status=200 if ok else 503)

    # ------------------------------------------------------------------ the application

    def build(self) -> web.Application:
        app = web.Application(
            middlewares=[self.security, self.errors, self.authenticate], client_max_size=64 * 1024
        )
        app.add_routes(
            [
                web.get("/", self.index),
                web.get("/login", self.login_form),
                web.post("/login", self.login),
                web.post("/logout", self.logout),
                web.get("/charts/{kind:hourly|categories}.svg", self.chart),
                web.get("/reports/{name}", self.report_download),
                web.get("/static/{name}", self.static),
                web.get("/favicon.svg", self.favicon),
                web.get("/favicon.ico", self.favicon),
                web.get("/metrics", self.metrics),
                web.get("/healthz", self.healthz),
                *self.api.routes(),
            ]
        )
        app.on_startup.append(self._on_startup)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_startup(self, app: web.Application) -> None:
        self.hub.start()

    async def _on_shutdown(self, app: web.Application) -> None:
        await self.hub.close()


def _see_other(location: str) -> web.Response:
    # A plain response (not the HTTPSeeOther exception) so cookies can be set on it.
    return web.Response(status=303, headers={"Location": location})


def make_app(config: Config, status: StatusSource, commands: Commands) -> web.Application:
    return WebApp(config, status, commands).build()


class WebServer:
    """The listening side: ``run`` serves until cancelled, ``close`` stops it."""

    def __init__(self, config: Config, status: StatusSource, commands: Commands) -> None:
        self.config = config
        self.web = WebApp(config, status, commands)
        self.app = self.web.build()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.started = asyncio.Event()

    @property
    def watchers(self) -> int:
        """Status pages open right now (live streams)."""
        return self.web.hub.watchers

    async def run(self) -> None:
        cfg = self.config.web
        # Streams end on shutdown at once (the hub closes them), so a short grace suffices.
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=3.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, cfg.host, cfg.port)
        try:
            await site.start()
        except OSError as exc:
            log.error(
                "status page cannot listen",
                host=cfg.host,
                port=cfg.port,
                error=exc.strerror or str(exc),
            )
            await self.runner.cleanup()
            raise
        host, port = self.runner.addresses[0][:2]
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        self.url = f"http://{shown if ':' not in shown else f'[{shown}]'}:{port}/"
        log.info("status page listening", url=self.url, auth=cfg.auth)
        if cfg.auth == "none" and host not in ("127.0.0.1", "::1", "localhost"):
            log.warning(
                "status page open to everyone as supervisor on a non-local address; "
                'use [web] auth = "users" or "proxy"',
                host=host,
            )
        self.started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await self.close()

    async def close(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()
