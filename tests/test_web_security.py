"""The status page under attack: DNS rebinding, forged forwarding headers, password guessing in
parallel, stolen cookies, and what monitoring may read. Real HTTP, a real Redis."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter

import pytest
import redis

from callback_dialer.web.auth import CheckGate, SignInBusy

from .test_web_api import assert_error, read_events
from .test_web_support import NEW, User, missed, users_config, web_rig

REBIND = "rebind.attacker.example"


# --------------------------------------------------------------------------- hosts


async def test_a_foreign_host_is_refused_before_anything_so_a_rebinding_page_gets_nothing(
    make_config, tmp_path
) -> None:
    # The demo: auth "none", a page on rebind.attacker.example whose name now points
    # at us obtained the CSRF token and paused calling.
    async with web_rig(make_config(), spool=tmp_path / "s.jsonl") as rig:
        port = rig.server.port
        attacker = rig.user()
        foreign = {"Host": f"{REBIND}:{port}"}
        for path in ("/", "/api/session", "/login", "/healthz", "/metrics", "/static/app.js"):
            answer = await attacker.get(path, headers=foreign)
            assert_error(answer, 421, "unknown_host", REBIND)
            assert "cbd_csrf" not in answer.cookies  # not even the seed of a token
            assert answer.headers["X-Frame-Options"] == "DENY"
        paused = await attacker.post(
            "/api/dispatch/pause",
            {"reason": "rebound"},
            headers={**foreign, "Origin": f"http://{REBIND}:{port}"},
        )
        assert_error(paused, 421, "unknown_host")
        assert not rig.dialer.dispatcher.paused
        # Spellings that only look local are not.
        for host in (
            f"127.0.0.1.nip.io:{port}",
            "127.1",
            "2130706433",
            f"localhost:{port}@{REBIND}",
            f"{REBIND}, 127.0.0.1",
            "127.0.0.1:abc",
            "[::1]evil",
            "",
        ):
            assert_error(
                await attacker.get("/healthz", headers={"Host": host}), 421, "unknown_host"
            )
        # The names a person uses on this machine still work.
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
            assert (await attacker.get("/api/session", headers={"Host": host})).status == 200


async def test_allowed_hosts_replace_the_default_names_and_cover_subdomains(
    make_config, tmp_path
) -> None:
    config = make_config(web={"allowed_hosts": ["callbacks.example.net", "*.office.example"]})
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        anyone = rig.user()
        for host in ("callbacks.example.net", "Callbacks.Example.Net:8080", "wall.office.example"):
            assert (await anyone.get("/healthz", headers={"Host": host})).status == 503, host
        for host in ("127.0.0.1", "office.example", "evil-callbacks.example.net", REBIND):
            assert_error(await anyone.get("/healthz", headers={"Host": host}), 421, "unknown_host")


async def test_listening_on_every_interface_the_page_answers_to_any_ip_but_no_foreign_name(
    make_config, tmp_path
) -> None:
    async with web_rig(make_config(web={"host": "0.0.0.0"}), spool=tmp_path / "s.jsonl") as rig:
        anyone = rig.user()
        for host in ("10.20.30.40:8080", "[fe80::1]:8080", "localhost"):
            assert (await anyone.get("/healthz", headers={"Host": host})).status == 503, host
        assert_error(await anyone.get("/healthz", headers={"Host": REBIND}), 421, "unknown_host")


# --------------------------------------------------------------------------- proxies


async def test_forwarding_headers_from_an_untrusted_peer_are_ignored(make_config, tmp_path) -> None:
    config = make_config(
        web={
            "auth": "proxy",
            "trusted_proxies": ["10.1.2.3"],
            "users": [{"name": "alice", "role": "supervisor"}],
        }
    )
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        cb = await missed(rig.queue, NEW, "new_connection", 60)
        intruder = rig.user()
        claimed = {"X-Forwarded-User": "alice", "X-Forwarded-For": "10.1.2.3"}
        assert_error(
            await intruder.get("/api/session", headers=claimed),
            401,
            "unauthenticated",
            "trusted_proxies",
        )
        before = rig.redis_dump()
        assert_error(
            await intruder.post(f"/api/callbacks/{cb}/call-now", headers=claimed),
            401,
            "unauthenticated",
        )
        assert rig.redis_dump() == before


async def test_a_trusted_proxy_names_the_client_address_and_the_scheme(
    make_config, tmp_path
) -> None:
    config = users_config(make_config, tmp_path, web={"trusted_proxies": ["127.0.0.0/8"]})
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        alice = rig.user("alice")
        via = {"X-Forwarded-For": "192.0.2.10", "X-Forwarded-Proto": "https"}
        answer = await alice.request(
            "POST",
            "/login",
            json_body={"user": "alice", "password": "alice-password-1"},
            headers=via,
        )
        assert answer.status == 200, answer.text
        assert answer.cookies["cbd_session"]["secure"]
    config = users_config(make_config, tmp_path, web={"trusted_proxies": ["10.1.2.3"]})
    async with web_rig(config, spool=tmp_path / "t.jsonl") as rig:
        alice = rig.user("alice")
        answer = await alice.request(
            "POST",
            "/login",
            json_body={"user": "alice", "password": "alice-password-1"},
            headers={"X-Forwarded-Proto": "https"},
        )
        assert answer.status == 200, answer.text
        assert not answer.cookies["cbd_session"]["secure"]  # not said by a proxy we trust


# --------------------------------------------------------------------------- guessing


class FakeTime:
    """The throttle's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def rig(make_config, tmp_path):
    config = users_config(make_config, tmp_path)
    async with web_rig(config, spool=tmp_path / "spool.jsonl") as r:
        r.time = FakeTime()
        r.web.sessions.authority.throttle.clock = r.time
        yield r


