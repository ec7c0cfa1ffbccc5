"""Who is asking, what they may do, and proof that a browser meant to do it.

Passwords (``callback-dialer hash-password``) are stored as one line::

    scrypt$<n>$<r>$<p>$<salt, base64>$<key, base64>

scrypt from the standard library, a 16-byte random salt, a 32-byte key; ``n=2**15, r=8, p=1``
by default (32 MiB and about a tenth of a second per check, so guessing is slow). The
parameters travel in the line, so stronger ones later still verify old hashes.

Sessions ([web] auth = "users", ``SessionBook``): kept on the server (the ``SessionStore``,
Redis), so signing out ends one for good; the cookie ``cbd_session`` holds only a random
256-bit token, and the store names the session by the token's SHA-256, so a copy of Redis
holds no usable cookie. A session ends ``[web] session_idle`` after its last use (an open
page uses it) and ``[web] session_max`` after sign-in whatever happens; "sign out everywhere"
ends all of a user's. The role is looked up in the config on every request, so a user removed
or demoted loses access at once. While Redis cannot be read, a session this process saw valid
within the idle time stays valid (the page keeps showing what it can), and one signed out
meanwhile stays ended here until Redis can be told. Cookie flags: HttpOnly, SameSite=Lax,
Path=/, Secure when the request came over HTTPS.

Guessing (``LoginThrottle``, ``CheckGate``): every try is counted before its password is
checked, in buckets per (address, user), per user and per address; past a bucket's free wrong
passwords each try waits longer (15 s doubling to 15 min), which slows a guesser to a few
tries an hour but never locks the user out. A browser holding the user's device cookie (given
at sign-in) has a bucket of its own. At most two scrypt checks run at once, a few dozen wait,
and the rest are told to come back, so a flood costs the machine neither memory nor cores.

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
import contextlib
import functools
import hashlib
import hmac
import ipaddress
import json
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from ..config import ConfigError, WebConfig
from ..queue.store import QueueUnavailable

if TYPE_CHECKING:
    from .ports import SessionStore

SESSION_COOKIE = "cbd_session"
DEVICE_COOKIE = "cbd_device"
DEVICE_SECONDS = 180 * 86400
CSRF_COOKIE = "cbd_csrf"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
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
SESSION = request_key("session", object)  # Session | None (users mode)


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
    """Checks passwords and issues device cookies and CSRF tokens for one [web]
    configuration."""

    def __init__(self, web: WebConfig, secret: str | None = None) -> None:
        self.web = web
        raw = (secret if secret is not None else web.session_secret) or ""
        master = raw.encode("utf-8") if raw else secrets.token_bytes(32)
        # Separate keys: a device cookie can never pass as a CSRF token or the reverse.
        self._csrf_key = hmac.new(master, b"callback-dialer csrf", "sha256").digest()
        self._device_key = hmac.new(master, b"callback-dialer device", "sha256").digest()
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
        self.throttle = LoginThrottle()
        self.gate = CheckGate()
        # Unknown names are checked against a hash of the same strength as the users' own, so
        # the answer's timing does not tell who exists.
        self._dummy_params = next(
            (parsed[:3] for u in web.users if (parsed := _parse_hash(u.password_hash))),
            (_SCRYPT_N, _SCRYPT_R, _SCRYPT_P),
        )

    def throttle_key(self, user: str) -> str:
        """The name a try is counted under: unknown names share one (none can sign in)."""
        return user if user in self.users else "?"

    async def check_password(self, user: str, password: str) -> Principal | None:
        """The user when the password is theirs; None otherwise. At most ``gate.size`` checks
        run at once; SignInBusy when too many wait."""
        entry = self.users.get(user)
        # Hash even for an unknown user, so the answer time does not tell who exists.
        stored = entry.password_hash if entry is not None else None
        ok = await self.gate.run(self._verify, password, stored)
        if not ok or entry is None:
            return None
        return Principal(user=user, role=entry.role)

    def _verify(self, password: str, stored: str | None) -> bool:
        return verify_password(password, stored or _dummy_hash(*self._dummy_params))

    # ---- devices

    def device_cookie(self, user: str) -> str:
        """A new device cookie: this browser signed in as ``user``."""
        body = _b64(json.dumps({"u": user, "d": secrets.token_urlsafe(12)}).encode("utf-8"))
        return f"{body}.{_b64(hmac.new(self._device_key, body.encode(), 'sha256').digest())}"

    def device_of(self, value: str | None, user: str) -> str:
        """The device id in a device cookie of ``user``; "" when there is none, it is forged
        or another user's."""
        if not value or value.count(".") != 1 or len(value) > 400:
            return ""
        body, signature = value.split(".")
        expected = _b64(hmac.new(self._device_key, body.encode(), "sha256").digest())
        if not hmac.compare_digest(signature, expected):
            return ""
        try:
            data = json.loads(_unb64(body))
            return str(data["d"]) if data["u"] == user else ""
        except (ValueError, KeyError, TypeError):
            return ""

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
def _dummy_hash(n: int = _SCRYPT_N, r: int = _SCRYPT_R, p: int = _SCRYPT_P) -> str:
    # A valid hash of a random password: checking against it costs what a real check costs.
    return hash_password(secrets.token_urlsafe(12), n=n, r=r, p=p)


