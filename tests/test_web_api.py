"""The status page's API, metrics and health, through real HTTP against a real Redis."""

from __future__ import annotations

import ast
import asyncio
import json
import re
import time
import xml.etree.ElementTree as ET
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
import redis
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry, Resource
from rq import SimpleWorker

from callback_dialer.app import build_dialer
from callback_dialer.clock import ManualClock
from callback_dialer.config import ConfigError
from callback_dialer.jobs.common import connect, rq_queue
from callback_dialer.queue.models import Source, State
from callback_dialer.web.auth import Authority, hash_password, verify_password
from callback_dialer.web.ports import Commands, SessionStore, StatusSource
from callback_dialer.web.views import Views

from .conftest import REPO
from .test_jobs_support import purge_rq
from .test_web_support import (
    DONE,
    HOSTILE_NAMES,
    NEW,
    SUPPORT,
    Narrow,
    User,
    ami_section,
    missed,
    queue_member,
    seed_day,
    start_pbx,
    users_config,
    web_rig,
)

DEAD_REDIS = "redis://127.0.0.1:1/13"
BLOCKED = "+78001234567"


@pytest.fixture
async def rig(make_config, tmp_path):
    config = users_config(make_config, tmp_path, phone={"blocklist": ["+7800*"]})
    async with web_rig(config, spool=tmp_path / "spool.jsonl") as r:
        r.ids = await seed_day(r.queue, r.dialer.clock)
        yield r


async def waiting_ids(user: User) -> list[str]:
    answer = await user.get("/api/callbacks?state=waiting")
    assert answer.status == 200, answer.text
    return [c["id"] for c in answer.json()["callbacks"]]


async def history(rig, callback_id: str) -> list[Any]:
    return await rig.queue.history(callback_id)


def assert_error(answer, status: int, code: str, *words: str) -> None:
    assert answer.status == status, answer.text
    body = answer.json()
    assert body["error"] == code, body
    for word in words:
        assert word in body["message"], body


# --------------------------------------------------------------------------- passwords


def test_a_password_hash_verifies_its_password_only_and_is_salted() -> None:
    first, second = hash_password("correct horse", n=2**10), hash_password("correct horse", n=2**10)
    assert first != second  # a random salt each time
    assert first.startswith("scrypt$1024$8$1$")
    assert verify_password("correct horse", first)
    assert not verify_password("correct horsE", first)
    assert not verify_password("correct horse", "plain-text")
    assert not verify_password("correct horse", "scrypt$3$8$1$c2FsdA$a2V5")  # n not a power of 2


def test_a_user_whose_hash_is_not_ours_is_a_config_error_naming_them(make_config) -> None:
    config = make_config(
        web={
            "auth": "users",
            "users": [{"name": "alice", "role": "supervisor", "password_hash": "secret123"}],
        }
    )
    with pytest.raises(ConfigError, match="'alice': password_hash is not a hash made by"):
        Authority(config.web)


# --------------------------------------------------------------------------- who may do what


async def test_anonymous_requests_get_401_on_the_api_and_the_page_sends_them_to_sign_in(
    rig,
) -> None:
    anonymous = rig.user()
    for path in (
        "/api/callbacks",
        "/api/session",
        "/api/stream",
        "/api/stats",
        "/charts/hourly.svg",
        "/reports/callbacks-2026-11-22.csv",
    ):
        assert_error(await anonymous.get(path), 401, "unauthenticated")
    page = await anonymous.get("/")
    assert page.status == 302 and page.headers["Location"] == "/login"
    assert (await anonymous.get("/login")).status == 200
    assert (await anonymous.get("/api/openapi.json")).status == 200
    assert (await anonymous.get("/metrics")).status == 200
    assert (await anonymous.get("/healthz")).status == 503  # AMI not connected: not started
    assert_error(
        await anonymous.post(f"/api/callbacks/{rig.ids['new']}/call-now"), 401, "unauthenticated"
    )


async def test_a_wrong_password_gets_no_session_and_the_right_one_a_safe_cookie(rig) -> None:
    alice = rig.user("alice")
    wrong = await alice.login("not-her-password")
    assert_error(wrong, 401, "bad_login")
    assert "cbd_session" not in wrong.cookies
    nobody = rig.user("mallory")
    assert_error(await nobody.login("whatever-123"), 401, "bad_login")
    right = await alice.login()
    assert right.status == 200 and right.json()["role"] == "supervisor"
    cookie = right.cookies["cbd_session"]
    assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
    assert int(cookie["max-age"]) == rig.config.web.session_max
    session = (await alice.get("/api/session")).json()
    assert (session["user"], session["role"], session["can_act"]) == ("alice", "supervisor", True)


async def test_five_wrong_passwords_make_the_next_try_wait(rig) -> None:
    alice = rig.user("alice")
    for _ in range(5):
        assert (await alice.login("guess-guess")).status == 401
    assert_error(await alice.login(), 429, "throttled")
    # Another user from the same address is not locked out by alice's guesses.
    assert (await rig.user("victor").login()).status == 200


async def test_a_made_up_or_foreign_session_cookie_is_refused(rig) -> None:
    victor = await rig.signed_in("victor")
    value = victor.http.cookie_jar.filter_cookies(rig.server.make_url("/"))["cbd_session"].value
    # The cookie is a random token naming a session kept on the server: nothing in it to edit.
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", value)
    for forged in (value[:-1] + ("A" if value[-1] != "A" else "B"), "x" * 43, "alice", ""):
        intruder = rig.user()
        intruder.http.cookie_jar.update_cookies(
            SimpleCookie(f"cbd_session={forged}"), rig.server.make_url("/")
        )
        assert_error(await intruder.get("/api/session"), 401, "unauthenticated")
    # Redis holds a digest of the token, never the token itself.
    client = redis.Redis.from_url(rig.config.redis.url)
    try:
        stored = list(client.scan_iter(match=f"*{value}*"))
    finally:
        client.close()
    assert stored == []


async def test_the_sign_in_form_needs_its_csrf_token(rig) -> None:
    browser = rig.user()
    form = await browser.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)
    refused = await browser.request(
        "POST", "/login", data={"user": "alice", "password": "alice-password-1"}
    )
    assert_error(refused, 403, "csrf")
    accepted = await browser.request(
        "POST",
        "/login",
        data={"user": "alice", "password": "alice-password-1", "csrf_token": token},
    )
    assert accepted.status == 303 and accepted.headers["Location"] == "/"
    assert (await browser.get("/api/session")).json()["user"] == "alice"


async def test_signing_out_ends_the_session(rig) -> None:
    alice = await rig.signed_in("alice")
    assert_error(await alice.post("/logout", csrf=False), 403, "csrf")
    out = await alice.post("/logout")
    assert out.status == 303 and out.headers["Location"] == "/login"
    assert_error(await alice.get("/api/session"), 401, "unauthenticated")


def action_requests(ids: dict[str, str]) -> list[tuple[str, Any]]:
    """Every action, with a valid body."""
    return [
        (f"/api/callbacks/{ids['new']}/call-now", None),
        (f"/api/callbacks/{ids['new']}/cancel", {"reason": "duplicate"}),
        (f"/api/callbacks/{ids['new']}/category", {"category": "billing"}),
        ("/api/callbacks", {"number": "+79161239999", "category": "support"}),
        ("/api/dispatch/pause", {"reason": "meeting"}),
        ("/api/dispatch/resume", None),
        ("/api/jobs/rerun-failed", None),
        ("/api/jobs/some-job/rerun", None),
        ("/api/webhooks/rerun-parked", None),
        ("/api/reports", {"day": "2026-11-22"}),
        ("/api/outages", {"categories": ["support"], "prefixes": ["+7495123"]}),
        ("/api/outages/noc-1/end", {"choice": "drop"}),
    ]


