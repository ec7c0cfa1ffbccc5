"""The status page under attack: DNS rebinding, forged forwarding headers, password guessing in
parallel, stolen cookies, and what monitoring may read. Real HTTP, a real Redis."""

from __future__ import annotations

from .test_web_api import assert_error
from .test_web_support import NEW, missed, users_config, web_rig

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