# --------------------------------------------------------------------------- sessions

# A session's last use is written down at most this often (an open page reads it every few
# seconds; Redis need not hear of each).
TOUCH_EVERY = 60.0
_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    principal: Principal
    created: float
    ends_at: float  # session_max after sign-in


@dataclass(slots=True)
class _Seen:
    user: str
    created: float
    checked: float


class SessionBook:
    """The signed-in sessions of one page, in its ``SessionStore`` (see the module docstring)."""

    def __init__(self, web: WebConfig, store: SessionStore, *, clock: Any = time.time) -> None:
        self.web = web
        self.store = store
        self.clock = clock
        self.users = {u.name: u for u in web.users}
        self._seen: OrderedDict[str, _Seen] = OrderedDict()  # for when Redis is away
        self._ended: OrderedDict[str, str] = OrderedDict()  # ended here, store not told yet

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode("ascii")).hexdigest()

    def _remember(self, digest: str, seen: _Seen) -> None:
        self._seen[digest] = seen
        self._seen.move_to_end(digest)
        while len(self._seen) > _REMEMBERED:
            self._seen.popitem(last=False)

    async def open(self, user: str, now: float | None = None) -> str:
        """A new session of ``user``; its cookie token. ``QueueUnavailable`` without Redis."""
        token = secrets.token_urlsafe(32)
        at = self.clock() if now is None else now
        digest = self.digest(token)
        await self.store.open_session(digest, user, at, self.web.session_idle)
        self._remember(digest, _Seen(user, at, at))
        return token

    async def read(self, token: str | None) -> Session | None:
        """The session of a cookie token, or None: unknown, ended, idle too long, too old, or
        its user no longer in the config."""
        if not token or not _TOKEN.fullmatch(token):
            return None
        digest = self.digest(token)
        if digest in self._ended:
            await self._tell_ended(digest)
            return None
        now = self.clock()
        idle, most = self.web.session_idle, self.web.session_max
        try:
            stored = await self.store.session(digest)
        except QueueUnavailable:
            seen = self._seen.get(digest)
            if seen is None or now - seen.checked >= idle or now - seen.created >= most:
                return None
            return self._session(digest, seen.user, seen.created)
        if stored is None:
            self._seen.pop(digest, None)
            return None
        if now - stored.created >= most or now - stored.seen >= idle:
            await self.end(digest, stored.user)
            return None
        if now - stored.seen >= TOUCH_EVERY:
            with contextlib.suppress(QueueUnavailable):
                await self.store.touch_session(digest, now, min(idle, stored.created + most - now))
        self._remember(digest, _Seen(stored.user, stored.created, now))
        return self._session(digest, stored.user, stored.created)

    def _session(self, digest: str, user: str, created: float) -> Session | None:
        entry = self.users.get(user)
        if entry is None:
            return None
        return Session(
            Principal(user=user, role=entry.role, sid=digest),
            created,
            created + self.web.session_max,
        )

    async def _tell_ended(self, digest: str) -> None:
        user = self._ended.get(digest, "")
        try:
            await self.store.end_session(digest, user)
        except QueueUnavailable:
            return
        self._ended.pop(digest, None)

    async def end(self, digest: str, user: str) -> None:
        """End one session: at once here, in the store as soon as it answers."""
        self._seen.pop(digest, None)
        self._ended[digest] = user
        while len(self._ended) > _REMEMBERED:
            self._ended.popitem(last=False)
        await self._tell_ended(digest)

    async def end_all(self, user: str) -> int:
        """End every session of ``user``, everywhere; how many the store had.
        ``QueueUnavailable`` when it cannot be told (those this process knows end anyway)."""
        known = [d for d, seen in self._seen.items() if seen.user == user]
        try:
            ended = await self.store.end_sessions_of(user)
        except QueueUnavailable:
            for digest in known:
                await self.end(digest, user)
            raise
        for digest in known:
            self._seen.pop(digest, None)
        return ended


# --------------------------------------------------------------------------- guessing


@dataclass(frozen=True, slots=True)
class Limit:
    """Wrong passwords one kind of bucket takes before each further try must wait."""

    kind: str
    free: int


