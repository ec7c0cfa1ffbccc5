"""Who is asking, what they may do, and proof that a browser meant to do it.

Passwords (``callback-dialer hash-password``) are stored as one line::

    scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>

scrypt from the standard library, a 16-byte random salt, a 32-byte key; ``n=2**15, r=8, p=1``
by default (32 MiB and about a tenth of a second per check, so guessing is slow). The
parameters travel in the line, so stronger ones later still verify old hashes.

Sessions ([web] auth = "users"): a cookie ``cbd_session`` holding
``base64url(JSON {"u": user, "sid": random, "exp": epoch}) . base64url(HMAC-SHA256)``, signed
with a key derived from ``[web] session_secret`` (random at each start when empty). The role is
looked up in the config on every request, so a user removed or demoted loses access at once.
Cookie flags: HttpOnly, SameSite=Lax, Path=/, Secure when the request came over HTTPS.

CSRF: every request that changes something (POST) must carry ``X-CSRF-Token`` (the page's
JavaScript and API clients) or a ``csrf_token`` form field (the login form). The token is
``base64url(HMAC-SHA256(key, user | seed))`` where ``seed`` is a random value in the
``cbd_csrf`` cookie (HttpOnly, SameSite=Strict), renewed at login and logout. A page on another
site can neither read the token nor set our cookie, so it cannot forge a request. A request
whose ``Origin`` names another site is refused before anything else. ``GET /api/session``
returns the token.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..config import ConfigError, WebConfig

SESSION_COOKIE = "cbd_session"
CSRF_COOKIE = "cbd_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
# A working day and then some: the page is opened in the morning and left open.
SESSION_SECONDS = 24 * 3600
CSRF_SEED_SECONDS = 30 * 86400

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**15, 8, 1
_SCRYPT_MAXMEM = 256 * 1024 * 1024
# Far above any sane setting: a hash line cannot make one login eat the machine.
_SCRYPT_MAX_N = 2**20
_KEY_BYTES = 32
_USER_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def request_key(name: str, kind: type) -> Any:
    # Typed keys where aiohttp has them (3.13+ warns about plain strings); strings before.
    factory = getattr(web, "RequestKey", None)
    return factory(name, kind) if factory is not None else name


# What the middlewares leave on a request for the handlers.
PRINCIPAL = request_key("principal", object)  # Principal | None
CSRF_SEED = request_key("csrf_seed", str)
ROTATE_SEED = request_key("rotate_seed", bool)
SESSION_EXPIRES = request_key("session_expires", float)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --------------------------------------------------------------------------- passwords


def hash_password(
    password: str, *, n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P
) -> str:
    """A salted scrypt hash of ``password`` in the format documented above."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=_KEY_BYTES
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(key)}"


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    parts = stored.split("$")
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        return None
    if not (2 <= n <= _SCRYPT_MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    if len(salt) < 8 or len(key) < 16:
        return None
    return n, r, p, salt, key


def is_password_hash(stored: str) -> bool:
    return _parse_hash(stored) is not None


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; False for a wrong password or a malformed
    hash. Slow on purpose (scrypt): call it through ``asyncio.to_thread``."""
    parsed = _parse_hash(stored)
    if parsed is None:
        return False
    n, r, p, salt, key = parsed
    got = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=len(key)
    )
    return hmac.compare_digest(got, key)


# --------------------------------------------------------------------------- who is asking


@dataclass(frozen=True, slots=True)
class Principal:
    user: str
    role: str  # viewer | supervisor
    sid: str = ""  # the session id (users mode)

    @property
    def is_supervisor(self) -> bool:
        return self.role == "supervisor"

    @property
    def actor(self) -> str:
        # "web:" keeps a person apart from the program's own actors (system, dispatcher, pbx).
        return f"web:{self.user}"


class Authority:
    """Issues and checks sessions and CSRF tokens for one [web] configuration."""

    def __init__(self, web: WebConfig, secret: str | None = None) -> None:
        self.web = web
        raw = (secret if secret is not None else web.session_secret) or ""
        master = raw.encode("utf-8") if raw else secrets.token_bytes(32)
        # Separate keys: a session signature can never pass as a CSRF token or the reverse.
        self._session_key = hmac.new(master, b"callback-dialer session", "sha256").digest()
        self._csrf_key = hmac.new(master, b"callback-dialer csrf", "sha256").digest()
        self.users = {u.name: u for u in web.users}
        if web.auth == "users":
            bad = [u.name for u in web.users if not is_password_hash(u.password_hash)]
            if bad:
                raise ConfigError(
                    "config",
                    [
                        f"web.users: {name!r}: password_hash is not a hash made by "
                        "`callback-dialer hash-password`"
                        for name in bad
                    ],
                )
        self.failures = LoginThrottle()

    # ---- sessions

    def make_session(self, user: str, now: float | None = None) -> tuple[str, str]:
        """A signed session cookie value for ``user`` and its session id."""
        sid = secrets.token_urlsafe(16)
        payload = json.dumps(
            {"u": user, "sid": sid, "exp": int((now or time.time()) + SESSION_SECONDS)},
            separators=(",", ":"),
        ).encode("utf-8")
        body = _b64(payload)
        return f"{body}.{self._sign(body)}", sid

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._session_key, body.encode("ascii"), "sha256").digest())

    def read_session(self, value: str | None, now: float | None = None) -> Principal | None:
        """The user of a session cookie, or None (missing, forged, expired, user gone)."""
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        if not hmac.compare_digest(signature, self._sign(body)):
            return None
        try:
            data = json.loads(_unb64(body))
            user, sid, exp = str(data["u"]), str(data["sid"]), float(data["exp"])
        except (ValueError, KeyError, TypeError):
            return None
        # Sessions age in real time even when the dialer's clock runs faster (demo).
        if exp < (now or time.time()):
            return None
        entry = self.users.get(user)
        if entry is None:
            return None
        return Principal(user=user, role=entry.role, sid=sid)

    def session_expires(self, value: str | None) -> float | None:
        try:
            body = (value or "").split(".")[0]
            return float(json.loads(_unb64(body))["exp"])
        except (ValueError, KeyError, TypeError):
            return None

    async def check_password(self, user: str, password: str) -> Principal | None:
        entry = self.users.get(user)
        # Hash even for an unknown user, so the answer time does not tell who exists.
        stored = entry.password_hash if entry is not None else _dummy_hash()
        ok = await asyncio.to_thread(verify_password, password, stored)
        if not ok or entry is None:
            return None
        return Principal(user=user, role=entry.role)

    # ---- reverse proxy

    def proxy_principal(self, header_value: str | None) -> Principal | None:
        name = (header_value or "").strip()
        if not _USER_NAME.fullmatch(name):
            return None
        entry = self.users.get(name)
        return Principal(user=name, role=entry.role if entry else self.web.proxy_default_role)

    # ---- CSRF

    def csrf_token(self, user: str, seed: str) -> str:
        mac = hmac.new(self._csrf_key, f"{user}|{seed}".encode(), "sha256").digest()
        return _b64(mac)

    def csrf_ok(self, user: str, seed: str | None, token: str | None) -> bool:
        if not seed or not token:
            return False
        return hmac.compare_digest(token, self.csrf_token(user, seed))


def new_csrf_seed() -> str:
    return secrets.token_urlsafe(18)


@functools.cache
def _dummy_hash() -> str:
    # A valid hash of a random password: checking against it costs what a real check costs.
    return hash_password(secrets.token_urlsafe(12))


class LoginThrottle:
    """At most ``limit`` wrong passwords per (address, user) within ``window`` seconds; the
    table is bounded so a flood of names cannot grow it without end."""

    def __init__(self, limit: int = 5, window: float = 900.0, size: int = 10_000) -> None:
        self.limit = limit
        self.window = window
        self.size = size
        self._seen: OrderedDict[tuple[str, str], list[float]] = OrderedDict()

    def _recent(self, key: tuple[str, str], now: float) -> list[float]:
        times = [t for t in self._seen.get(key, []) if now - t < self.window]
        if times:
            self._seen[key] = times
        else:
            self._seen.pop(key, None)
        return times

    def blocked(self, address: str, user: str, now: float | None = None) -> bool:
        return len(self._recent((address, user), now or time.time())) >= self.limit

    def failed(self, address: str, user: str, now: float | None = None) -> None:
        now = now or time.time()
        key = (address, user)
        times = self._recent(key, now)
        times.append(now)
        self._seen[key] = times
        self._seen.move_to_end(key)
        while len(self._seen) > self.size:
            self._seen.popitem(last=False)

    def succeeded(self, address: str, user: str) -> None:
        self._seen.pop((address, user), None)
