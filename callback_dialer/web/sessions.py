"""Who is asking and whether they meant it, on every request: the middlewares and sign-in/out.

``web.auth`` makes and checks the tokens (passwords, session cookies, CSRF tokens); this module
applies them to requests:

- ``security`` (outermost) puts the strict headers on every answer, errors and redirects too
  (a Content-Security-Policy allowing only our own scripts, so even text that slipped through
  unescaped could not run), and gives a browser without one its CSRF seed cookie;
- ``authenticate`` (innermost) names the principal (``[web] auth``: users, proxy or none),
  sends whoever is unknown to sign in (401 under ``/api/``, ``/charts/``, ``/reports/``; the
  sign-in page otherwise), refuses a change from another site and a change without the CSRF
  token;
- ``login`` / ``logout``: the password sign-in, by form (the page) or JSON (API clients),
  throttled (``auth.LoginThrottle``); sign-out ends the session on the server (``everywhere=1``:
  every session of that user); both renew the CSRF seed.

``principal`` and ``require_supervisor`` are what handlers ask of a request.
"""

from __future__ import annotations

import hmac
import json
import math
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from ..config import Config
from ..logs import get_logger
from ..metrics import Counter
from ..queue.store import QueueUnavailable
from .auth import (
    CSRF_COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    CSRF_SEED,
    CSRF_SEED_SECONDS,
    DEVICE_COOKIE,
    DEVICE_SECONDS,
    PRINCIPAL,
    ROTATE_SEED,
    SESSION,
    SESSION_COOKIE,
    Authority,
    LoginTicket,
    Principal,
    Session,
    SessionBook,
    SignInBusy,
    new_csrf_seed,
)
from .errors import ApiError, Handler, error_response, json_body
from .pages import Pages
from .peers import Peers

if TYPE_CHECKING:
    from .ports import SessionStore