PAIR = Limit("pair", 5)  # one address guessing one user
USER = Limit("user", 10)  # one user, from any address (a guesser with many addresses)
ADDRESS = Limit("address", 20)  # one address, any user (spraying; an office behind NAT)
DEVICE = Limit("device", 5)  # a browser this user signed in with before (its own bucket)
FIRST_DELAY = 15.0
MAX_DELAY = 900.0
FORGET_AFTER = 3600.0  # a bucket without a wrong password for this long starts afresh


def delay_after(failures: int, free: int) -> float:
    """The wait before the next try after ``failures`` wrong passwords: none within the free
    ones, then 15 s, doubling to at most 15 minutes. Never a lock-out: once the wait is over,
    the right password gets in."""
    if failures < free:
        return 0.0
    return min(MAX_DELAY, FIRST_DELAY * 2 ** (failures - free))


@dataclass(slots=True)
class _Bucket:
    limit: Limit
    failures: int = 0
    last: float = 0.0
    until: float = 0.0

    def charge(self, now: float) -> None:
        self.failures += 1
        self.last = now
        self.until = now + delay_after(self.failures, self.limit.free)

    def uncharge(self) -> None:
        self.failures = max(0, self.failures - 1)
        self.until = self.last + delay_after(self.failures, self.limit.free)


class LoginTicket:
    """One try let through: already counted as a wrong password (so tries sent together are
    counted before any of them is checked); ``succeeded`` takes that back."""

    def __init__(self, throttle: LoginThrottle, buckets: list[tuple[tuple[str, ...], _Bucket]]):
        self._throttle = throttle
        self._buckets = buckets

    def succeeded(self) -> None:
        for key, bucket in self._buckets:
            if bucket.limit in (PAIR, DEVICE):
                self._throttle.forget(key)  # this guesser was the user after all
            else:
                bucket.uncharge()  # others' guesses still count

    def not_checked(self) -> None:
        """The password was never checked (the sign-in was busy): nothing counts."""
        for _, bucket in self._buckets:
            bucket.uncharge()


class LoginThrottle:
    """Wrong passwords counted per (address, user), per user, per address, and per browser
    that signed in before; each beyond its free ones makes the next try wait longer
    (``delay_after``). A try is counted when it starts, not when its slow check ends: three
    hundred sent at once get the same answer as three hundred sent one after the other.

    A browser holding a device cookie of this user (given at its last sign-in) is counted in a
    bucket of its own instead, so nobody else's guessing can keep the user out of it. Unknown
    user names share one bucket (they can never sign in), and IPv6 addresses count by /64 (one
    host holds them all), so the table stays small; it is bounded anyway."""

    def __init__(self, *, clock: Any = time.monotonic, size: int = 20_000) -> None:
        self.clock = clock
        self.size = size
        self._buckets: OrderedDict[tuple[str, ...], _Bucket] = OrderedDict()

    @staticmethod
    def _network(address: str) -> str:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return address
        if ip.version == 6:
            return str(ipaddress.ip_network(f"{ip}/64", strict=False))
        return str(ip)

    def _bucket(self, key: tuple[str, ...], limit: Limit, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None or now - bucket.last > FORGET_AFTER:
            bucket = _Bucket(limit)
            self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        while len(self._buckets) > self.size:
            self._buckets.popitem(last=False)
        return bucket

    def forget(self, key: tuple[str, ...]) -> None:
        self._buckets.pop(key, None)

    def begin(self, address: str, user: str, device: str = "") -> LoginTicket | float:
        """A ticket for one try, or how many seconds to wait before the next one."""
        now = self.clock()
        if device:
            keys = [(("device", device), DEVICE)]
        else:
            net = self._network(address)
            keys = [
                (("pair", net, user), PAIR),
                (("user", user), USER),
                (("address", net), ADDRESS),
            ]
        buckets = [(key, self._bucket(key, limit, now)) for key, limit in keys]
        wait = max(bucket.until - now for _, bucket in buckets)
        if wait > 0:
            return wait
        for _, bucket in buckets:
            bucket.charge(now)
        return LoginTicket(self, buckets)


class SignInBusy(Exception):
    """More sign-ins wait for a password check than may; try again in a moment."""


class CheckGate:
    """At most ``size`` password checks at once (each holds 32 MiB and a core for about a
    tenth of a second), at most ``waiting`` more in line; the rest are told to come back."""

    def __init__(self, size: int = 2, waiting: int = 32) -> None:
        self.size = size
        self.waiting = waiting
        self._slots = asyncio.Semaphore(size)
        self._queued = 0
        self.in_flight = 0
        self.peak = 0

    async def run(self, check: Any, *args: Any) -> Any:
        if self._queued >= self.waiting:
            raise SignInBusy()
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            return await asyncio.to_thread(check, *args)
        finally:
            self.in_flight -= 1
            self._slots.release()