async def test_a_viewer_is_refused_every_action_and_nothing_changes(rig, tmp_path) -> None:
    victor = await rig.signed_in("victor")
    before = rig.redis_dump()
    for path, body in action_requests(rig.ids):
        assert_error(await victor.post(path, body), 403, "forbidden", "victor", "supervisor")
    assert rig.redis_dump() == before
    assert not rig.dialer.dispatcher.paused
    assert not (tmp_path / "reports").exists()


async def test_an_action_without_the_right_csrf_token_or_from_another_site_changes_nothing(
    rig,
) -> None:
    alice = await rig.signed_in("alice")
    victor = await rig.signed_in("victor")
    before = rig.redis_dump()
    for path, body in action_requests(rig.ids):
        assert_error(await alice.post(path, body, csrf=False), 403, "csrf", "X-CSRF-Token")
        # A token is tied to its user and cookie: victor's does not work for alice.
        assert_error(
            await alice.post(path, body, headers={"X-CSRF-Token": victor.csrf}), 403, "csrf"
        )
        assert_error(
            await alice.post(path, body, headers={"Origin": "https://evil.example"}),
            403,
            "cross_site",
        )
    assert rig.redis_dump() == before
    assert not rig.dialer.dispatcher.paused


async def test_behind_a_proxy_the_header_names_the_user_and_config_the_role(
    make_config,
    tmp_path,
) -> None:
    config = make_config(
        web={
            "auth": "proxy",
            "proxy_user_header": "X-Remote-User",
            "trusted_proxies": ["127.0.0.1"],
            "users": [{"name": "alice", "role": "supervisor"}],
        }
    )
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        cb = await missed(rig.queue, NEW, "new_connection", 60)
        nobody = rig.user()
        assert_error(await nobody.get("/api/session"), 401, "unauthenticated", "X-Remote-User")
        assert_error(
            await nobody.get("/api/session", headers={"X-Remote-User": "<b>"}),
            401,
            "unauthenticated",
        )
        bob = rig.user()
        session = (await bob.get("/api/session", headers={"X-Remote-User": "bob"})).json()
        assert (session["user"], session["role"]) == ("bob", "viewer")  # proxy_default_role
        alice = rig.user()
        alice_headers = {"X-Remote-User": "alice"}
        session = (await alice.get("/api/session", headers=alice_headers)).json()
        assert session["role"] == "supervisor"
        ok = await alice.post(
            f"/api/callbacks/{cb}/call-now",
            headers={**alice_headers, "X-CSRF-Token": session["csrf_token"]},
        )
        assert ok.status == 200, ok.text
        assert (await rig.queue.history(cb))[-1].actor == "web:alice"


async def test_without_sign_in_everyone_is_a_supervisor_recorded_as_anonymous(
    make_config,
    tmp_path,
) -> None:
    async with web_rig(make_config(), spool=tmp_path / "s.jsonl") as rig:  # auth = "none"
        cb = await missed(rig.queue, NEW, "new_connection", 60)
        anyone = await rig.signed_in("")
        answer = await anyone.post(f"/api/callbacks/{cb}/cancel", {"reason": "test call"})
        assert answer.status == 200, answer.text
        assert (await rig.queue.history(cb))[-1].actor == "web:anonymous"
        assert (await anyone.get("/login")).status == 302  # nothing to sign in to


# --------------------------------------------------------------------------- actions


async def test_call_now_puts_the_callback_first_and_records_who(rig) -> None:
    alice = await rig.signed_in("alice")
    assert await waiting_ids(alice) == [rig.ids["new"], rig.ids["support"], rig.ids["retry"]]
    answer = await alice.post(f"/api/callbacks/{rig.ids['support']}/call-now")
    assert answer.status == 200, answer.text
    assert answer.json()["callback"]["pinned"] is True
    assert (await waiting_ids(alice))[0] == rig.ids["support"]
    last = (await history(rig, rig.ids["support"]))[-1]
    assert (last.event, last.actor) == ("call_now", "web:alice")
    # A scheduled retry called now is ready at once.
    answer = await alice.post(f"/api/callbacks/{rig.ids['retry']}/call-now")
    assert answer.json()["callback"]["state"] == "pending"


async def test_cancel_closes_the_callback_with_the_reason_and_who(rig) -> None:
    alice = await rig.signed_in("alice")
    answer = await alice.post(
        f"/api/callbacks/{rig.ids['new']}/cancel", {"reason": "  called us by email  "}
    )
    assert answer.status == 200, answer.text
    assert answer.json()["previous_state"] == "pending"
    cb = await rig.queue.get(rig.ids["new"])
    assert (cb.state, cb.reason) == (State.CANCELLED, "called us by email")
    last = (await history(rig, rig.ids["new"]))[-1]
    assert (last.event, last.reason, last.actor) == ("cancelled", "called us by email", "web:alice")
    assert rig.ids["new"] not in await waiting_ids(alice)


async def test_change_category_records_from_to_and_who(rig) -> None:
    alice = await rig.signed_in("alice")
    answer = await alice.post(
        f"/api/callbacks/{rig.ids['support']}/category", {"category": "new_connection"}
    )
    assert answer.status == 200, answer.text
    assert (await rig.queue.get(rig.ids["support"])).category == "new_connection"
    last = (await history(rig, rig.ids["support"]))[-1]
    assert (last.event, last.actor, last.detail) == (
        "category_changed",
        "web:alice",
        {"from": "support", "to": "new_connection"},
    )
    # Waited longer and now has the head start too: it goes first.
    assert (await waiting_ids(alice))[0] == rig.ids["support"]


async def test_add_by_hand_creates_a_manual_callback_recorded_with_who(rig) -> None:
    alice = await rig.signed_in("alice")
    answer = await alice.post(
        "/api/callbacks",
        {
            "number": "+79161239999",
            "category": "billing",
            "name": "Anna\x07 Ivanova",
            "note": "asked at the office",
        },
    )
    assert answer.status == 201, answer.text
    created = answer.json()
    assert created["result"] == "created"
    cb = await rig.queue.get(created["callback"]["id"])
    assert (cb.number, cb.source, cb.name, cb.note) == (
        "+79161239999",
        Source.MANUAL,
        "Anna Ivanova",
        "asked at the office",
    )
    first = (await history(rig, cb.id))[0]
    assert (first.event, first.actor) == ("created", "web:alice")
    # The same number again joins the open callback instead of a second one.
    again = await alice.post("/api/callbacks", {"number": "+79161239999", "category": "billing"})
    assert again.status == 200 and again.json()["result"] == "merged"
    assert (await rig.queue.get(cb.id)).missed_count == 2


async def test_pause_and_resume_are_recorded_with_who(rig) -> None:
    alice = await rig.signed_in("alice")
    paused = await alice.post("/api/dispatch/pause", {"reason": "team meeting"})
    assert paused.status == 200, paused.text
    assert paused.json() | {} == {
        **paused.json(),
        "paused": True,
        "paused_by": "web:alice",
        "paused_reason": "team meeting",
        "dispatching": False,
        "blocked_by": "paused",
    }
    control = redis.Redis.from_url(rig.config.redis.url).hgetall(rig.queue.keys.control())
    assert (control[b"paused"], control[b"by"]) == (b"1", b"web:alice")
    resumed = await alice.post("/api/dispatch/resume")
    assert resumed.json()["paused"] is False and resumed.json()["paused_by"] == "web:alice"


# --------------------------------------------------------------------------- bad input