log = get_logger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Sign-in and sign-out: browser forms whose CSRF token comes in the form (JSON sign-in needs
# none: a page on another site cannot send a JSON body without our consent).
FORM_PATHS = frozenset({"/login", "/logout"})
# Paths anyone may fetch: the sign-in page and its assets.
PUBLIC_PATHS = frozenset({"/login", "/favicon.ico", "/favicon.svg"})
# What monitoring reads: open to anyone when named in [web] public, else to those signed in and
# to the bearer of [web] metrics_token.
MONITORING_PATHS = {"healthz": "/healthz", "metrics": "/metrics", "openapi": "/api/openapi.json"}
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


def principal(request: web.Request) -> Principal:
    return request[PRINCIPAL]


def require_supervisor(request: web.Request) -> Principal:
    who = principal(request)
    if not who.is_supervisor:
        raise ApiError(403, "forbidden", f"{who.user} is a viewer; only supervisors may act")
    return who


def session_of(request: web.Request) -> Session | None:
    """The signed-in session asking ([web] auth = "users"), or None."""
    return request.get(SESSION)


class Sessions:
    def __init__(self, config: Config, pages: Pages, store: SessionStore | None) -> None:
        self.config = config
        self.pages = pages
        self.peers = Peers(config.web)
        self.authority = Authority(config.web)
        if config.web.auth == "users" and store is None:
            raise ValueError('[web] auth = "users" needs a session store')
        self.book = SessionBook(config.web, store) if store is not None else None
        self.open_paths = PUBLIC_PATHS | {MONITORING_PATHS[name] for name in config.web.public}
        self.monitoring = frozenset(MONITORING_PATHS.values())
        self._refusals: dict[tuple[str, str], tuple[float, int]] = {}
        self.sign_ins = Counter(
            "callback_dialer_sign_ins_total",
            "Password sign-ins by result: ok, wrong, throttled (told to wait), busy.",
            ("result",),
        )

    def csrf_token_for(self, request: web.Request) -> str:
        who: Principal | None = request.get(PRINCIPAL)
        return self.authority.csrf_token(who.user if who else "", request[CSRF_SEED])

    # ------------------------------------------------------------------ middlewares

    @web.middleware
    async def security(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost: a foreign Host refused (DNS rebinding), headers on every answer (errors
        and redirects too) and the CSRF seed cookie for a browser that has none yet."""
        if not self.peers.host_allowed(request):
            host = self.peers.host(request)
            log.warning(
                "request for a foreign host refused",
                host=host[:100],
                address=self.peers.client_address(request),
            )
            refused = error_response(
                421,
                "unknown_host",
                f"this server does not answer to the host {host[:100]!r} "
                "(allowed: [web] allowed_hosts)",
            )
            self._decorate(request, refused, fresh_seed=False)
            return refused
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
                secure=self.peers.secure(request),
                path="/",
            )

    @web.middleware
    async def authenticate(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Innermost (inside ``json_errors``): who is asking, and is a change really meant."""
        request[PRINCIPAL] = await self._principal(request)
        self._guard(request)
        return await handler(request)

    async def _principal(self, request: web.Request) -> Principal | None:
        mode = self.config.web.auth
        if mode == "none":
            return Principal(user="anonymous", role="supervisor")
        if mode == "proxy":
            # Only the reverse proxy may name the user: from anyone else the header is ignored.
            if not self.peers.via_proxy(request):
                return None
            return self.authority.proxy_principal(
                request.headers.get(self.config.web.proxy_user_header)
            )
        assert self.book is not None
        session = await self.book.read(request.cookies.get(SESSION_COOKIE))
        request[SESSION] = session
        return session.principal if session is not None else None

    async def still_signed_in(self, request: web.Request) -> bool:
        """The request's session is still open (for a stream that outlives its request)."""
        if self.book is None:
            return True
        return await self.book.read(request.cookies.get(SESSION_COOKIE)) is not None

    def _token_ok(self, request: web.Request) -> bool:
        token = self.config.web.metrics_token
        given = request.headers.get("Authorization", "")
        return bool(token) and hmac.compare_digest(
            given.encode("utf-8"), f"Bearer {token}".encode()
        )

    def _guard(self, request: web.Request) -> None:
        path = request.path
        public = path in self.open_paths or path.startswith("/static/")
        if request[PRINCIPAL] is None and path in self.monitoring and not public:
            if self._token_ok(request):
                return  # GET only: nothing else is routed there
            raise ApiError(
                401,
                "unauthenticated",
                f"{path} is not public ([web] public): sign in, or send "
                "Authorization: Bearer <[web] metrics_token>",
            )
        if request[PRINCIPAL] is None and not public:
            if self.config.web.auth == "proxy":
                if not self.peers.via_proxy(request):
                    raise ApiError(
                        401,
                        "unauthenticated",
                        "sign in through the reverse proxy (this address is not one of "
                        "[web] trusted_proxies)",
                    )
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
        # The Host is one we answer to (checked first), so naming it proves the page is ours.
        return urlsplit(origin).netloc.lower() == self.peers.host(request).lower()

    def _log_refusal(self, address: str, user: str, wait: int, device: bool) -> None:
        """One line a minute per guesser, however fast they guess: a flood must not fill the
        log (the refusals are counted in /metrics all the same)."""
        now = time.monotonic()
        key = (address, user)
        last, refused = self._refusals.get(key, (-1e9, 0))
        if now - last < 60:
            self._refusals[key] = (last, refused + 1)
            return
        self._refusals.pop(key, None)
        self._refusals[key] = (now, 0)
        while len(self._refusals) > 10_000:
            self._refusals.pop(next(iter(self._refusals)))
        log.warning(
            "sign-in refused: too many wrong passwords",
            user=user,
            address=address,
            wait=wait,
            known_device=device,
            refused_since_last=refused,
        )

    def form_csrf_ok(self, request: web.Request, form: Any) -> bool:
        who = request[PRINCIPAL]
        token = request.headers.get(CSRF_HEADER) or form.get(CSRF_FIELD)
        return self.authority.csrf_ok(
            who.user if who else "",
            request.cookies.get(CSRF_COOKIE),
            token if isinstance(token, str) else None,
        )

    # ------------------------------------------------------------------ sign-in, sign-out

    def _login_page(
        self, request: web.Request, message: str = "", status: int = 200, user: str = ""
    ) -> web.Response:
        return self.pages.login_page(request, self.csrf_token_for(request), message, status, user)

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
        address = self.peers.client_address(request)
        t = self.pages.t(self.pages.language(request))
        authority = self.authority
        device = authority.device_of(request.cookies.get(DEVICE_COOKIE), user)
        # Counted before the slow check: tries sent at once cannot all pass the limit.
        ticket = authority.throttle.begin(address, authority.throttle_key(user), device)
        if not isinstance(ticket, LoginTicket):
            wait = math.ceil(ticket)
            self.sign_ins.inc("throttled")
            self._log_refusal(address, authority.throttle_key(user), wait, bool(device))
            headers = {"Retry-After": str(wait)}
            if as_json:
                raise web.HTTPTooManyRequests(
                    text=json.dumps(
                        {
                            "error": "throttled",
                            "message": f"too many wrong passwords; try again in {wait} s",
                            "retry_after": wait,
                        }
                    ),
                    content_type="application/json",
                    headers=headers,
                )
            page = self._login_page(request, t["login_throttled"].format(seconds=wait), 429, user)
            page.headers.update(headers)
            return page
        try:
            who = await authority.check_password(user, password)
        except SignInBusy:
            ticket.not_checked()
            self.sign_ins.inc("busy")
            log.warning("sign-in refused: too many password checks waiting", address=address)
            raise web.HTTPServiceUnavailable(
                text=json.dumps(
                    {"error": "busy", "message": "sign-in is busy; try again in a second"}
                ),
                content_type="application/json",
                headers={"Retry-After": "1"},
            ) from None
        if who is None:
            self.sign_ins.inc("wrong")
            log.warning("sign-in failed", user=user, address=address)
            if as_json:
                raise ApiError(401, "bad_login", "wrong user name or password")
            return self._login_page(request, t["login_wrong"], 401, user)
        ticket.succeeded()
        assert self.book is not None
        try:
            cookie = await self.book.open(who.user)
        except QueueUnavailable as exc:
            log.error("sign-in impossible: Redis does not answer", user=user, error=str(exc))
            if not as_json:
                return self._login_page(request, t["login_unavailable"], 503, user)
            raise ApiError(
                503, "redis_unavailable", f"sign-in needs Redis, which does not answer: {exc}"
            ) from None
        self.sign_ins.inc("ok")
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
            max_age=int(self.config.web.session_max),
            httponly=True,
            samesite="Lax",
            secure=self.peers.secure(request),
            path="/",
        )
        if not device:
            # This browser's own bucket from now on: others' guessing cannot keep it out.
            response.set_cookie(
                DEVICE_COOKIE,
                authority.device_cookie(who.user),
                max_age=DEVICE_SECONDS,
                httponly=True,
                samesite="Strict",
                secure=self.peers.secure(request),
                path="/login",
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
        session = session_of(request)
        everywhere = form.get("everywhere") == "1"
        if session is not None and self.book is not None:
            # Ended on the server: a copy of the cookie is worth nothing from now on.
            await self.book.end(session.principal.sid, session.principal.user)
            if everywhere:
                ended = await self.book.end_all(session.principal.user)
                log.info("signed out everywhere", user=session.principal.user, sessions=ended)
        log.info("signed out", user=who.user if who else "")
        request[ROTATE_SEED] = True
        request[CSRF_SEED] = new_csrf_seed()
        response = _see_other("/login" if self.config.web.auth == "users" else "/")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response


def _see_other(location: str) -> web.Response:
    # A plain response (not the HTTPSeeOther exception) so cookies can be set on it.
    return web.Response(status=303, headers={"Location": location})