async def guess_at_once(user: User, count: int, password: str = "not-the-password") -> Counter:
    answers = await asyncio.gather(*(user.login(password) for _ in range(count)))
    return Counter(a.status for a in answers)


async def test_hundreds_of_wrong_passwords_sent_at_once_are_refused_after_the_fifth(rig) -> None:
    # The issue: 300 sent together all got 401, because each was counted after its check.
    statuses = await guess_at_once(rig.user("alice"), 300)
    assert statuses == Counter({429: 295, 401: 5})
    assert rig.web.sessions.authority.gate.peak <= rig.web.sessions.authority.gate.size
    text = (await rig.user().get("/metrics")).text
    assert 'callback_dialer_sign_ins_total{result="throttled"} 295' in text
    assert "callback_dialer_password_checks_in_flight 0" in text


async def test_after_a_flood_the_right_password_waits_seconds_not_a_lock_out(rig) -> None:
    await guess_at_once(rig.user("alice"), 300)
    alice = rig.user("alice")
    refused = await alice.login()
    assert_error(refused, 429, "throttled", "15 s")
    assert refused.headers["Retry-After"] == "15"
    rig.time.now += 15
    assert (await alice.login()).status == 200


async def test_each_wrong_password_past_the_free_ones_doubles_the_wait_up_to_15_minutes(
    rig,
) -> None:
    mallory = rig.user("alice")
    for _ in range(5):
        assert (await mallory.login("guess")).status == 401
    waits = []
    for _ in range(8):
        refused = await mallory.login("guess")
        assert refused.status == 429
        waits.append(int(refused.headers["Retry-After"]))
        rig.time.now += waits[-1]
        assert (await mallory.login("guess")).status == 401  # checked once the wait is over
    assert waits == [15, 30, 60, 120, 240, 480, 900, 900]


async def test_a_browser_that_signed_in_before_is_not_kept_out_by_others_guessing(rig) -> None:
    alice = rig.user("alice")
    assert (await alice.login()).status == 200
    assert (await alice.post("/logout")).status == 303
    # Someone else at the same address (a NAT, a proxy) floods her name.
    assert (await guess_at_once(rig.user("alice"), 100))[429] == 95
    assert (await alice.login()).status == 200  # her own browser, her own bucket
    # A forged device cookie or victor's does not open alice's bucket to a guesser.
    victor = rig.user("victor")
    assert (await victor.login()).status == 200
    device = victor.http.cookie_jar.filter_cookies(rig.server.make_url("/login"))["cbd_device"]
    guesser = rig.user("alice")
    guesser.http.cookie_jar.update_cookies(
        {"cbd_device": device.value}, rig.server.make_url("/login")
    )
    assert_error(await guesser.login("guess"), 429, "throttled")
    forged = rig.user("alice")
    forged.http.cookie_jar.update_cookies(
        {"cbd_device": "eyJ1IjoiYWxpY2UiLCJkIjoieCJ9.AAAA"}, rig.server.make_url("/login")
    )
    assert_error(await forged.login("guess"), 429, "throttled")


async def test_other_source_addresses_do_not_give_five_fresh_tries_each(rig) -> None:
    # The issue: 127.0.0.2 ... 7 gave five more tries each. The user's own bucket ends that.
    statuses: Counter = Counter()
    for i in range(2, 8):
        statuses += await guess_at_once(rig.user("alice", f"127.0.0.{i}"), 20)
    assert statuses[401] == 10 and statuses[429] == 110
    # Victor is not kept out by alice's guessers.
    assert (await rig.user("victor", "127.0.0.2").login()).status == 200


