"""The status page server: aiohttp in the dialer's own event loop; the parts put together.

``WebApp(config, status, commands, sessions)`` makes one of each part and routes every path to
it (``sessions``, the ``SessionStore``, is needed for [web] auth = "users");
``make_app`` returns the aiohttp application without listening (tests);
``WebServer`` is the listening side the dialer runs with its other parts (on ``[web]
host:port`` until cancelled) and closes when it stops (the live streams end, then the
listener). The page knows the dialer only through ``status`` and ``commands`` (``web.ports``).

Routes, and the module that answers:

- ``/``                    the page (HTML, ``/static/app.js``, ``/static/style.css``): ``pages``
- ``/login``, ``/logout``  password sign-in ([web] auth = "users"): ``sessions``
- ``/api/...``             the JSON API (``api``; OpenAPI at ``/api/openapi.json``)
- ``/api/stream``          live updates, server-sent events (``live``)
- ``/charts/hourly.svg``, ``/charts/categories.svg``   charts of a day (``?day=&lang=``):
  ``charts``
- ``/reports/<file>``      a daily report download: ``sidejobs``
- ``/metrics``             Prometheus text, no sign-in (holds no numbers or names)
- ``/healthz``             200 when Asterisk and Redis are up, 503 and the reasons otherwise

Middlewares, outermost first: ``sessions.security`` (strict headers incl. the
Content-Security-Policy on every answer, the CSRF seed), ``errors.json_errors`` (JSON errors,
never a traceback), ``sessions.authenticate`` (who is asking, CSRF).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from ..config import Config
from ..logs import get_logger
from ..metrics import Gauge
from .api import Api
from .charts import Charts
from .errors import json_errors
from .live import LiveHub
from .openapi import build_openapi
from .pages import Pages
from .sessions import Sessions
from .sidejobs import SideJobsView
from .views import Views

if TYPE_CHECKING:
    from .ports import Commands, SessionStore, StatusSource

log = get_logger(__name__)


class WebApp:
    """One of each part of the page, for one dialer, and the routes to them."""

    def __init__(
        self,
        config: Config,
        status: StatusSource,
        commands: Commands,
        sessions: SessionStore | None = None,
    ) -> None:
        self.config = config
        self.status = status
        self.views = Views(config, status)
        self.pages = Pages(config)
        self.sessions = Sessions(config, self.pages, sessions)
        self.side_jobs = SideJobsView(config, status, self.views)
        self.charts = Charts(config, status, self.pages)
        self.hub = LiveHub(config, status, self.views, jobs=self.side_jobs.jobs)
        self.api = Api(
            config,
            status,
            commands,
            views=self.views,
            pages=self.pages,
            sessions=self.sessions,
            side_jobs=self.side_jobs,
            hub=self.hub,
            openapi=build_openapi(config),
        )
        self._streams = Gauge(
            "callback_dialer_status_page_streams",
            "Status pages open right now.",
            (),
            self._stream_count,
        )
        self._checks = Gauge(
            "callback_dialer_password_checks_in_flight",
            "Password checks (scrypt) running right now; bounded, so guessing cannot "
            "exhaust the machine.",
            (),
            self._checks_in_flight,
        )

    def build(self) -> web.Application:
        app = web.Application(
            middlewares=[self.sessions.security, json_errors, self.sessions.authenticate],
            client_max_size=64 * 1024,
        )
        app.add_routes(
            [
                web.get("/", self.pages.index),
                web.get("/login", self.sessions.login_form),
                web.post("/login", self.sessions.login),
                web.post("/logout", self.sessions.logout),
                web.get("/charts/{kind:hourly|categories}.svg", self.charts.chart),
                web.get("/reports/{name}", self.side_jobs.download),
                web.get("/static/{name}", self.pages.static),
                web.get("/favicon.svg", self.pages.favicon),
                web.get("/favicon.ico", self.pages.favicon),
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

    # ------------------------------------------------------------------ operations

    async def _stream_count(self) -> list[tuple[tuple[str, ...], float]]:
        return [((), float(self.hub.watchers))]

    async def _checks_in_flight(self) -> list[tuple[tuple[str, ...], float]]:
        return [((), float(self.sessions.authority.gate.in_flight))]

    async def metrics(self, request: web.Request) -> web.Response:
        # The page's own numbers after the dialer's: open streams, sign-ins.
        own = [
            *await self._streams.render(),
            *await self._checks.render(),
            *self.sessions.sign_ins.render(),
        ]
        text = await self.status.metrics_text() + "\n".join(own) + "\n"
        return web.Response(
            text=text,
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def healthz(self, request: web.Request) -> web.Response:
        ok, problems = await self.status.health()
        d = self.status.dispatch_state()
        body = {"ok": ok, "problems": problems, "instance": d.instance, "leader": d.leader}
        return web.json_response(body, status=200 if ok else 503)


def make_app(
    config: Config,
    status: StatusSource,
    commands: Commands,
    sessions: SessionStore | None = None,
) -> web.Application:
    return WebApp(config, status, commands, sessions).build()


class WebServer:
    """The listening side: ``run`` serves until cancelled, ``close`` stops it."""

    def __init__(
        self,
        config: Config,
        status: StatusSource,
        commands: Commands,
        sessions: SessionStore | None = None,
    ) -> None:
        self.config = config
        self.web = WebApp(config, status, commands, sessions)
        self.app = self.web.build()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.started = asyncio.Event()

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