async def test_an_unknown_callback_is_404_and_nothing_changes(rig) -> None:
    alice = await rig.signed_in("alice")
    before = rig.redis_dump()
    for bad in ("cb-999", "1:history", "cb-1:history", "..", "%2e%2e"):
        assert_error(await alice.get(f"/api/callbacks/{bad}"), 404, "not_found")
        assert_error(await alice.post(f"/api/callbacks/{bad}/call-now"), 404, "not_found")
        assert_error(
            await alice.post(f"/api/callbacks/{bad}/cancel", {"reason": "x"}), 404, "not_found"
        )
        assert_error(
            await alice.post(f"/api/callbacks/{bad}/category", {"category": "billing"}),
            404,
            "not_found",
        )
    assert rig.redis_dump() == before


async def test_an_unknown_category_is_400_naming_the_allowed_ones_and_nothing_changes(
    rig,
) -> None:
    alice = await rig.signed_in("alice")
    before = rig.redis_dump()
    assert_error(
        await alice.post(f"/api/callbacks/{rig.ids['new']}/category", {"category": "vip"}),
        400,
        "unknown_category",
        "'vip'",
        "new_connection, support, billing, other",
    )
    assert_error(
        await alice.post("/api/callbacks", {"number": "+79161239999", "category": "vip"}),
        400,
        "unknown_category",
        "'vip'",
    )
    assert_error(
        await alice.post(f"/api/callbacks/{rig.ids['new']}/category", {}),
        400,
        "missing_field",
        "category",
    )
    assert rig.redis_dump() == before


async def test_an_empty_or_too_long_cancel_reason_is_400_and_nothing_changes(rig) -> None:
    alice = await rig.signed_in("alice")
    before = rig.redis_dump()
    path = f"/api/callbacks/{rig.ids['new']}/cancel"
    assert_error(await alice.post(path, {"reason": ""}), 400, "missing_field", "reason")
    assert_error(await alice.post(path, {"reason": "   \t "}), 400, "missing_field", "reason")
    assert_error(await alice.post(path), 400, "missing_field", "reason")
    assert_error(await alice.post(path, {"reason": "x" * 201}), 400, "too_long", "200")
    assert_error(await alice.post(path, {"reason": 42}), 400, "bad_field", "string")
    assert rig.redis_dump() == before


@pytest.mark.parametrize(
    "spelling",
    ["89161239999", "+7 916 123 99 99", "8 (916) 123-99-99", "9161239999", "+79161239999"],
)
async def test_add_by_hand_takes_any_spelling_the_phone_policy_takes(rig, spelling) -> None:
    alice = await rig.signed_in("alice")
    answer = await alice.post("/api/callbacks", {"number": spelling, "category": "support"})
    assert answer.status == 201, answer.text
    assert (await rig.queue.get(answer.json()["callback"]["id"])).number == "+79161239999"


async def test_a_number_the_policy_refuses_is_400_naming_why_and_nothing_changes(rig) -> None:
    alice = await rig.signed_in("alice")
    before = rig.redis_dump()
    for bad, why in (
        ("hello", "not a number"),
        ("+7916", "too short"),
        ("102", "internal"),
        ("anonymous", "anonymous"),
        ("", "must not be empty"),
        ("+79161234567;Local/1@evil", "not a number"),
        ("+79161234567\r\nAction: Originate", "not a number"),
        (BLOCKED, "blocked"),
    ):
        answer = await alice.post("/api/callbacks", {"number": bad, "category": "support"})
        assert answer.status == 400, (bad, answer.text)
        assert "number" in answer.json()["message"] and why in answer.json()["message"], bad
    assert_error(
        await alice.post("/api/callbacks", {"category": "support"}), 400, "missing_field", "number"
    )
    assert rig.redis_dump() == before


async def test_every_callback_of_a_number_is_found_in_any_spelling_finished_ones_too(rig) -> None:
    alice = await rig.signed_in("alice")
    victor = await rig.signed_in("victor")
    # DONE's callback is finished; a new missed call opens a second one for the same number.
    again = await missed(rig.queue, DONE, "support", 10)
    for spelling in (
        "+79161230004",
        "8 916 123-00-04",
        "(916) 123 00 04",
        "８９１６１２３０００４",
    ):
        found = (await alice.get(f"/api/callbacks?number={quote(spelling)}")).json()
        assert [(c["id"], c["state"]) for c in found["callbacks"]] == [
            (again, "pending"),
            (rig.ids["done"], "done"),
        ], spelling
    seen = (await victor.get("/api/callbacks?number=89161230004")).json()["callbacks"]
    assert {c["number"] for c in seen} == {"+7••••••••04"}
    only_done = await alice.get("/api/callbacks?number=89161230004&state=finished")
    assert [c["id"] for c in only_done.json()["callbacks"]] == [rig.ids["done"]]
    assert (await alice.get("/api/callbacks?number=+79160000000")).json()["count"] == 0
    assert_error(await alice.get("/api/callbacks?number=hello"), 400, "bad_number", "not a number")
    # Its history, even finished: every step and who took it.
    detail = (await alice.get(f"/api/callbacks/{rig.ids['done']}")).json()
    assert [h["event"] for h in detail["history"]] == ["created", "claimed", "stage", "done"]