async def test_forwarded_for_from_an_untrusted_peer_cannot_spread_the_guesses(rig) -> None:
    mallory = rig.user("alice")
    answers = await asyncio.gather(
        *(
            mallory.request(
                "POST",
                "/login",
                json_body={"user": "alice", "password": "guess"},
                headers={"X-Forwarded-For": f"198.51.100.{i}"},
            )
            for i in range(200)
        )
    )
    assert Counter(a.status for a in answers) == Counter({429: 195, 401: 5})


async def test_behind_a_trusted_proxy_each_client_address_counts_apart(
    make_config, tmp_path
) -> None:
    config = users_config(make_config, tmp_path, web={"trusted_proxies": ["127.0.0.1"]})
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:

        async def from_(address: str, password: str) -> int:
            answer = await rig.user("victor").request(
                "POST",
                "/login",
                json_body={"user": "victor", "password": password},
                headers={"X-Forwarded-For": f"6.6.6.6, {address}"},
            )
            return answer.status

        assert [await from_("192.0.2.10", "guess") for _ in range(6)] == [401] * 5 + [429]
        # Victor at another desk behind the same proxy is not refused for them.
        assert await from_("192.0.2.20", "victor-password-1") == 200
        # The spoofed leftmost entry is not what is counted: the guesser is still refused.
        assert await from_("192.0.2.10", "guess") == 429


async def test_password_checks_run_two_at_a_time_and_a_flood_beyond_the_line_is_told_to_wait() -> (
    None
):
    gate = CheckGate(size=2, waiting=32)
    release = threading.Event()

    def slow(value: int) -> int:
        release.wait(5)
        return value

    tasks = [asyncio.ensure_future(gate.run(slow, i)) for i in range(40)]
    await asyncio.sleep(0.2)
    assert gate.in_flight == 2
    release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, SignInBusy) for r in results) == 6
    assert sorted(r for r in results if isinstance(r, int)) == list(range(34))
    assert gate.peak == 2 and gate.in_flight == 0


# --------------------------------------------------------------------------- sessions


def copy_cookies(rig, source: User, name: str = "") -> User:
    """Another client holding the same cookies: a stolen or copied session."""
    thief = rig.user(name)
    url = rig.server.make_url("/")
    for cookie in source.http.cookie_jar:
        thief.http.cookie_jar.update_cookies({cookie.key: cookie.value}, url)
    thief.csrf = source.csrf
    return thief


async def test_a_cookie_copied_before_sign_out_is_worthless_after_it(rig) -> None:
    alice = await rig.signed_in("alice")
    thief = copy_cookies(rig, alice)
    assert (await thief.get("/api/session")).json()["role"] == "supervisor"
    rig.web.hub.recheck = 0.2
    async with thief.http.get(rig.base + "/api/stream") as stream:
        await read_events(stream, lambda ev: bool(ev))
        out = await alice.post("/logout")
        assert out.status == 303
        # The open page of the copied cookie is told too, not just its next request.
        events = await read_events(stream, lambda ev: ev[-1][0] == "expired", timeout=3)
    assert events[-1] == ("expired", {})
    assert_error(await thief.get("/api/session"), 401, "unauthenticated")
    before = rig.redis_dump()
    assert_error(await thief.post("/api/dispatch/pause", {"reason": "x"}), 401, "unauthenticated")
    assert rig.redis_dump() == before and not rig.dialer.dispatcher.paused


async def test_sign_out_everywhere_ends_every_session_of_that_user_only(rig) -> None:
    laptop, phone = await rig.signed_in("alice"), await rig.signed_in("alice")
    victor = await rig.signed_in("victor")
    form = await laptop.request(
        "POST", "/logout", data={"csrf_token": laptop.csrf, "everywhere": "1"}
    )
    assert form.status == 303 and form.headers["Location"] == "/login"
    for device in (laptop, phone):
        assert_error(await device.get("/api/session"), 401, "unauthenticated")
    assert (await victor.get("/api/session")).status == 200


async def test_a_supervisor_ends_another_user_s_sessions_and_a_viewer_may_not(rig) -> None:
    alice = await rig.signed_in("alice")
    victor, victor_phone = await rig.signed_in("victor"), await rig.signed_in("victor")
    assert_error(await victor.post("/api/sessions/end", {"user": "alice"}), 403, "forbidden")
    assert_error(await alice.post("/api/sessions/end", {"user": "mallory"}), 404, "not_found")
    ended = await alice.post("/api/sessions/end", {"user": "victor"})
    assert (ended.status, ended.json()) == (200, {"user": "victor", "ended": 2})
    for device in (victor, victor_phone):
        assert_error(await device.get("/api/session"), 401, "unauthenticated")
    assert (await alice.get("/api/session")).status == 200


