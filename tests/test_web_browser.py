"""The status page in a real headless Chromium (Debian's package, driven by Playwright)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

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
    ) == ("7", "1", "50%", "5 min")
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
        assert await cell.evaluate("td => td.children.length") == 0
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