async def test_malformed_bodies_are_refused_with_a_message_and_nothing_changes(rig) -> None:
    alice = await rig.signed_in("alice")
    before = rig.redis_dump()
    path = f"/api/callbacks/{rig.ids['new']}/cancel"
    assert_error(
        await alice.request("POST", path, data="reason=x", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
        "application/json",
    )
    assert_error(
        await alice.request(
            "POST", path, data="{nope", headers={"Content-Type": "application/json"}
        ),
        400,
        "bad_json",
    )
    assert_error(await alice.post(path, ["reason"]), 400, "bad_json", "object")
    assert_error(
        await alice.post(path, {"reason": "x", "state": "done"}), 400, "unknown_field", "'state'"
    )
    assert_error(
        await alice.post(
            "/api/callbacks", {"number": "+79161239999", "category": "support", "name": "n" * 65}
        ),
        400,
        "too_long",
        "name",
    )
    assert_error(await alice.post("/api/dispatch/pause", {"reason": ["a"]}), 400, "bad_field")
    assert rig.redis_dump() == before
    assert not rig.dialer.dispatcher.paused


async def test_acting_on_a_finished_callback_is_409_and_nothing_changes(rig) -> None:
    alice = await rig.signed_in("alice")
    before = rig.redis_dump()
    done = rig.ids["done"]
    assert_error(await alice.post(f"/api/callbacks/{done}/call-now"), 409, "not_open", "done")
    assert_error(
        await alice.post(f"/api/callbacks/{done}/cancel", {"reason": "x"}), 409, "not_open", "done"
    )
    assert_error(
        await alice.post(f"/api/callbacks/{done}/category", {"category": "other"}), 409, "not_open"
    )
    assert rig.redis_dump() == before


async def test_bad_filters_are_400_naming_what_is_allowed(rig) -> None:
    alice = await rig.signed_in("alice")
    assert_error(await alice.get("/api/callbacks?state=lost"), 400, "bad_state", "waiting")
    assert_error(await alice.get("/api/callbacks?category=vip"), 400, "unknown_category")
    assert_error(await alice.get("/api/callbacks?day=2026-13-40"), 400, "bad_day")
    assert_error(await alice.get("/api/callbacks?limit=0"), 400, "bad_limit")
    assert_error(await alice.get("/api/callbacks?limit=ten"), 400, "bad_limit")
    assert_error(await alice.get("/api/stats?day=yesterday"), 400, "bad_day", "2026-11-23")
    assert_error(await alice.get("/charts/hourly.svg?day=1;drop"), 400, "bad_day")


# --------------------------------------------------------------------------- reading


async def test_callbacks_can_be_filtered_by_state_category_and_day(rig) -> None:
    alice = await rig.signed_in("alice")
    waiting = (await alice.get("/api/callbacks?state=waiting")).json()["callbacks"]
    assert [(c["id"], c["position"], c["state"]) for c in waiting] == [
        (rig.ids["new"], 1, "pending"),
        (rig.ids["support"], 2, "pending"),
        (rig.ids["retry"], 3, "scheduled"),
    ]
    support = (await alice.get("/api/callbacks?state=waiting&category=support")).json()
    assert [c["id"] for c in support["callbacks"]] == [rig.ids["support"], rig.ids["retry"]]
    done = (await alice.get("/api/callbacks?state=done")).json()["callbacks"]
    assert {c["id"] for c in done} == {rig.ids["done"], rig.ids["served"]}
    day = rig.queue.hours.day_key(rig.dialer.clock.now())
    whole_day = (await alice.get(f"/api/callbacks?day={day}")).json()
    assert whole_day["count"] == 7
    failed = (await alice.get(f"/api/callbacks?day={day}&state=failed")).json()["callbacks"]
    assert [(c["id"], c["reason"]) for c in failed] == [(rig.ids["failed"], "no_answer")]
    assert (await alice.get("/api/callbacks?day=2020-01-01")).json()["count"] == 0
    assert (await alice.get("/api/callbacks?state=waiting&limit=1")).json()["count"] == 1


async def test_one_callback_comes_with_its_history(rig) -> None:
    alice = await rig.signed_in("alice")
    body = (await alice.get(f"/api/callbacks/{rig.ids['done']}")).json()
    assert body["callback"]["number"] == DONE and body["callback"]["state"] == "done"
    assert [h["event"] for h in body["history"]] == ["created", "claimed", "stage", "done"]
    assert body["callback"]["attempt_log"][0]["outcome"] == "answered"


async def test_stats_of_a_day_count_missed_calls_fates_and_times(rig) -> None:
    clock = rig.dialer.clock
    yesterday_noon = clock.now() - 86400
    await rig.queue.add_missed(
        number="+79161238888",
        category="support",
        source=Source.ABANDON,
        missed_at=yesterday_noon,
        call_id="y1",
    )
    alice = await rig.signed_in("alice")
    stats = (await alice.get("/api/stats")).json()
    assert stats["missed"] == {
        "total": 7,
        "by_category": {"billing": 2, "new_connection": 1, "other": 1, "support": 3},
        "by_source": {"abandon": 5, "explicit": 1, "ivr_hangup": 1},
    }
    assert (
        stats["callbacks"],
        stats["called_back"],
        stats["failed"],
        stats["cancelled"],
        stats["served_inbound"],
        stats["open"],
    ) == (7, 1, 1, 1, 1, 3)
    assert stats["failed_by_reason"] == {"no_answer": 1}
    assert stats["success_rate"] == 0.5
    # Rung after 300 s (done), 1200 s (failed), 30 s (the retry).
    assert stats["time_to_callback"] == {"count": 3, "median_seconds": 300.0, "p90_seconds": 1200.0}
    # Target 15 minutes: two of the three we called; none of the others is late yet.
    assert stats["within_target"] == {"count": 2, "of": 3, "share": pytest.approx(2 / 3)}
    billing = next(c for c in stats["by_category"] if c["category"] == "billing")
    assert (billing["missed"], billing["called_back"], billing["failed"]) == (2, 1, 1)
    hour = rig.queue.hours.hour(yesterday_noon)
    assert stats["hourly"]["week_missed"][hour] == round(1 / 7, 2)
    assert sum(stats["hourly"]["missed"]) == 7 and sum(stats["hourly"]["called_back"]) == 1
    yesterday = (
        await alice.get(f"/api/stats?day={rig.queue.hours.day_key(yesterday_noon)}")
    ).json()
    assert (yesterday["today"], yesterday["missed"]["total"], yesterday["open"]) == (False, 1, 1)


async def test_agents_and_calls_in_progress_come_from_the_live_dialer(
    make_config,
    tmp_path,
) -> None:
    pbx = await start_pbx(
        [
            queue_member("sales", "101"),
            queue_member("support", "102", paused=True, reason="lunch"),
        ]
    )
    config = users_config(make_config, tmp_path, ami=ami_section(pbx))
    async with web_rig(config, spool=tmp_path / "s.jsonl", pbx=pbx, start=True) as rig:
        alice = await rig.signed_in("alice")
        cb = await missed(rig.queue, NEW, "new_connection", 60, name="Ivan")
        deadline = time.monotonic() + 5
        while True:
            flights = (await alice.get("/api/in-progress")).json()["in_progress"]
            if [f["stage"] for f in flights] == ["ringing_agent"]:
                break
            assert time.monotonic() < deadline, f"no call ringing the agent: {flights}"
            await asyncio.sleep(0.05)
        assert [(f["id"], f["agent"], f["number"], f["name"], f["stage"]) for f in flights] == [
            (cb, "Local/101@agents/n", NEW, "Ivan", "ringing_agent")
        ]
        assert flights[0]["adopted"] is False  # placed by this dialer, not taken over
        # The same attempt, had it been adopted from a killed run: the page marks it.
        views = Views(config, rig.dialer.status)
        (attempt,) = rig.dialer.dispatcher.inflight.values()
        adopted = {**attempt.view(rig.dialer.clock.now()), "adopted": True}
        assert views.in_progress([adopted], [], masked=False)[0]["adopted"] is True
        agents = {a["interface"]: a for a in (await alice.get("/api/agents")).json()["agents"]}
        assert agents["Local/101@agents/n"]["state"] == "reserved"
        assert agents["Local/101@agents/n"]["categories"] == ["new_connection"]
        assert (
            agents["Local/102@agents/n"]["state"],
            agents["Local/102@agents/n"]["paused_reason"],
        ) == ("paused", "lunch")
        assert agents["Local/102@agents/n"]["categories"] == ["support", "billing", "other"]
        assert_error(
            await alice.post(f"/api/callbacks/{cb}/call-now"), 409, "busy", "being called right now"
        )
        # Cancelling a callback being called hangs its call up.
        answer = await alice.post(f"/api/callbacks/{cb}/cancel", {"reason": "wrong number"})
        assert answer.json()["previous_state"] == "dialing"
        deadline = time.monotonic() + 5
        while rig.dialer.dispatcher.inflight:
            assert time.monotonic() < deadline, "the attempt was not abandoned"
            await asyncio.sleep(0.05)


# --------------------------------------------------------------------------- masking, names


async def test_a_viewer_sees_masked_numbers_and_a_supervisor_whole_ones(rig) -> None:
    await rig.queue.cancel(
        rig.ids["support"], f"customer asked to use {NEW} instead", actor="web:alice"
    )
    victor = await rig.signed_in("victor")
    alice = await rig.signed_in("alice")
    seen = (await victor.get("/api/callbacks?state=waiting")).json()["callbacks"][0]
    assert seen["number"] == "+7••••••••01"
    assert (await alice.get("/api/callbacks?state=waiting")).json()["callbacks"][0]["number"] == NEW
    detail = (await victor.get(f"/api/callbacks/{rig.ids['support']}")).json()
    assert detail["callback"]["number"] == "+7••••••••02"
    assert NEW not in json.dumps(detail, ensure_ascii=False)  # not even in the reason
    assert "+7••••••••01" in detail["history"][-1]["reason"]
    every = (await victor.get(f"/api/callbacks?day={detail['callback']['day']}")).text
    assert not re.search(r"\+7916\d{7}", every)
    session = (await victor.get("/api/session")).json()
    assert (session["role"], session["masked"], session["can_act"]) == ("viewer", True, False)


# A run of six digits or more, whatever stands between them: what masking must leave none of.
NUMBER_SHAPED = re.compile(r"\d(?:[\s\-().\[\]/_+]*\d){5,}")


def texts(value: Any) -> list[str]:
    """Every string in a JSON value (numbers such as timestamps are not text)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in [k, *texts(v)]]
    if isinstance(value, list):
        return [t for v in value for t in texts(v)]
    return []


def number_shaped(value: Any) -> list[str]:
    """The texts holding a number (a day like 2026-11-23 is not one)."""
    return [t for t in texts(value) if NUMBER_SHAPED.search(re.sub(r"\d{4}-\d{2}-\d{2}", "", t))]


async def test_a_viewer_sees_nothing_number_shaped_in_names_notes_reasons_or_history(
    rig,
) -> None:
    alice = await rig.signed_in("alice")
    victor = await rig.signed_in("victor")
    named = await missed(rig.queue, "+79031234567", "support", 90, name="+79031234567")
    noted = await alice.post(
        "/api/callbacks",
        {
            "number": "+79161239999",
            "category": "billing",
            "name": "8 (916) 123-99-99",
            "note": "перезвонить на +7 (903) 765-43-21 или 8 926 000-11-22",
        },
    )
    assert noted.status == 201, noted.text
    cancelled = await alice.post(
        f"/api/callbacks/{rig.ids['support']}/cancel",
        {"reason": "просил звонить на 8-916-555-44-33, не на этот"},
    )
    assert cancelled.status == 200, cancelled.text
    await alice.post("/api/dispatch/pause", {"reason": "клиент ٨٩١٦١٢٣٤٥٦٧ жалуется"})
    day = rig.queue.hours.day_key(rig.dialer.clock.now())
    paths = [
        "/api/callbacks",
        "/api/callbacks?state=waiting",
        "/api/callbacks?state=finished",
        f"/api/callbacks?day={day}",
        f"/api/callbacks/{named}",
        f"/api/callbacks/{noted.json()['callback']['id']}",
        f"/api/callbacks/{rig.ids['support']}",
        "/api/in-progress",
        "/api/agents",
        "/api/dispatch",
        "/api/stats",
    ]
    for path in paths:
        seen = (await victor.get(path)).json()
        assert number_shaped(seen) == [], path
    # The supervisor sees it all, so the check above looks where the numbers are.
    whole = [number_shaped((await alice.get(path)).json()) for path in paths]
    assert any("+79031234567" in t for found in whole for t in found)
    assert any("8-916-555-44-33" in t for found in whole for t in found)
    assert any("765-43-21" in t for found in whole for t in found)
    detail = (await victor.get(f"/api/callbacks/{noted.json()['callback']['id']}")).json()
    assert detail["callback"]["name"] == "+7••••••••99"
    assert detail["callback"]["note"] == "перезвонить на +7••••••••21 или +7••••••••22"
    async with victor.http.get(rig.base + "/api/stream") as stream:
        events = await read_events(stream, lambda ev: {"snapshot", "stats"} <= {k for k, _ in ev})
    assert number_shaped([data for _, data in events]) == []
    assert "+7••••••••67" in json.dumps(snapshots(events)[0], ensure_ascii=False)


async def test_notes_and_reasons_lose_control_and_bidi_characters_before_they_are_stored(
    rig,
) -> None:
    alice = await rig.signed_in("alice")
    added = await alice.post(
        "/api/callbacks",
        {"number": "+79161239999", "category": "billing", "note": "line one\r\nline\u202e two\x00"},
    )
    assert added.status == 201, added.text
    cb = await rig.queue.get(added.json()["callback"]["id"])
    assert cb.note == "line one line two"
    answer = await alice.post(
        f"/api/callbacks/{cb.id}/cancel", {"reason": "\u202eemail\r\n\u0000 from client"}
    )
    assert answer.status == 200, answer.text
    assert (await rig.queue.get(cb.id)).reason == "email from client"
    assert (await rig.queue.history(cb.id))[-1].reason == "email from client"
    before = rig.redis_dump()
    assert_error(
        await alice.post(f"/api/callbacks/{rig.ids['new']}/cancel", {"reason": "\u202e\r\n\x00"}),
        400,
        "missing_field",
        "reason",
    )
    assert rig.redis_dump() == before
    await alice.post("/api/dispatch/pause", {"reason": "lunch\u202e\n"})
    assert (await alice.get("/api/dispatch")).json()["paused_reason"] == "lunch"


async def test_numbers_are_whole_for_viewers_when_masking_is_off(make_config, tmp_path) -> None:
    config = users_config(make_config, tmp_path, web={"mask_numbers_for_viewers": False})
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        await missed(rig.queue, NEW, "new_connection", 60)
        victor = await rig.signed_in("victor")
        assert (await victor.get("/api/callbacks")).json()["callbacks"][0]["number"] == NEW


async def test_hostile_names_come_back_verbatim_as_json_text_never_as_markup(rig) -> None:
    ids = [
        await missed(rig.queue, f"+7916123100{i}", "support", 30, name=name)
        for i, name in enumerate(HOSTILE_NAMES)
    ]
    alice = await rig.signed_in("alice")
    answer = await alice.get("/api/callbacks?state=waiting")
    assert answer.headers["Content-Type"].startswith("application/json")
    names = {c["id"]: c["name"] for c in answer.json()["callbacks"]}
    assert [names[i] for i in ids] == list(HOSTILE_NAMES)
    page = await alice.get("/")
    assert "onerror" not in page.text and "alert(" not in page.text
    # The page may run only our own script, so even a slip could not execute.
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in page.headers["Content-Security-Policy"]


# --------------------------------------------------------------------------- the words


STATIC = REPO / "callback_dialer" / "web" / "static"
# Every word the history can hold (the queue's scripts and settle calls), and what the
# dispatcher says when it cannot dispatch.
HISTORY_EVENTS = [
    "created",
    "merged",
    "claimed",
    "stage",
    "due",
    "lease_expired",
    "cancelled",
    "category_changed",
    "call_now",
    "scheduled",
    "done",
    "failed",
    "retry",
    "released",
    "served_inbound",
    "served_outbound",
]
NOT_DISPATCHING = ("paused", "stopping", "ami_down", "resyncing", "outside_calling_hours")


def test_every_word_the_page_can_show_is_in_both_languages() -> None:
    from callback_dialer.dispatch.outcome import Reason
    from callback_dialer.web.openapi import AGENT_STATES, STAGES, STATES

    strings = json.loads((STATIC / "i18n.json").read_text("utf-8"))
    assert set(strings["en"]) == set(strings["ru"])
    script = (STATIC / "app.js").read_text("utf-8")
    page = (STATIC / "index.html").read_text("utf-8")
    used = set(re.findall(r"\bt(?:Or)?\(\s*\"([a-z0-9_]*[a-z0-9])\"", script))
    used |= set(re.findall(r'data-i18n(?:-placeholder|-title)?="([a-z0-9_]+)"', page))
    families = {
        "state_": STATES,
        "stage_": STAGES,
        "agent_": AGENT_STATES,
        "blocked_": NOT_DISPATCHING,
        "event_": HISTORY_EVENTS,
        "source_": [s.value for s in Source],
        "reason_": [r.value for r in Reason] + ["expired", "lease_expired", "due"],
        "actor_": ["system", "dispatcher", "pbx", "config", "anonymous"],
    }
    for prefix, values in families.items():
        assert prefix in script, prefix  # the page does look these up
        used |= {prefix + v for v in values}
    assert sorted(k for k in used if k not in strings["ru"]) == []
    # Translated, not copied: a Russian string holding an English word is a leftover.
    english = [
        k for k in used if re.search(r"[A-Za-z]{3}", re.sub(r"\{\w+\}", "", strings["ru"][k]))
    ]
    assert sorted(english) == ["redis_down", "redis_ok"]  # "Redis" is a name


# --------------------------------------------------------------------------- the interfaces

# What the web layer may import of the product: data types, config, the queue's errors and
# result types, the report files, and nothing that runs the dialer.
WEB_MAY_IMPORT = {
    "callback_dialer.__version__",
    "callback_dialer.config",
    "callback_dialer.logs",
    "callback_dialer.metrics",
    "callback_dialer.phone",
    "callback_dialer.queue.models",
    "callback_dialer.queue.store",
    "callback_dialer.jobs",
    "callback_dialer.jobs.reports",
    "callback_dialer.jobs.admin",
}


def web_imports() -> set[tuple[str, str]]:
    """(file, module) for every module of the product or Redis a web module imports, at any
    level (function bodies and TYPE_CHECKING blocks included)."""
    found = set()
    for path in sorted((REPO / "callback_dialer" / "web").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = ["callback_dialer", "web"][: 3 - node.level]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                names = [module] if node.module or not node.level else []
                names += [f"{module}.{a.name}" for a in node.names if not node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in ("callback_dialer", "redis", "rq", "panoramisk"):
                    found.add((path.name, name))
    return found


def test_the_web_imports_no_part_that_runs_the_dialer() -> None:
    used = web_imports()
    assert ("server.py", "callback_dialer.web.api") in used  # the check sees relative imports
    outside = {
        (file, name)
        for file, name in used
        if not name.startswith("callback_dialer.web") and name not in WEB_MAY_IMPORT
    }
    assert outside == set()


async def test_the_page_sees_the_dialer_through_its_interfaces_and_no_further(
    make_config, tmp_path
) -> None:
    dialer = build_dialer(make_config(), clock=ManualClock(), spool=tmp_path / "s.jsonl")
    try:
        status = Narrow(dialer.status, StatusSource)
        assert status.now() == dialer.clock.now()
        assert status.dispatch_state().paused is False
        for reach in ("_dispatcher", "_queue", "_ami", "config"):
            with pytest.raises(AttributeError, match=f"StatusSource has no '{reach}'"):
                getattr(status, reach)
        with pytest.raises(AttributeError, match="Commands has no '_dispatcher'"):
            Narrow(dialer.commands, Commands)._dispatcher  # noqa: B018
        with pytest.raises(AttributeError, match="SessionStore has no '_redis'"):
            Narrow(dialer.sessions, SessionStore)._redis  # noqa: B018
        # An implementation missing a member, or taking other parameters, is refused.
        with pytest.raises(AssertionError, match=r"DialerCommands lacks StatusSource\."):
            Narrow(dialer.commands, StatusSource)

        class OtherPause:
            def __getattr__(self, name: str) -> Any:
                return getattr(dialer.commands, name)

            async def pause(self, who: str, reason: str) -> None: ...

        with pytest.raises(AssertionError, match="pause does not take what Commands says"):
            Narrow(OtherPause(), Commands)
    finally:
        await dialer.stop()


# --------------------------------------------------------------------------- the document


def route_paths(app) -> set[str]:
    out = set()
    for resource in app.router.resources():
        path = resource.canonical
        if path.startswith("/api/"):
            out.add(re.sub(r"\{(\w+)(:[^}]*)?\}", r"{\1}", path))
    return out


async def test_the_openapi_document_is_valid_and_covers_every_api_route(rig) -> None:
    document = (await rig.user().get("/api/openapi.json")).json()
    validate_openapi(document)
    assert set(document["paths"]) == route_paths(rig.server.app) | {"/login"}
    assert document["components"]["parameters"]["CsrfToken"]["name"] == "X-CSRF-Token"


def schema_checker(document: dict[str, Any]):
    registry = Registry().with_resource(
        "urn:api",
        Resource.from_contents(
            {**document, "$schema": "https://json-schema.org/draft/2020-12/schema"}
        ),
    )

    def check(name: str, instance: Any) -> None:
        validator = Draft202012Validator(
            {"$ref": f"urn:api#/components/schemas/{name}"}, registry=registry
        )
        errors = sorted(validator.iter_errors(instance), key=lambda e: e.path)
        assert not errors, f"{name}: {errors[0].message} at {list(errors[0].path)}"

    return check


async def test_real_answers_match_the_openapi_schemas(rig) -> None:
    alice = await rig.signed_in("alice")
    check = schema_checker((await alice.get("/api/openapi.json")).json())
    check("Session", (await alice.get("/api/session")).json())
    check("CallbackList", (await alice.get("/api/callbacks")).json())
    check("CallbackList", (await alice.get("/api/callbacks?state=waiting")).json())
    check("CallbackDetail", (await alice.get(f"/api/callbacks/{rig.ids['done']}")).json())
    check("AgentList", (await alice.get("/api/agents")).json())
    check("InProgressList", (await alice.get("/api/in-progress")).json())
    check("Stats", (await alice.get("/api/stats")).json())
    check("Dispatch", (await alice.get("/api/dispatch")).json())
    check("Jobs", (await alice.get("/api/jobs")).json())
    check("ActionResult", (await alice.post(f"/api/callbacks/{rig.ids['new']}/call-now")).json())
    check(
        "ActionResult",
        (
            await alice.post("/api/callbacks", {"number": "+79161239999", "category": "other"})
        ).json(),
    )
    check("Error", (await alice.get("/api/callbacks/cb-999")).json())
    declared = (await alice.post("/api/outages", {"message": "Cable cut"})).json()
    check("OutageResult", declared)
    await missed(rig.queue, "+74951230001", "support", 5)
    check("CallbackList", (await alice.get("/api/callbacks?state=held")).json())
    check("Snapshot", await rig.web.hub.snapshot(masked=False))
    ended = await alice.post(f"/api/outages/{declared['outage']['id']}/end", {"choice": "drop"})
    check("OutageResult", ended.json())
    check("Outage", (await alice.get("/api/outages")).json()["outages"][0])


# --------------------------------------------------------------------------- operations


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


async def test_metrics_show_depth_by_category_oldest_wait_and_the_links(rig) -> None:
    text = (await rig.user().get("/metrics")).text
    assert (
        metric(text, 'callback_dialer_queue_depth{category="new_connection",state="pending"}') == 1
    )
    assert metric(text, 'callback_dialer_queue_depth{category="support",state="pending"}') == 1
    assert metric(text, 'callback_dialer_queue_depth{category="support",state="scheduled"}') == 1
    assert metric(text, "callback_dialer_oldest_waiting_seconds") == 600
    assert metric(text, "callback_dialer_ami_connected") == 0
    assert metric(text, "callback_dialer_redis_reachable") == 1
    assert metric(text, 'callback_dialer_side_jobs{state="failed"}') == 0
    assert metric(text, "callback_dialer_status_page_streams") == 0
    for family in (
        "callback_dialer_missed_calls_total counter",
        "callback_dialer_callback_outcomes_total counter",
        "callback_dialer_originate_to_answer_seconds histogram",
    ):
        assert f"# TYPE {family}" in text
    assert 'callback_dialer_originate_to_answer_seconds_bucket{le="+Inf"} 0' in text


async def test_metrics_still_answer_when_redis_is_down(make_config, tmp_path) -> None:
    config = make_config(redis={"url": DEAD_REDIS, "socket_timeout": 0.5})
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        answer = await rig.user().get("/metrics")
        assert answer.status == 200
        assert metric(answer.text, "callback_dialer_redis_reachable") == 0
        assert "# TYPE callback_dialer_outcomes_total" not in answer.text
        assert "# TYPE callback_dialer_callback_outcomes_total counter" in answer.text


async def test_healthz_names_what_is_down_and_is_200_when_all_is_up(make_config, tmp_path) -> None:
    config = make_config(redis={"url": DEAD_REDIS, "socket_timeout": 0.5})
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        answer = await rig.user().get("/healthz")
        assert answer.status == 503
        me = rig.dialer.leadership.instance
        assert answer.json() == {
            "ok": False,
            "problems": ["AMI not connected: not connected yet", "Redis not reachable"],
            "instance": me,
            "leader": "",  # nobody is known to lead: Redis cannot say
        }
    pbx = await start_pbx([queue_member("sales", "101")])
    async with web_rig(
        make_config(ami=ami_section(pbx)), spool=tmp_path / "t.jsonl", pbx=pbx, start=True
    ) as rig:
        deadline = time.monotonic() + 5
        while not rig.dialer.ami.authenticated:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        answer = await rig.user().get("/healthz")
        me = rig.dialer.leadership.instance
        assert (answer.status, answer.json()) == (
            200,
            {"ok": True, "problems": [], "instance": me, "leader": me},
        )


async def test_redis_down_is_503_with_the_reason_never_a_traceback(make_config, tmp_path) -> None:
    config = make_config(redis={"url": DEAD_REDIS, "socket_timeout": 0.5})
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        anyone = await rig.signed_in("")
        for answer in (
            await anyone.get("/api/callbacks"),
            await anyone.get("/api/stats"),
            await anyone.get("/api/callbacks/cb-1"),
            await anyone.post("/api/callbacks/cb-1/cancel", {"reason": "x"}),
            await anyone.post("/api/callbacks", {"number": NEW, "category": "support"}),
        ):
            assert_error(answer, 503, "redis_unavailable", "Redis unreachable")
            assert "Traceback" not in answer.text


async def test_a_dialer_built_with_its_page_serves_it_and_stop_ends_open_streams_properly(
    make_config,
    tmp_path,
) -> None:
    config = make_config(web={"port": 0})
    dialer = build_dialer(config, clock=ManualClock(), spool=tmp_path / "s.jsonl", web=True)
    server = dialer.web
    assert server is not None
    await dialer.start()
    http = aiohttp.ClientSession()
    try:
        await asyncio.wait_for(server.started.wait(), 5)
        assert server.url.startswith("http://127.0.0.1:")
        async with http.get(server.url + "healthz") as r:
            assert r.status == 503  # the dialer has no Asterisk here
            assert (await r.json())["problems"][0].startswith("AMI not connected")
        # A page left open does not hold the shutdown up: its stream is ended.
        stream = await http.get(server.url + "api/stream")
        assert await stream.content.readline() == b"retry: 3000\n"
    finally:
        await dialer.stop()
    try:
        # Ended by us, properly (a stream cut by the server's grace timeout would end in a
        # payload error here instead).
        await asyncio.wait_for(stream.content.read(), 10)
    finally:
        stream.close()
        await http.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        async with aiohttp.ClientSession() as http, http.get(server.url + "healthz"):
            pass


# --------------------------------------------------------------------------- live updates


async def read_events(
    response: aiohttp.ClientResponse, wanted: Any, timeout: float = 5.0
) -> list[tuple[str, Any]]:
    """Server-sent events until ``wanted(events)`` holds."""
    events: list[tuple[str, Any]] = []
    kind, data = "", ""

    async def pump() -> None:
        nonlocal kind, data
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif not line and kind:
                events.append((kind, json.loads(data)))
                kind, data = "", ""
                if wanted(events):
                    return

    await asyncio.wait_for(pump(), timeout)
    return events


def snapshots(events: list[tuple[str, Any]]) -> list[dict[str, Any]]:
    return [data for kind, data in events if kind == "snapshot"]


async def test_the_live_stream_sends_the_state_and_a_new_missed_call_at_once(rig) -> None:
    alice = await rig.signed_in("alice")
    rig.web.hub.heartbeat = 0.2  # a closed stream is noticed at the next write
    async with alice.http.get(rig.base + "/api/stream") as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        first = await read_events(stream, lambda ev: any(k == "stats" for k, _ in ev))
        snapshot = snapshots(first)[0]
        assert [c["id"] for c in snapshot["waiting"]] == [
            rig.ids["new"],
            rig.ids["support"],
            rig.ids["retry"],
        ]
        assert snapshot["waiting_total"] == 3 and snapshot["health"]["redis"] is True
        cb = await missed(rig.queue, "+79161237777", "billing", 5, name="Nina")
        later = await read_events(
            stream,
            lambda ev: any(c["id"] == cb for s in snapshots(ev) for c in s["waiting"]),
            timeout=3,
        )
        row = next(c for c in snapshots(later)[-1]["waiting"] if c["id"] == cb)
        assert (row["name"], row["number"]) == ("Nina", "+79161237777")
        assert rig.web.hub.watchers == 1
    deadline = time.monotonic() + 3
    while rig.web.hub.watchers:  # the page went away: nothing is kept for it
        assert time.monotonic() < deadline, "a closed stream is still counted"
        await asyncio.sleep(0.05)


async def test_the_live_stream_masks_numbers_for_viewers(rig) -> None:
    victor = await rig.signed_in("victor")
    async with victor.http.get(rig.base + "/api/stream") as stream:
        events = await read_events(stream, lambda ev: bool(snapshots(ev)))
    text = json.dumps(snapshots(events)[0], ensure_ascii=False)
    assert "+7••••••••01" in text and NEW not in text and SUPPORT not in text


async def test_the_live_stream_ends_when_the_session_expires(rig) -> None:
    user = rig.user()
    # Signed in almost session_max ago, and used just now: only the absolute limit is near.
    book = rig.web.sessions.book
    cookie = await book.open("alice", now=time.time() - rig.config.web.session_max + 1.5)
    await rig.dialer.sessions.touch_session(book.digest(cookie), time.time(), 60)
    user.http.cookie_jar.update_cookies(
        SimpleCookie(f"cbd_session={cookie}"), rig.server.make_url("/")
    )
    async with user.http.get(rig.base + "/api/stream") as stream:
        events = await read_events(stream, lambda ev: ev[-1][0] == "expired", timeout=5)
    assert events[-1] == ("expired", {})
    assert_error(await user.get("/api/session"), 401, "unauthenticated")


# --------------------------------------------------------------------------- side jobs


async def test_failed_side_jobs_are_listed_and_a_supervisor_can_run_them_again(
    rig,
    redis_url,
    key_prefix,
) -> None:
    conn = connect(rig.config)
    try:
        queue = rq_queue(rig.config, conn)
        job = queue.enqueue(
            "callback_dialer.jobs.reports.check_day",
            "31/12/2026",
            description="daily report 31/12/2026",
        )
        SimpleWorker([queue], connection=conn).work(burst=True)
        alice = await rig.signed_in("alice")
        victor = await rig.signed_in("victor")
        jobs = (await alice.get("/api/jobs")).json()
        assert jobs["counts"]["failed"] == 1
        [failed] = jobs["failed"]
        assert (failed["id"], failed["description"]) == (job.id, "daily report 31/12/2026")
        assert failed["error"].startswith("ValueError: day must be a date like")
        assert_error(await victor.post(f"/api/jobs/{job.id}/rerun"), 403, "forbidden")
        answer = await alice.post(f"/api/jobs/{job.id}/rerun")
        assert (answer.status, answer.json()) == (200, {"rerun": 1})
        counts = (await alice.get("/api/jobs")).json()["counts"]
        assert (counts["failed"], counts["queued"]) == (0, 1)
        assert_error(await alice.post(f"/api/jobs/{job.id}/rerun"), 404, "not_found")
        assert (
            metric((await alice.get("/metrics")).text, 'callback_dialer_side_jobs{state="queued"}')
            == 1
        )
    finally:
        conn.close()
        purge_rq(redis_url, key_prefix)


async def test_reports_are_made_listed_and_downloaded_by_supervisors_only(rig, tmp_path) -> None:
    alice = await rig.signed_in("alice")
    victor = await rig.signed_in("victor")
    day = rig.queue.hours.day_key(rig.dialer.clock.now())
    assert_error(await alice.post("/api/reports", {"day": "22.11.2026"}), 400, "bad_day")
    made = await alice.post("/api/reports", {"day": day})
    assert made.status == 201, made.text
    names = [f["name"] for f in made.json()["files"]]
    assert f"callbacks-{day}.csv" in names and f"callbacks-{day}.xlsx" in names
    listed = (await victor.get("/api/reports")).json()["reports"]
    assert [r["day"] for r in listed] == [day]
    assert {f["url"] for f in listed[0]["files"]} == {""}  # no links a viewer cannot use
    listed = (await alice.get("/api/reports")).json()["reports"]
    assert f"/reports/callbacks-{day}.csv" in {f["url"] for f in listed[0]["files"]}
    csv = await alice.get(f"/reports/callbacks-{day}.csv")
    assert csv.status == 200
    assert csv.headers["Content-Disposition"] == f'attachment; filename="callbacks-{day}.csv"'
    assert DONE in csv.text and "called_back" in csv.text
    # Reports hold whole numbers: a viewer who sees masked numbers may not download them.
    assert_error(await victor.get(f"/reports/callbacks-{day}.csv"), 403, "forbidden")
    masked_jobs = (await victor.get("/api/jobs")).json()
    assert {f["url"] for r in masked_jobs["reports"] for f in r["files"]} == {""}
    for bad in ("secret.txt", "..%2Fspool.jsonl", "callbacks-2026-01-01.csv"):
        assert_error(await alice.get(f"/reports/{bad}"), 404, "not_found")


async def test_a_report_is_made_even_when_a_stored_reason_holds_control_characters(
    rig,
) -> None:
    # As the issue found it: a reason stored with \r\n, NUL and a bidi override made the
    # XLSX writer fail (500) and left yesterday's file listed.
    await rig.queue.cancel(rig.ids["new"], "dup\r\n\u0000\u202e licate", actor="web:alice")
    alice = await rig.signed_in("alice")
    day = rig.queue.hours.day_key(rig.dialer.clock.now())
    made = await alice.post("/api/reports", {"day": day})
    assert made.status == 201, made.text
    xlsx = next(f for f in made.json()["files"] if f["kind"] == "xlsx")
    assert xlsx["bytes"] > 0
    csv = await alice.get(f"/reports/callbacks-{day}.csv")
    assert "dup licate" in csv.text and "\u202e" not in csv.text


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "1970-01-01", "2026-02-30"])
async def test_an_impossible_day_is_400_on_every_path_that_takes_one(rig, day) -> None:
    alice = await rig.signed_in("alice")
    for path in (
        f"/api/stats?day={day}",
        f"/api/callbacks?day={day}",
        f"/charts/hourly.svg?day={day}",
        f"/charts/categories.svg?day={day}",
    ):
        assert_error(await alice.get(path), 400, "bad_day", day)
    assert_error(await alice.post("/api/reports", {"day": day}), 400, "bad_day", day)


# --------------------------------------------------------------------------- charts


async def test_charts_are_well_formed_svg_with_escaped_labels(make_config, tmp_path) -> None:
    categories = [
        {"name": "support", "label": "<b>Support</b> & co", "label_ru": "Поддержка"},
        {"name": "other", "label": "Other"},
    ]
    config = make_config(
        categories=categories,
        detection={"fallback_category": "other", "queue_categories": {}},
        dispatch={"queues": {"support": ["support", "other"]}},
    )
    async with web_rig(config, spool=tmp_path / "s.jsonl") as rig:
        await missed(rig.queue, NEW, "support", 60)
        anyone = await rig.signed_in("")
        answer = await anyone.get("/charts/categories.svg")
        assert answer.headers["Content-Type"].startswith("image/svg+xml")
        root = ET.fromstring(answer.text)
        texts = ["".join(t.itertext()) for t in root.iter("{http://www.w3.org/2000/svg}text")]
        assert "<b>Support</b> & co" in texts and "1 · 100%" in texts
        russian = await anyone.get("/charts/categories.svg?lang=ru")
        assert "Поддержка" in russian.text and "Пропущенные по категориям" in russian.text
        hourly = ET.fromstring((await anyone.get("/charts/hourly.svg")).text)
        bars = [
            r
            for r in hourly.iter("{http://www.w3.org/2000/svg}rect")
            if r.find("{http://www.w3.org/2000/svg}title") is not None
        ]
        assert len(bars) == 1  # one missed call, no callback yet


# --------------------------------------------------------------------------- outages


async def test_an_outage_declared_and_ended_through_the_api(rig) -> None:
    alice = await rig.signed_in("alice")
    declared = await alice.post(
        "/api/outages",
        {
            "categories": ["support"],
            "prefixes": ["+7495123", "7812"],
            "message": "Cable cut",
            "expected_end": rig.dialer.clock.now() + 3600,
        },
    )
    assert declared.status == 201, declared.text
    outage = declared.json()["outage"]
    assert (outage["state"], outage["prefixes"], outage["declared_by"]) == (
        "active",
        ["+7495123", "+7812"],
        "web:alice",
    )
    listed = await alice.get("/api/outages")
    assert [o["id"] for o in listed.json()["outages"]] == [outage["id"]]
    held = await missed(rig.queue, "+74951230001", "support", 5)
    found = await alice.get("/api/callbacks?state=held")
    assert [c["id"] for c in found.json()["callbacks"]] == [held]
    assert found.json()["callbacks"][0]["outage"] == outage["id"]
    ended = await alice.post(f"/api/outages/{outage['id']}/end", {"choice": "drop"})
    assert ended.status == 200, ended.text
    assert ended.json()["outage"]["state"] in ("ending", "ended")
    again = await alice.post(f"/api/outages/{outage['id']}/end", {"choice": "release"})
    assert_error(again, 409, "not_active")
    assert_error(await alice.post("/api/outages/nope/end", {"choice": "drop"}), 404, "not_found")


async def test_a_bad_outage_declaration_says_what_is_wrong_and_changes_nothing(rig) -> None:
    alice = await rig.signed_in("alice")
    before = rig.redis_dump()
    for body, code, word in (
        ({"categories": ["nope"]}, "unknown_category", "nope"),
        ({"categories": "support"}, "bad_field", "categories"),
        ({"prefixes": ["+7495<script>"]}, "bad_outage", "prefix"),
        ({"expected_end": "18:00"}, "bad_field", "expected_end"),
        ({"expected_end": 1000.0}, "bad_outage", "past"),
        ({"colour": "red"}, "unknown_field", "colour"),
    ):
        assert_error(await alice.post("/api/outages", body), 400, code, word)
    for body in ({"choice": "forget"}, {"choice": "drop", "per_hour": -1}):
        assert_error(await alice.post("/api/outages/x/end", body), 400, "bad_field")
    assert rig.redis_dump() == before