async def test_a_session_ends_when_idle_and_after_its_longest_life_however_busy(rig) -> None:
    web = rig.config.web
    book = rig.web.sessions.book
    book.clock = rig.time
    idle = rig.user("alice")
    await idle.login()
    busy = rig.user("alice")
    await busy.login()
    started = rig.time.now
    rig.time.now += web.session_idle - 30
    assert (await busy.get("/api/session")).status == 200  # used: idle time starts again
    rig.time.now += 60
    assert_error(await idle.get("/api/session"), 401, "unauthenticated")
    while rig.time.now + web.session_idle / 2 < started + web.session_max:
        rig.time.now += web.session_idle / 2
        assert (await busy.get("/api/session")).status == 200
    rig.time.now = started + web.session_max
    assert_error(await busy.get("/api/session"), 401, "unauthenticated")


async def test_without_redis_an_open_session_keeps_the_page_and_sign_in_says_why_not(
    make_config, tmp_path, own_redis
) -> None:
    config = users_config(
        make_config, tmp_path, redis={"url": own_redis.url, "socket_timeout": 0.5}
    )
    async with web_rig(config, spool=tmp_path / "s.jsonl", redis_url=own_redis.url) as rig:
        alice = await rig.signed_in("alice")
        ended = await rig.signed_in("alice")
        assert (await ended.post("/logout")).status == 303
        own_redis.stop()
        session = await alice.get("/api/session")
        assert session.status == 200 and session.json()["user"] == "alice"
        assert_error(await alice.get("/api/callbacks"), 503, "redis_unavailable")
        # Signed out here while Redis was away: still ended.
        copy = copy_cookies(rig, ended)
        assert_error(await copy.get("/api/session"), 401, "unauthenticated")
        assert_error(await rig.user("victor").login(), 503, "redis_unavailable", "sign-in")


# --------------------------------------------------------------------------- monitoring


async def test_metrics_health_and_the_api_document_can_be_closed_to_all_but_a_token(
    make_config, tmp_path
) -> None:
    config = users_config(
        make_config, tmp_path, web={"public": [], "metrics_token": "s3cr3t-scrape"}
    )
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        anyone = rig.user()
        viewer = await rig.signed_in("victor")
        for path in ("/metrics", "/healthz", "/api/openapi.json"):
            assert_error(await anyone.get(path), 401, "unauthenticated", "metrics_token")
            for wrong in ("Bearer nope", "s3cr3t-scrape", "Bearer s3cr3t-scrape2", "Basic x"):
                refused = await anyone.get(path, headers={"Authorization": wrong})
                assert_error(refused, 401, "unauthenticated")
            scraper = await anyone.get(path, headers={"Authorization": "Bearer s3cr3t-scrape"})
            assert scraper.status in (200, 503), (path, scraper.text)  # 503: health says why
            assert (await viewer.get(path)).status in (200, 503)
        # The token opens these three and nothing else.
        bearer = {"Authorization": "Bearer s3cr3t-scrape"}
        assert_error(await anyone.get("/api/callbacks", headers=bearer), 401, "unauthenticated")


async def test_each_monitoring_path_is_opened_or_closed_on_its_own(make_config, tmp_path) -> None:
    config = users_config(make_config, tmp_path, web={"public": ["healthz"]})
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        anyone = rig.user()
        assert (await anyone.get("/healthz")).status == 503  # open: says AMI is down
        assert_error(await anyone.get("/metrics"), 401, "unauthenticated")
        # No token configured: an empty bearer opens nothing.
        assert_error(
            await anyone.get("/metrics", headers={"Authorization": "Bearer "}),
            401,
            "unauthenticated",
        )


async def test_without_sign_in_an_open_page_is_never_told_its_session_ended(
    make_config, tmp_path
) -> None:
    async with web_rig(make_config(), spool=tmp_path / "s.jsonl") as rig:  # auth = "none"
        rig.web.hub.recheck = 0.05
        rig.web.hub.heartbeat = 0.1
        anyone = await rig.signed_in("")
        async with anyone.http.get(rig.base + "/api/stream") as stream:
            events = await read_events(stream, lambda ev: sum(k == "ping" for k, _ in ev) >= 3)
        assert "expired" not in {kind for kind, _ in events}
        assert_error(await anyone.post("/api/sessions/end", {}), 404, "no_sessions")


async def test_sessions_that_ran_out_by_themselves_leave_no_trace_in_redis(rig) -> None:
    store = rig.dialer.sessions
    for _ in range(3):
        await rig.signed_in("alice")
    # Their hashes expire (idle); the user's set must not keep them for ever.
    client = redis.Redis.from_url(rig.config.redis.url)
    try:
        mine = rig.queue.keys.user_sessions("alice")
        for digest in client.smembers(mine):
            client.delete(rig.queue.keys.session(digest.decode()))
        await rig.signed_in("alice")
        assert len(client.smembers(mine)) == 1
    finally:
        client.close()
    assert await store.end_sessions_of("alice") == 1
