"""The status page in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import html
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from callback_dialer.queue.models import Source

from .test_web_support import (
    HOSTILE_NAMES,
    NEW,
    PASSWORDS,
    SUPPORT,
    Link,
    WebRig,
    ami_section,
    missed,
    queue_member,
    seed_day,
    start_pbx,
    users_config,
    web_rig,
)

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="no /usr/bin/chromium (scripts/test installs Debian's chromium)",
    ),
]


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def rig(make_config, tmp_path) -> AsyncIterator[WebRig]:
    """A seeded day; agent 101 (sales) free, 102 (support) on a break; the dialer logged in,
    so the new subscriber's callback is being called (ringing the agent) when the page opens."""
    pbx = await start_pbx(
        [queue_member("sales", "101"), queue_member("support", "102", paused=True, reason="lunch")]
    )
    config = users_config(make_config, tmp_path, ami=ami_section(pbx))
    async with web_rig(config, spool=tmp_path / "spool.jsonl", pbx=pbx) as r:
        r.ids = await seed_day(r.queue, r.dialer.clock)
        await r.start()
        yield r


class Tab:
    """One signed-in page, with everything that must never happen recorded."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(f"page error: {exc}"))
        page.on(
            "console",
            lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None,
        )

    async def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    async def row(self, callback_id: str) -> Any:
        return self.page.locator(f'#waiting-body tr[data-id="{callback_id}"]')

    def assert_clean(self, *expected: str) -> None:
        """No dialog, no script error, no failed request but the ``expected`` ones (Chromium
        logs every 4xx answer to a fetch as a console error)."""
        assert self.dialogs == [], self.dialogs
        unexpected = [e for e in self.errors if not any(x in e for x in expected)]
        assert unexpected == [], unexpected


async def open_page(browser: Any, rig: WebRig, user: str, base: str = "") -> Tab:
    context = await browser.new_context()
    tab = Tab(await context.new_page())
    await tab.page.goto((base or rig.base) + "/")
    assert tab.page.url.endswith("/login")
    await tab.page.fill("input[name=user]", user)
    await tab.page.fill("input[name=password]", PASSWORDS[user])
    await tab.page.click("button[type=submit]")
    await tab.page.wait_for_selector("#waiting-body tr[data-id]")
    return tab


async def test_the_page_loads_with_the_queue_the_calls_the_agents_and_todays_numbers(
    browser,
    rig,
) -> None:
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    await page.wait_for_selector(f'#in-progress-body tr[data-id="{rig.ids["new"]}"]')
    waiting = await page.locator("#waiting-body tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.id, r.cells[2].textContent, r.cells[3].textContent])"
    )
    assert waiting == [
        [rig.ids["support"], SUPPORT, "Pyotr"],
        [rig.ids["retry"], "+79161230003", ""],
    ]
    calling = page.locator(f'#in-progress-body tr[data-id="{rig.ids["new"]}"] td')
    assert await calling.all_text_contents() == [
        "Agent 101",
        NEW,
        "Ivan",
        "New connection",
        "ringing the agent",
        await calling.nth(5).text_content(),
    ]
    agents = await page.locator("#agents-body tr").evaluate_all(
        "rows => rows.map(r => [r.cells[1].textContent, r.cells[3].textContent])"
    )
    assert agents == [["callback starting", ""], ["paused", "lunch"]]
    await page.wait_for_selector("#today-tiles .tile")
    tiles = await page.locator("#today-tiles .tile").evaluate_all(
        "tiles => Object.fromEntries(tiles.map(t => [t.querySelector('.label').textContent,"
        " t.querySelector('.value').textContent]))"
    )
    assert (
        tiles["Missed calls"],
        tiles["Called back"],
        tiles["Success rate"],
        tiles["Median time to callback"],
    ) == ("7", "1", "50%", "5\u00a0min")  # a duration does not break across lines
    chart = page.locator('#today-stats img[src^="/charts/hourly.svg"]')
    await chart.wait_for()
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#today-stats img')].every("
        "i => i.complete && i.naturalWidth > 0)"
    )
    assert await page.text_content("#conn") == "Live"
    shown = await page.inner_text("body")
    assert not re.search(r"\b(null|undefined|NaN)\b", shown), "a value leaked as text"
    tab.assert_clean()


async def test_a_new_missed_call_appears_without_a_reload(browser, rig) -> None:
    tab = await open_page(browser, rig, "alice")
    await tab.page.evaluate("window.__sameDocument = true")
    cb = await missed(rig.queue, "+79161237777", "billing", 5, name="Nina")
    row = await tab.row(cb)
    await row.wait_for(timeout=5000)
    assert await row.locator("td.name").text_content() == "Nina"
    assert await tab.page.evaluate("window.__sameDocument") is True
    tab.assert_clean()


async def test_a_supervisor_cancels_with_a_reason_and_the_row_goes(browser, rig) -> None:
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    row = await tab.row(rig.ids["support"])
    await row.locator("button[data-act=cancel]").click()
    dialog = page.locator("#cancel-dialog")
    assert await dialog.is_visible()
    # No reason: the server says what is missing and nothing happens.
    await dialog.locator("button[type=submit]").click()
    await page.wait_for_function(
        "() => document.getElementById('cancel-error').textContent.includes('reason')"
    )
    assert (await rig.queue.get(rig.ids["support"])).state.value == "pending"
    await dialog.locator("input[name=reason]").fill("called back from a mobile")
    await dialog.locator("button[type=submit]").click()
    await row.wait_for(state="detached", timeout=5000)
    assert not await dialog.is_visible()
    last = (await rig.queue.history(rig.ids["support"]))[-1]
    assert (last.event, last.reason, last.actor) == (
        "cancelled",
        "called back from a mobile",
        "web:alice",
    )
    tab.assert_clean("status of 400")


async def test_a_viewer_sees_no_actions_and_an_action_from_their_page_is_refused(
    browser,
    rig,
) -> None:
    tab = await open_page(browser, rig, "victor")
    page = tab.page
    row = await tab.row(rig.ids["support"])
    assert await row.locator("td.number").text_content() == "+7••••••••02"
    assert await page.locator("#waiting-body button[data-act=cancel]").count() == 0
    assert await page.locator("#pause-btn").is_hidden()
    assert await page.locator("#add-form").is_hidden()
    before = rig.redis_dump()
    refused = await page.evaluate(
        """id => window.cbd.api('POST', '/api/callbacks/' + id + '/cancel', {reason: 'x'})
              .then(() => 'done', e => e.status + ' ' + e.message)""",
        rig.ids["support"],
    )
    assert refused == "403 victor is a viewer; only supervisors may act"
    assert rig.redis_dump() == before
    tab.assert_clean("status of 403")


async def test_hostile_caller_names_show_as_text(browser, rig) -> None:
    ids = [
        await missed(rig.queue, f"+7916123100{i}", "support", 30, name=name)
        for i, name in enumerate(HOSTILE_NAMES)
    ]
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    for callback_id, name in zip(ids, HOSTILE_NAMES, strict=True):
        cell = (await tab.row(callback_id)).locator("td.name")
        assert await cell.text_content() == name
        # Only the page's own element for the name: nothing of the name became markup.
        made = await cell.evaluate("td => [...td.querySelectorAll('*')].map(n => n.outerHTML)")
        assert made == [f'<span class="who-name">{html.escape(name, quote=False)}</span>']
    assert await page.locator("#waiting-body img, #waiting-body script").count() == 0
    # The history dialog shows the name as text too.
    await (await tab.row(ids[1])).locator("button[data-act=history]").click()
    await page.wait_for_selector("#history-dialog[open]")
    assert HOSTILE_NAMES[1] in await page.text_content("#history-title")
    await page.wait_for_timeout(300)  # an injected onerror would have fired by now
    tab.assert_clean()


async def test_the_language_switch_changes_the_page_and_is_remembered(browser, rig) -> None:
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    assert await page.text_content("#waiting-section h2") == "Waiting for a callback"
    await page.click("button[data-lang=ru]")
    assert await page.text_content("#waiting-section h2") == "Ожидают обратного звонка"
    row = await tab.row(rig.ids["support"])
    assert await row.locator("td").nth(1).text_content() == "Техподдержка"
    assert await page.evaluate("document.documentElement.lang") == "ru"
    await page.reload()
    await page.wait_for_selector("#waiting-body tr[data-id]")
    assert await page.text_content("#waiting-section h2") == "Ожидают обратного звонка"
    assert await page.text_content("#conn") in ("Онлайн", "Подключение…")
    await page.click("button[data-lang=en]")
    assert await page.text_content("#agents-body tr td:nth-child(2)") in (
        "callback starting",
        "free",
        "resting",
    )
    tab.assert_clean()


async def test_the_page_reconnects_by_itself_after_the_link_drops(browser, rig) -> None:
    link = await Link(rig.server.port).start()
    try:
        tab = await open_page(browser, rig, "alice", base=f"http://127.0.0.1:{link.port}")
        page = tab.page
        await page.wait_for_function("() => document.getElementById('conn').textContent === 'Live'")
        link.down()
        await page.wait_for_function(
            "() => document.getElementById('conn').textContent.startsWith('Connection lost')"
        )
        cb = await missed(rig.queue, "+79161236666", "billing", 5, name="Back online")
        link.up()
        await (await tab.row(cb)).wait_for(timeout=15000)
        assert await page.text_content("#conn") == "Live"
        tab.assert_clean("ERR_")
    finally:
        await link.stop()


# --------------------------------------------------------------------------- a supervisor's page


async def test_paused_the_whole_page_says_nobody_is_called_back(browser, rig) -> None:
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    await page.click("#pause-btn")
    await page.fill("#pause-form input[name=reason]", "team meeting")
    await page.click("#pause-form button[type=submit]")
    banner = page.locator("#paused-banner")
    await banner.wait_for(state="visible")
    assert await banner.locator("#held-title").text_content() == (
        "Calling back is paused: nobody is being called back."
    )
    assert await banner.locator("#held-detail").text_content() == "Paused by alice: team meeting."
    assert "bad" in (await page.get_attribute("#dispatch", "class")).split()
    assert await page.evaluate("document.body.classList.contains('is-paused')")
    rows = await page.locator("#waiting-body tr").evaluate_all(
        "rows => rows.map(r => [r.cells[7].textContent, r.cells[8].textContent])"
    )
    # No row says "ready" and "now" while nobody is called.
    assert rows == [["after the pause", "on hold"], ["after the pause", "scheduled"]]
    await banner.locator("#banner-resume").click()
    await banner.wait_for(state="hidden")
    assert await page.locator("#waiting-body tr").first.locator("td").nth(7).text_content() == "now"
    assert not rig.dialer.dispatcher.paused
    tab.assert_clean()


async def test_the_oldest_wait_and_a_missed_target_stand_out(browser, rig) -> None:
    late = await missed(rig.queue, "+79161237001", "support", 1500, name="Waited long")
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    oldest = page.locator("#oldest-tile")
    await oldest.wait_for()
    assert await oldest.locator(".value").text_content() == "25\u00a0min"
    assert await oldest.locator(".label").text_content() == "Oldest waiting"
    assert "bad" in (await oldest.get_attribute("class")).split()
    # The late caller's wait is marked in their row; the others' are not.
    assert "late" in (await (await tab.row(late)).locator(".age").get_attribute("class")).split()
    on_time = (await tab.row(rig.ids["retry"])).locator(".age")
    assert {"late", "near"}.isdisjoint((await on_time.get_attribute("class")).split())
    # Two of four within 15 minutes (the late caller missed it) is below the 80% aim: red.
    within = page.locator("#today-tiles .tile", has_text="Within 15")
    await within.wait_for()
    assert "bad" in (await within.get_attribute("class")).split()
    assert await within.locator(".sub").text_content() == "2 of 4; aim 80%"
    tab.assert_clean()


def overflowing(page: Any) -> Any:
    """Everything visible that reaches past the right edge, and every placeholder cut."""
    return page.evaluate(
        """() => {
          const width = document.documentElement.clientWidth;
          const out = [];
          for (const node of document.querySelectorAll('button, input, select, a')) {
            const box = node.getBoundingClientRect();
            if (!box.width || node.closest('[hidden], dialog:not([open])')) continue;
            if (box.left < 0 || box.right > width + 0.5) out.push(node.outerHTML.slice(0, 80));
          }
          const canvas = document.createElement('canvas').getContext('2d');
          for (const input of document.querySelectorAll('input[placeholder]')) {
            if (!input.getBoundingClientRect().width) continue;
            const style = getComputedStyle(input);
            canvas.font = style.font;
            const room = input.clientWidth - parseFloat(style.paddingLeft)
              - parseFloat(style.paddingRight);
            if (canvas.measureText(input.placeholder).width > room) {
              out.push('placeholder cut: ' + input.placeholder);
            }
          }
          return {scroll: document.documentElement.scrollWidth, width, out};
        }"""
    )


@pytest.mark.parametrize("lang", ["en", "ru"])
async def test_at_400_px_wide_the_page_fits_and_every_row_button_is_on_screen(
    browser, rig, lang
) -> None:
    noted = await rig.queue.add_manual(
        "+79161237002", "billing", "web:alice", name="Анна", note="после обеда"
    )
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    if lang == "ru":
        await page.click("button[data-lang=ru]")
    await page.set_viewport_size({"width": 400, "height": 800})
    await page.wait_for_timeout(200)
    found = await overflowing(page)
    assert found == {"scroll": 400, "width": 400, "out": []}
    row = await tab.row(noted.id)
    assert await row.locator(".note").text_content() == "после обеда"
    buttons = row.locator("button")
    assert await buttons.count() == 4
    call_now = row.locator("button[data-act=call-now]")
    await call_now.scroll_into_view_if_needed()
    await call_now.click()  # reachable and working, not just drawn
    await page.wait_for_function(
        "id => document.querySelector(`#waiting-body tr[data-id='${id}'] .tag.pinned`)",
        arg=noted.id,
    )
    # The wide layout keeps its placeholders whole too.
    await page.set_viewport_size({"width": 1280, "height": 800})
    assert (await overflowing(page))["out"] == []
    tab.assert_clean()


async def test_a_category_change_from_the_keyboard_waits_for_confirmation(browser, rig) -> None:
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)
    target = rig.ids["support"]
    opener = (await tab.row(target)).locator("button[data-act=category]")
    await opener.focus()
    await page.keyboard.press("Enter")
    dialog = page.locator("#category-dialog")
    await dialog.wait_for(state="visible")
    await dialog.locator("select").focus()
    for _ in range(3):
        await page.keyboard.press("ArrowDown")
    assert await dialog.locator("select").input_value() != "support"
    await page.wait_for_timeout(300)
    assert posts == []  # choosing is not changing
    await page.keyboard.press("Escape")
    await dialog.wait_for(state="hidden")
    assert (await rig.queue.get(target)).category == "support"
    # Now for real: choose with the keys, confirm with the button.
    await opener.focus()
    await page.keyboard.press("Enter")
    await dialog.locator("select").focus()
    await page.keyboard.press("ArrowDown")  # support -> billing
    await dialog.locator("button[type=submit]").focus()
    await page.keyboard.press("Enter")
    await dialog.wait_for(state="hidden")
    assert [u.rsplit("/", 2)[-2:] for u in posts] == [[target, "category"]]
    assert (await rig.queue.get(target)).category == "billing"
    last = (await rig.queue.history(target))[-1]
    assert (last.event, last.actor, last.detail) == (
        "category_changed",
        "web:alice",
        {"from": "support", "to": "billing"},
    )
    tab.assert_clean()


async def test_the_russian_page_tells_a_finished_callback_s_history_in_russian(
    browser, rig
) -> None:
    alice = await rig.signed_in("alice")
    added = await alice.post(
        "/api/callbacks",
        {"number": "8 916 123-70-03", "category": "support", "note": "просил после обеда"},
    )
    cb = added.json()["callback"]["id"]
    await alice.post(f"/api/callbacks/{cb}/category", {"category": "billing"})
    await alice.post(f"/api/callbacks/{cb}/cancel", {"reason": "клиент перезвонил сам"})
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    await page.click("button[data-lang=ru]")
    # Found by its number in another spelling, although it is finished.
    await page.fill("#search-form input[name=number]", "+7 (916) 123 70 03")
    await page.click("#search-form button[type=submit]")
    result = page.locator(f'#search-body tr[data-id="{cb}"]')
    await result.wait_for()
    assert await result.locator("td").nth(2).text_content() == "отменён"
    await result.locator("button[data-act=history]").click()
    await page.wait_for_selector("#history-dialog[open]")
    assert await page.text_content("#history-note") == "Заметка: просил после обеда"
    rows = await page.locator("#history-body tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
    )
    assert [row[1:] for row in rows] == [
        ["создана", "в очереди", "добавлены вручную", "alice"],
        ["категория изменена", "в очереди", "Техподдержка → Оплата", "alice"],
        ["отменена", "отменён", "клиент перезвонил сам; было: в очереди", "alice"],
    ]
    for time_cell in (row[0] for row in rows):
        assert re.fullmatch(r"\d{2}\.\d{2}, \d{2}:\d{2}", time_cell), time_cell
    shown = await page.inner_text("#history-dialog")
    for raw in ("created", "category_changed", "manual", "web:alice", "cancelled", "support"):
        assert raw not in shown, raw
    # The day boxes write days as Russian does.
    day = await page.input_value("#day-form input[name=day]")
    assert re.fullmatch(r"\d{2}\.\d{2}\.\d{4}", day), day
    await page.click("#history-close")
    await page.click("#day-form button[data-day-step='-1']")
    await page.wait_for_function("() => document.querySelector('#day-stats .tiles') !== null")
    tab.assert_clean()


def queue_entry(queue: str, position: int, uniqueid: str, number: str, wait: int) -> list:
    """A QueueEntry item of QueueStatus, in the header order of app_queue.c (Asterisk 22)."""
    return [
        ("Event", "QueueEntry"),
        ("Queue", queue),
        ("Position", str(position)),
        ("Channel", f"IAX2/carrier-{uniqueid[-4:]}"),
        ("Uniqueid", uniqueid),
        ("CallerIDNum", number),
        ("CallerIDName", "unknown"),
        ("ConnectedLineNum", "unknown"),
        ("ConnectedLineName", "unknown"),
        ("Wait", str(wait)),
        ("Priority", "0"),
    ]


async def test_the_live_queues_panel_and_the_holding_off_notice(
    browser, make_config, tmp_path
) -> None:
    """Two live callers have held in support for 2 and 1.5 minutes; agent 102 (support) is
    free and a support callback missed 10 s ago waits: with the default handicap the
    callers go first, and the page says so and why."""
    pbx = await start_pbx(
        [
            queue_member("sales", "101", paused=True, reason="lunch"),
            queue_member("support", "102"),
            queue_entry("support", 1, "1796126166.4", "+79165550200", 120),
            queue_entry("support", 2, "1796126166.5", "+79165550201", 90),
        ]
    )
    config = users_config(make_config, tmp_path, ami=ami_section(pbx))
    async with web_rig(config, spool=tmp_path / "spool.jsonl", pbx=pbx) as r:
        cb = await missed(r.queue, SUPPORT, "support", 10, name="Pyotr")
        await r.start()
        tab = await open_page(browser, r, "alice")
        page = tab.page
        await page.wait_for_selector('#live-queues-body tr[data-queue="support"]')
        rows = await page.locator("#live-queues-body tr").evaluate_all(
            "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        by_queue = {row[0]: row for row in rows}
        # queue, waiting now, longest wait, agents free / on live calls / on callbacks
        assert by_queue["support"][1] == "2"
        assert by_queue["support"][2].startswith("2") and "min" in by_queue["support"][2]
        assert by_queue["support"][3:] == ["1", "0", "0"]
        assert by_queue["sales"][1:2] == ["0"]
        notice = page.locator("#holding-off")
        await notice.wait_for(state="visible")
        text = await notice.inner_text()
        assert "Holding off for live callers" in text
        # the agent by name, the reason in words and the score in figures
        assert "Agent 102: 2 waiting in support" in text
        assert "scores" in text and "callback_handicap 300s" in text
        # nothing was dialled for the callback: it still waits
        assert (await r.queue.get(cb)).state.value == "pending"
        assert r.pbx.actions_named("Originate") == []
        # the API and /metrics say the same
        live = await page.evaluate("fetch('/api/live-queues').then(r => r.json())")
        support = next(q for q in live["queues"] if q["queue"] == "support")
        assert (support["waiting"], support["agents_free"]) == (2, 1)
        assert live["holding_off"][0]["reason"] == "live_caller_ahead"
        metrics = await r.dialer.status.metrics_text()
        assert 'callback_dialer_live_waiting{queue="support"} 2' in metrics
        assert 'callback_dialer_live_waiting{queue="sales"} 0' in metrics
        longest = re.search(
            r'callback_dialer_live_longest_wait_seconds\{queue="support"\} ([0-9.]+)', metrics
        )
        assert longest is not None and 119 <= float(longest.group(1)) <= 121
        assert (
            'callback_dialer_agents_left_to_live_total{queue="support",'
            'reason="live_caller_ahead"} 1' in metrics
        )
        tab.assert_clean()


# --------------------------------------------------------------------------- outage mode


async def test_a_declared_outage_is_unmistakable_in_both_languages(browser, rig) -> None:
    tab = await open_page(browser, rig, "alice")
    page = tab.page
    await page.click("#outage-btn")
    dialog = page.locator("#outage-dialog")
    await dialog.wait_for(state="visible")
    assert await dialog.locator("input[value=support]").is_checked()
    await dialog.locator("input[name=prefixes]").fill("+7495123, 7495124")
    await dialog.locator("input[name=message]").fill("Cable cut in <b>district 5</b>")
    await dialog.locator("input[name=until]").fill("18:00")
    await dialog.locator("button[type=submit]").click()
    banner = page.locator("#outage-banner")
    await banner.wait_for(state="visible")
    line = banner.locator(".outage-line")
    assert await line.locator("strong").text_content() == "Outage: Support"
    # The message is text, never markup.
    assert await line.locator(".outage-msg").text_content() == "«Cable cut in <b>district 5</b>» "
    assert await banner.locator("b").count() == 0
    text = await line.text_content()
    assert "area: +7495123, +7495124" in text and "expected end 18:00" in text
    assert "callbacks held: 0" in text
    # Striped red across the page, above everything, and the header marked too.
    style = await banner.evaluate("b => getComputedStyle(b).backgroundImage")
    assert "repeating-linear-gradient" in style
    box = await banner.bounding_box()
    assert box["width"] >= 0.95 * page.viewport_size["width"] and box["height"] >= 30
    assert await page.evaluate("document.body.classList.contains('has-outage')")
    # A district caller's missed support call is held: the band counts it, no row for it.
    cb = await missed(rig.queue, "+74951230021", "support", 5, name="District")
    await page.wait_for_function(
        "() => document.getElementById('outage-banner').textContent.includes('callbacks held: 1')"
    )
    assert await (await tab.row(cb)).count() == 0
    await page.click("button[data-lang=ru]")
    assert await line.locator("strong").text_content() == "Авария: Техподдержка"
    text = await line.text_content()
    assert "район: +7495123, +7495124" in text and "отложено перезвонов: 1" in text
    assert "ожидаемое окончание 18:00" in text
    # Ending it: release, capped per hour; the band goes once every held one has its fate.
    await line.locator("button[data-end]").click()
    end = page.locator("#outage-end-dialog")
    await end.wait_for(state="visible")
    assert await end.locator("#outage-end-title").text_content() == (
        "Завершить аварию: Техподдержка"
    )
    await end.locator("input[name=per_hour]").fill("30")
    await end.locator("button[type=submit]").click()
    await banner.wait_for(state="hidden", timeout=15000)
    assert not await page.evaluate("document.body.classList.contains('has-outage')")
    released = await rig.queue.get(cb)
    assert released.state.value in ("scheduled", "pending", "dialing")
    outage = (await rig.queue.outages())[0]
    assert (outage.end_choice, outage.release_per_hour, outage.released) == ("release", 30, 1)
    assert outage.ended_by == "web:alice"
    tab.assert_clean()


async def test_a_viewer_sees_the_outage_but_cannot_end_it(browser, rig) -> None:
    await rig.queue.declare_outage(
        outage_id="noc-1", categories=["support", "billing"], message="Down", actor="pbx:noc"
    )
    tab = await open_page(browser, rig, "victor")
    page = tab.page
    banner = page.locator("#outage-banner")
    await banner.wait_for(state="visible")
    assert await banner.locator("strong").text_content() == "Outage: Support, Billing"
    assert "every caller" in await banner.text_content()
    assert await banner.locator("button").count() == 0
    assert await page.locator("#outage-btn").is_hidden()
    tab.assert_clean()


async def test_a_typed_number_shows_the_caller_id_and_the_promise_beside_it(browser, rig) -> None:
    result = await rig.queue.add_missed(
        number="+79031234564",
        caller_id="+79161234567",
        category="support",
        source=Source.EXPLICIT,
        missed_at=rig.queue.clock.now() - 30,
        call_id="offer-typed",
        promised_by=rig.queue.clock.now() + 600,
    )
    tab = await open_page(browser, rig, "alice")
    cell = (await tab.row(result.id)).locator("td.number")
    await cell.wait_for(timeout=5000)
    assert await cell.locator(".caller-id").text_content() == "called from +79161234567"
    assert (await cell.text_content() or "").startswith("+79031234564")
    promise = (await tab.row(result.id)).locator(".promised")
    assert (await promise.text_content() or "").startswith("promised by ")
    viewer = await open_page(browser, rig, "victor")
    masked = (await viewer.row(result.id)).locator("td.number .caller-id")
    assert "+79161234567" not in (await masked.text_content() or "")
    tab.assert_clean()
    viewer.assert_clean()
