// The status page. Plain JavaScript, no build step, nothing from the internet.
//
// Safety rule for this file: text from outside (caller names, notes, agent names, errors) is
// only ever put into the page with textContent (through el()/text()), never innerHTML.
//
// Live updates come as server-sent events from /api/stream; each event carries the whole
// current state, so the page keeps nothing but the newest copy (open all day, no growth).
// When the stream breaks it reconnects with a growing pause (1 s up to 30 s); when nothing
// (not even the 15 s ping) arrives for 45 s it assumes a dead link and reconnects.
"use strict";
(() => {
  const S = {
    session: null, strings: {}, lang: "en",
    snapshot: null, received: 0, stats: null, jobs: null, dayStats: null,
    es: null, backoff: 1, retryTimer: null, lastMessage: 0,
    knownIds: null, cancelId: null, categoryFor: null,
    search: null,
  };
  const WATCHDOG_MS = 45000;
  const $ = (id) => document.getElementById(id);

  // ---------------------------------------------------------------- small helpers

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "text") node.textContent = String(value);
      else if (key === "className") node.className = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function t(key, vars) {
    const table = S.strings[S.lang] || {};
    let text = key in table ? table[key] : ((S.strings.en || {})[key] ?? key);
    for (const [name, value] of Object.entries(vars || {})) {
      text = text.split("{" + name + "}").join(String(value));
    }
    return text;
  }

  function tOr(key, fallback) {
    const table = S.strings[S.lang] || {};
    return key in table ? table[key] : fallback;
  }

  function canAct() { return !!(S.session && S.session.can_act); }

  function categoryLabel(name) {
    const found = (S.session?.categories || []).find((c) => c.name === name);
    if (!found) return name;
    return S.lang === "ru" ? found.label_ru : found.label;
  }

  function categoryIndex(name) {
    return (S.session?.categories || []).findIndex((c) => c.name === name);
  }

  function serverNow() {
    if (!S.snapshot) return Date.now() / 1000;
    const rate = S.snapshot.clock_rate || 0;
    return S.snapshot.now + (Date.now() - S.received) / 1000 * rate;
  }

  const formats = {};
  function fmt(kind) {
    const key = S.lang + kind;
    if (!formats[key]) {
      const tz = S.session?.timezone;
      // 24-hour times in both languages: the charts and calling hours use them too.
      const options = kind === "time" ? { hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
        : kind === "datetime" ? { day: "2-digit", month: "2-digit", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
          : { year: "numeric", month: "2-digit", day: "2-digit" };
      try { formats[key] = new Intl.DateTimeFormat(S.lang, { ...options, timeZone: tz }); }
      catch (e) { formats[key] = new Intl.DateTimeFormat(S.lang, options); }
    }
    return formats[key];
  }

  function fmtTime(ts) {
    if (ts === null || ts === undefined) return "—";
    const now = serverNow();
    const kind = Math.abs(now - ts) < 16 * 3600 ? "time" : "datetime";
    return fmt(kind).format(new Date(ts * 1000));
  }

  function fmtDateTime(ts) {
    // History and search: always the date too, in the page's language (01.12, 10:42).
    if (ts === null || ts === undefined) return "—";
    return fmt("datetime").format(new Date(ts * 1000));
  }

  // A duration never breaks across lines: "1 h 38 min" is one figure.
  const NBSP = "\u00a0";
  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    let text;
    if (s < 60) text = t("seconds_short", { n: s });
    else if (s < 3600) text = t("minutes_short", { n: Math.floor(s / 60) });
    else text = t("hours_short", { h: Math.floor(s / 3600), m: Math.floor(s / 60) % 60 });
    return text.split(" ").join(NBSP);
  }

  // Days (YYYY-MM-DD inside) are written as the page's language writes them: 01.12.2026 in
  // Russian, 2026-12-01 in English (no 12/01 that reads two ways).
  function fmtDay(iso) {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(iso || "");
    if (!m) return iso || "";
    return S.lang === "ru" ? m[3] + "." + m[2] + "." + m[1] : iso;
  }

  function parseDay(text) {
    const value = (text || "").trim();
    let y, mo, d, m;
    if ((m = /^(\d{4})-(\d{1,2})-(\d{1,2})$/.exec(value))) [y, mo, d] = [m[1], m[2], m[3]];
    else if ((m = /^(\d{1,2})\.(\d{1,2})\.(\d{4})$/.exec(value))) [d, mo, y] = [m[1], m[2], m[3]];
    else if ((m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(value))) {
      [d, mo, y] = S.lang === "ru" ? [m[1], m[2], m[3]] : [m[2], m[1], m[3]];
    } else return null;
    const date = new Date(Date.UTC(Number(y), Number(mo) - 1, Number(d)));
    if (date.getUTCFullYear() !== Number(y) || date.getUTCMonth() !== Number(mo) - 1 || date.getUTCDate() !== Number(d)) return null;
    return date.toISOString().slice(0, 10);
  }

  function shiftDay(iso, days) {
    const date = new Date(iso + "T00:00:00Z");
    date.setUTCDate(date.getUTCDate() + days);
    return date.toISOString().slice(0, 10);
  }

  function setDay(input, iso) {
    input.dataset.iso = iso;
    input.value = fmtDay(iso);
  }

  function dayOf(input) {
    const iso = parseDay(input.value);
    if (iso) input.dataset.iso = iso;
    return iso;
  }

  // Who did it, in words: people by name, the program's own parts by what they are.
  function actorLabel(actor) {
    if (!actor) return "";
    if (actor === "web:anonymous") return t("actor_anonymous");
    if (actor.startsWith("web:")) return actor.slice(4);
    return tOr("actor_" + actor, actor);
  }

  // How near the oldest caller is to the target: "" within, "near" past 3/4 of it, "late".
  function targetClass(since) {
    const target = S.session?.target_seconds || 0;
    if (!target) return "";
    const waited = serverNow() - since;
    return waited >= target ? "late" : waited >= target * 0.75 ? "near" : "";
  }

  function fmtShare(value) {
    return value === null || value === undefined ? "—" : Math.round(value * 100) + "%";
  }

  function age(since, againstTarget) {
    // Updated every second by tick(); the server's clock may run faster (demo).
    const data = { since: String(since) };
    if (againstTarget) data.target = "1";
    return el("span", { className: "age" + (againstTarget ? " " + targetClass(since) : ""), dataset: data },
      fmtDuration(serverNow() - since));
  }

  function show(node, visible) { node.hidden = !visible; }

  function notice(message, isError) {
    const box = $("notice");
    box.textContent = message;
    box.classList.toggle("alarm", !!isError);
    show(box, !!message);
  }

  // ---------------------------------------------------------------- the API

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") headers["X-CSRF-Token"] = S.session ? S.session.csrf_token : "";
    const init = { method, headers, credentials: "same-origin" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const error = new Error((data && data.message) || response.statusText || String(response.status));
      error.status = response.status;
      throw error;
    }
    return data;
  }

  async function act(method, path, body, resultNode) {
    try {
      const data = await api(method, path, body);
      if (resultNode) { resultNode.textContent = t("done_ok"); resultNode.classList.remove("error"); }
      return data;
    } catch (e) {
      if (e.status === 401) { sessionOver(); throw e; }
      const message = t("error", { message: e.message });
      if (resultNode) { resultNode.textContent = message; resultNode.classList.add("error"); }
      else notice(message, true);
      throw e;
    }
  }

  // ---------------------------------------------------------------- language

  function applyLanguage() {
    document.documentElement.lang = S.lang;
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
      node.setAttribute("placeholder", t(node.dataset.i18nPlaceholder));
    }
    for (const node of document.querySelectorAll("[data-i18n-title]")) {
      node.setAttribute("title", t(node.dataset.i18nTitle));
      node.setAttribute("aria-label", t(node.dataset.i18nTitle));
    }
    for (const input of document.querySelectorAll("input.field-day")) {
      if (input.dataset.iso) input.value = fmtDay(input.dataset.iso);
      input.setAttribute("placeholder", fmtDay("2026-11-23"));
    }
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.classList.toggle("on", button.dataset.lang === S.lang);
      button.setAttribute("aria-pressed", button.dataset.lang === S.lang ? "true" : "false");
    }
    fillCategorySelect($("add-form").elements.category);
    if (S.conn) setConn(...S.conn);
    renderAll();
    if (S.search) renderSearch();
  }

  function setLanguage(lang) {
    if (!(lang in S.strings)) return;
    S.lang = lang;
    try { localStorage.setItem("cbd.lang", lang); } catch (e) { /* private mode */ }
    document.cookie = "cbd_lang=" + lang + "; path=/; max-age=31536000; samesite=lax";
    applyLanguage();
  }

  function fillCategorySelect(select, selected) {
    const value = selected || select.value;
    select.replaceChildren(...(S.session?.categories || []).map((c) =>
      el("option", { value: c.name, selected: c.name === value }, categoryLabel(c.name))));
  }

  // ---------------------------------------------------------------- rendering

  function renderAll() {
    renderHeader();
    renderOutages();
    renderWaiting();
    renderInProgress();
    renderAgents();
    renderLive();
    renderTiles();
    renderStats($("today-stats"), S.stats);
    renderStats($("day-stats"), S.dayStats);
    renderJobs();
  }

  function pill(node, text, kind) {
    node.textContent = text;
    node.className = "pill " + (kind || "");
  }

  function renderHeader() {
    const snap = S.snapshot;
    if (S.session) {
      $("who").textContent = t("signed_in_as", { user: S.session.user, role: t("role_" + S.session.role) });
      show($("logout-form"), S.session.auth === "users");
    }
    for (const node of document.querySelectorAll(".supervisor-only")) show(node, canAct());
    if (!snap) return;
    const h = snap.health;
    pill($("health-ami"), h.ami ? t("ami_ok") : t("ami_down"), h.ami ? "ok" : "bad");
    $("health-ami").title = h.ami_error || "";
    pill($("health-redis"), h.redis ? t("redis_ok") : t("redis_down"), h.redis ? "ok" : "bad");
    $("health-redis").title = h.redis_error || "";
    const d = snap.dispatch;
    const why = tOr("blocked_" + d.blocked_by, d.blocked_by);
    if (d.paused) {
      pill($("dispatch"), t("dispatch_paused", { by: actorLabel(d.paused_by) || "?" }) + (d.paused_reason ? ": " + d.paused_reason : ""), "bad");
    } else if (!d.dispatching) {
      pill($("dispatch"), t("dispatch_blocked", { why }), "warn");
    } else {
      pill($("dispatch"), t("dispatch_on"), "ok");
    }
    // Paused: a banner across the page, the rows marked as held (nobody is called back).
    const banner = $("paused-banner");
    document.body.classList.toggle("is-paused", !!d.paused);
    document.body.classList.toggle("is-held", !d.dispatching);
    show(banner, !d.dispatching);
    banner.classList.toggle("paused", !!d.paused);
    $("held-title").textContent = d.paused ? t("paused_banner") : t("blocked_banner", { why });
    $("held-detail").textContent = d.paused
      ? t("paused_by", { by: actorLabel(d.paused_by) || "?" }) + (d.paused_reason ? ": " + d.paused_reason : "") + "."
      : "";
    show($("banner-resume"), !!d.paused && canAct());
    pill($("leader"), t(d.leader === d.instance ? "leader_us" : "leader_other", { who: d.leader || "?" }), d.leader ? "" : "warn");
    const button = $("pause-btn");
    show(button, canAct());
    button.textContent = d.paused ? t("resume") : t("pause");
    button.classList.toggle("danger", !d.paused);
    button.dataset.paused = d.paused ? "1" : "";
    const alarm = $("alarm");
    alarm.textContent = d.alarm ? t("alarm") + ": " + d.alarm : "";
    show(alarm, !!d.alarm);
  }

  function emptyRow(columns) {
    return el("tr", {}, el("td", { className: "empty", colspan: columns }, t("none")));
  }

  function categoryTag(name) {
    const index = categoryIndex(name);
    return el("span", { className: "tag" + (index >= 0 ? " cat-" + (index % 4) : "") }, categoryLabel(name));
  }

  // Narrow screens show each row as a card; every cell names its column there.
  function labelCells(row, keys) {
    [...row.cells].forEach((cell, i) => { if (keys[i]) cell.dataset.label = t(keys[i]); });
    return row;
  }
  const WAITING_LABELS = ["col_pos", "col_category", "col_number", "col_name_note", "col_waiting_since",
    "col_missed", "col_attempts", "col_next", "col_state", ""];

  function nameCell(name, note) {
    return el("td", { className: "name", title: name + (note ? " — " + note : "") },
      el("span", { className: "who-name" }, name),
      note ? el("span", { className: "note" }, note) : null);
  }

  function renderWaiting() {
    const body = $("waiting-body");
    const snap = S.snapshot;
    if (!snap) return;
    const previous = S.knownIds;
    S.knownIds = new Set(snap.waiting.map((c) => c.id));
    $("waiting-count").textContent = t("waiting_count", { shown: snap.waiting.length, total: snap.waiting_total });
    if (!snap.waiting.length) { body.replaceChildren(emptyRow(10)); return; }
    const d = snap.dispatch;
    const held = !d.dispatching;
    $("waiting").classList.toggle("held", held);
    body.replaceChildren(...snap.waiting.map((cb) => {
      // While nobody is called back no row may say "now": it says why it waits.
      let next = cb.state === "scheduled" && cb.next_at ? fmtTime(cb.next_at)
        : cb.state === "pending" ? t("now") : "—";
      let state = t("state_" + cb.state);
      if (held && cb.state !== "dialing") {
        next = d.paused ? t("next_paused") : tOr("blocked_" + d.blocked_by, d.blocked_by);
        if (cb.state === "pending") state = t("on_hold");
      }
      const actions = el("td", { className: "actions" });
      if (canAct()) {
        actions.append(
          el("button", { type: "button", className: "small act", dataset: { act: "call-now", id: cb.id } }, t("call_now")),
          el("button", { type: "button", className: "small", dataset: { act: "cancel", id: cb.id, number: cb.number } }, t("cancel")),
          el("button", { type: "button", className: "small", dataset: { act: "category", id: cb.id, category: cb.category } }, t("change_category")));
      }
      actions.append(el("button", { type: "button", className: "small", dataset: { act: "history", id: cb.id } }, t("history")));
      const row = el("tr", { dataset: { id: cb.id }, className: previous && !previous.has(cb.id) ? "fresh" : "" },
        el("td", { className: "num" }, cb.position ?? ""),
        el("td", {}, categoryTag(cb.category), cb.pinned ? el("span", { className: "tag pinned" }, t("pinned")) : null),
        numberCell(cb),
        nameCell(cb.name, cb.note),
        el("td", {}, fmtTime(cb.first_missed), age(cb.first_missed, true)),
        el("td", { className: "num" }, cb.missed_count),
        el("td", { className: "num" }, cb.attempts),
        el("td", { className: held ? "held-next" : "" }, next,
          cb.promised_by ? el("div", { className: "promised" }, t("promised_by", { time: fmtTime(cb.promised_by) })) : null),
        el("td", { className: "state-" + (held && cb.state === "pending" ? "held" : cb.state) }, state,
          // Its last call ended while no dialer followed it and no record says how: it waits
          // for its retry, never redialled sooner, and the supervisor sees why.
          cb.reason === "outcome_unknown" ? el("span", { className: "tag unknown" }, t("reason_outcome_unknown")) : null),
        actions);
      return labelCells(row, WAITING_LABELS);
    }));
  }

  // The number we call, and beside it the caller ID it was asked from when the caller typed
  // another number in the IVR.
  function numberCell(cb) {
    const cell = el("td", { className: "number" }, cb.number);
    if (cb.caller_id) cell.append(el("div", { className: "caller-id" }, t("caller_id_is", { number: cb.caller_id })));
    return cell;
  }

  function renderInProgress() {
    const snap = S.snapshot;
    if (!snap) return;
    const body = $("in-progress-body");
    if (!snap.in_progress.length) { body.replaceChildren(emptyRow(6)); return; }
    body.replaceChildren(...snap.in_progress.map((f) => labelCells(el("tr", { dataset: { id: f.id } },
      el("td", { title: f.agent }, f.agent_name || f.agent),
      el("td", { className: "number" }, f.number),
      el("td", { className: "name", title: f.name }, f.name),
      el("td", {}, categoryTag(f.category)),
      el("td", {}, t("stage_" + f.stage),
        f.adopted ? [" ", el("span", { className: "tag adopted", title: t("adopted_hint") }, t("adopted"))] : null),
      el("td", {}, age(f.started_at))),
    ["col_agent", "col_number", "col_name", "col_category", "col_stage", "col_duration"])));
  }

  function renderAgents() {
    const snap = S.snapshot;
    if (!snap) return;
    const body = $("agents-body");
    if (!snap.agents.length) { body.replaceChildren(emptyRow(5)); return; }
    body.replaceChildren(...snap.agents.map((a) => labelCells(el("tr", {},
      el("td", { title: a.interface }, a.name || a.interface),
      el("td", { className: "agent-" + a.state }, t("agent_" + a.state)),
      el("td", {}, age(a.since)),
      el("td", {}, a.paused_reason || ""),
      el("td", {}, a.categories.map((c) => categoryTag(c)))),
    ["col_agent", "col_state", "col_since", "col_paused_reason", "col_categories"])));
  }

  const LIVE_LABELS = ["col_queue", "col_live_waiting", "col_longest_wait", "col_agents_free",
    "col_agents_live", "col_agents_callbacks"];

  // Asterisk's queues, live: who waits there, and where their agents are. Calling back leaves
  // a free agent to a queue whose live caller scores lower than the best callback (README,
  // "Callbacks and live callers"); the notice says so, and why.
  function renderLive() {
    const snap = S.snapshot;
    if (!snap || !snap.live) return;
    const live = snap.live;
    const body = $("live-queues-body");
    $("live-hint").textContent = live.callback_handicap_seconds < 0 ? t("live_hint_off")
      : t("live_hint", { handicap: fmtDuration(live.callback_handicap_seconds) });
    if (!live.queues.length) body.replaceChildren(emptyRow(6));
    else body.replaceChildren(...live.queues.map((q) => labelCells(el("tr", { dataset: { queue: q.queue } },
      el("td", {}, q.queue),
      el("td", { className: "num" + (q.waiting ? " live-waiting" : "") }, q.waiting),
      el("td", {}, q.oldest_joined_at ? age(q.oldest_joined_at) : "—"),
      el("td", { className: "num" }, q.agents_free),
      el("td", { className: "num" }, q.agents_on_live),
      el("td", { className: "num" }, q.agents_on_callbacks)),
    LIVE_LABELS)));
    const box = $("holding-off");
    const held = live.holding_off || [];
    show(box, held.length > 0 && snap.dispatch.dispatching);
    if (!held.length) return;
    const queues = [...new Set(held.map((h) => h.queue))];
    const names = Object.fromEntries(snap.agents.map((a) => [a.interface, a.name || a.interface]));
    $("holding-title").textContent = t("holding_title", { agents: held.length, queues: queues.join(", ") });
    $("holding-detail").textContent = held.map((h) =>
      t("holding_" + h.reason, { agent: names[h.agent] || h.agent, queue: h.queue, waiting: h.waiting })
      + (h.detail ? " (" + h.detail + ")" : "")).join("; ") + ".";
  }

  function tile(label, value, sub, kind, id) {
    return el("div", { className: "tile" + (kind ? " " + kind : ""), id },
      el("div", { className: "value" }, value),
      el("div", { className: "label" }, label),
      sub ? el("div", { className: "sub" }, sub) : null);
  }

  function withinKind(share) {
    if (share === null || share === undefined) return "";
    return share < (S.session?.target_share ?? 0.8) ? "bad" : "good";
  }

  // "balance 80, pay 40": what the IVR answered itself, biggest first.
  function selfServiceSub(counts) {
    const rows = Object.entries(counts?.by_reason || {}).sort((a, b) => b[1] - a[1]);
    return rows.length ? rows.map(([reason, n]) => reason + " " + n).join(", ") : t("self_service_sub");
  }

  function tilesFor(stats) {
    const ttc = stats.time_to_callback;
    const within = stats.within_target;
    const finished = stats.called_back + stats.failed;
    const aim = fmtShare(S.session?.target_share ?? 0.8);
    return [
      tile(t("missed_calls"), stats.missed.total),
      tile(t("called_back"), stats.called_back),
      tile(t("success_rate"), fmtShare(stats.success_rate),
        finished ? t("success_sub", { called: stats.called_back, finished }) : ""),
      tile(t("ttc_median"), fmtDuration(ttc.median_seconds)),
      tile(t("ttc_p90"), fmtDuration(ttc.p90_seconds)),
      tile(t("within_target", { target: fmtDuration(stats.target_seconds) }), fmtShare(within.share),
        within.of ? t("within_sub", { count: within.count, of: within.of, aim }) : "", withinKind(within.share)),
      tile(t("failed"), stats.failed),
      tile(t("served_own"), stats.served_inbound + stats.served_outbound),
      tile(t("self_service"), stats.self_service?.total ?? 0, selfServiceSub(stats.self_service)),
      tile(t("still_open"), stats.open),
    ];
  }

  // The caller who has waited longest, against the target: the figure a supervisor acts on.
  function oldestTile() {
    const since = S.snapshot?.oldest_waiting_since;
    const target = fmtDuration(S.session?.target_seconds);
    if (since === null || since === undefined) {
      return tile(t("oldest_waiting"), "—", t("target_is", { target }), "good", "oldest-tile");
    }
    const node = tile(t("oldest_waiting"), fmtDuration(serverNow() - since), t("target_is", { target }),
      targetClass(since) === "late" ? "bad" : targetClass(since) === "near" ? "warn" : "good", "oldest-tile");
    node.querySelector(".value").dataset.since = String(since);
    return node;
  }

  function renderTiles() {
    const box = $("today-tiles");
    if (!S.stats && !S.snapshot) return;
    box.replaceChildren(oldestTile(), ...(S.stats ? tilesFor(S.stats) : []));
    if (S.stats) $("today-day").textContent = fmtDay(S.stats.day);
  }

  function statRow(cells) {
    return el("tr", {}, cells.map((c, i) => el("td", { className: i ? "num" : "" }, c)));
  }

  function renderStats(box, stats) {
    if (!stats) { box.replaceChildren(); return; }
    const version = box.dataset.version || "0";
    const query = "?day=" + encodeURIComponent(stats.day) + "&lang=" + S.lang + "&v=" + version;
    const categories = el("table", { className: "figures" },
      el("thead", {}, el("tr", {}, [
        "col_category", "col_count", "col_callbacks", "col_called_back", "col_failed",
        "col_served", "col_open", "col_median", "col_within",
      ].map((k, i) => el("th", { className: i ? "num" : "" }, t(k))))),
      el("tbody", {}, stats.by_category.map((c) => statRow([
        categoryLabel(c.category), c.missed, c.callbacks, c.called_back, c.failed,
        c.served_inbound + c.served_outbound, c.open,
        fmtDuration(c.time_to_callback.median_seconds), fmtShare(c.within_target.share),
      ]))));
    const sources = Object.entries(stats.missed.by_source);
    const reasons = Object.entries(stats.failed_by_reason);
    const list = (entries, prefix) => el("table", {}, el("tbody", {},
      entries.length ? entries.map(([k, v]) => statRow([tOr(prefix + k, k), v])) : emptyRow(2)));
    // Today's tiles stand at the top of the page; another day's go with its section.
    const tiles = box.id === "today-stats" ? [] : [el("div", { className: "tiles" }, tilesFor(stats))];
    box.replaceChildren(
      ...tiles,
      el("div", { className: "charts" },
        el("img", { src: "/charts/hourly.svg" + query, alt: t("chart_hourly"), width: 760, height: 270 }),
        el("img", { src: "/charts/categories.svg" + query, alt: t("chart_categories") })),
      el("div", { className: "stat-tables" },
        el("div", { className: "wide" }, el("h3", {}, t("by_category")), categories),
        el("div", {}, el("h3", {}, t("by_source")), list(sources, "source_")),
        el("div", {}, el("h3", {}, t("failed_why")), list(reasons, "reason_"))),
      el("p", { className: "help" }, t("stats_help")));
  }

  function renderJobs() {
    const jobs = S.jobs;
    if (!jobs) return;
    if (!jobs.available) {
      $("jobs-counts").textContent = t("jobs_unavailable", { error: jobs.error || "?" });
      return;
    }
    $("jobs-counts").textContent = t("jobs_counts", jobs.counts);
    const failed = $("failed-jobs-body");
    failed.replaceChildren(...(jobs.failed.length ? jobs.failed.map((j) => el("tr", {},
      el("td", {}, j.description),
      el("td", {}, j.error),
      el("td", {}, fmtTime(j.failed_at)),
      el("td", {}, canAct() ? el("button", { type: "button", className: "small", dataset: { job: j.id } }, t("rerun")) : null)))
      : [emptyRow(4)]));
    const parked = $("parked-body");
    parked.replaceChildren(...(jobs.parked.length ? jobs.parked.map((p) => el("tr", {},
      el("td", {}, p.event + " " + p.callback_id + " → " + p.url),
      el("td", {}, (p.status ? p.status + " " : "") + p.error),
      el("td", {}, fmtTime(p.parked_at))))
      : [emptyRow(3)]));
    const reports = $("reports-body");
    reports.replaceChildren(...(jobs.reports.length ? jobs.reports.map((r) => el("tr", {},
      el("td", {}, r.day),
      el("td", {}, r.files.map((f) => f.url
        ? el("a", { href: f.url, download: f.name, className: "file" }, f.name, " ")
        : el("span", { className: "muted" }, f.name, " ")))))
      : [emptyRow(2)]));
  }

  function tick() {
    for (const node of document.querySelectorAll(".age[data-since]")) {
      node.textContent = fmtDuration(serverNow() - Number(node.dataset.since));
      if (node.dataset.target) {
        const kind = targetClass(Number(node.dataset.since));
        node.classList.toggle("near", kind === "near");
        node.classList.toggle("late", kind === "late");
      }
    }
    const oldest = $("oldest-tile");
    const value = oldest?.querySelector(".value[data-since]");
    if (value) {
      const since = Number(value.dataset.since);
      value.textContent = fmtDuration(serverNow() - since);
      const kind = targetClass(since);
      oldest.classList.toggle("bad", kind === "late");
      oldest.classList.toggle("warn", kind === "near");
      oldest.classList.toggle("good", !kind);
    }
  }

  // ---------------------------------------------------------------- live updates

  function setConn(kind, seconds) {
    S.conn = [kind, seconds];  // said again when the language changes
    const node = $("conn");
    if (kind === "live") pill(node, t("conn_live"), "ok");
    else if (kind === "connecting") pill(node, t("conn_connecting"), "warn");
    else pill(node, t("conn_reconnecting", { seconds }), "bad");
  }

  function onMessage() {
    S.lastMessage = Date.now();
    S.backoff = 1;
    setConn("live");
  }

  function connect() {
    if (S.es) S.es.close();
    setConn("connecting");
    const es = new EventSource("/api/stream");
    S.es = es;
    S.lastMessage = Date.now();
    es.addEventListener("snapshot", (e) => {
      onMessage();
      S.snapshot = JSON.parse(e.data);
      S.received = Date.now();
      // The day pickers start at the PBX's today (not the browser's, nor UTC's).
      for (const form of [$("day-form"), $("report-form")]) {
        if (!form.elements.day.dataset.iso) setDay(form.elements.day, S.snapshot.day);
      }
      renderHeader(); renderOutages(); renderWaiting(); renderInProgress(); renderAgents(); renderLive(); renderTiles();
    });
    es.addEventListener("stats", (e) => {
      onMessage();
      S.stats = JSON.parse(e.data);
      const box = $("today-stats");
      box.dataset.version = String(Number(box.dataset.version || "0") + 1);
      renderTiles(); renderStats(box, S.stats);
    });
    es.addEventListener("jobs", (e) => { onMessage(); S.jobs = JSON.parse(e.data); renderJobs(); });
    es.addEventListener("ping", onMessage);
    es.addEventListener("expired", () => { es.close(); sessionOver(); });
    es.onerror = () => { if (S.es === es) reconnectLater(); };
  }

  function reconnectLater() {
    if (S.es) { S.es.close(); S.es = null; }
    if (S.retryTimer) return;
    const wait = Math.min(30, S.backoff) * (0.8 + Math.random() * 0.4);
    S.backoff = Math.min(30, S.backoff * 2);
    setConn("reconnecting", Math.round(wait));
    S.retryTimer = setTimeout(async () => {
      S.retryTimer = null;
      try {
        S.session = await api("GET", "/api/session");
      } catch (e) {
        if (e.status === 401) { sessionOver(); return; }
        // The server itself is away: try the stream anyway; its failure brings us back here.
      }
      connect();
    }, wait * 1000);
  }

  function watchdog() {
    if (S.es && Date.now() - S.lastMessage > WATCHDOG_MS) reconnectLater();
  }

  function sessionOver() {
    if (S.es) { S.es.close(); S.es = null; }
    notice(t("session_over"), true);
    if (S.session && S.session.auth === "users") setTimeout(() => { window.location.assign("/login"); }, 1500);
  }

  // ---------------------------------------------------------------- actions

  // A reason is a code of the program (an outcome, a source, a stage) or a person's words.
  function reasonText(event, reason) {
    if (!reason) return "";
    if (event === "created" || event === "merged") return tOr("source_" + reason, reason);
    if (event === "stage") return tOr("stage_" + reason, reason);
    return tOr("reason_" + reason, reason);
  }

  function historyDetail(h) {
    const d = h.detail || {};
    const parts = [];
    if (h.event === "category_changed" && d.from !== undefined) {
      parts.push(categoryLabel(d.from) + " → " + categoryLabel(d.to));
    } else {
      const reason = reasonText(h.event, h.reason);
      if (reason && !(h.event === reason)) parts.push(reason);
    }
    if (h.event === "merged" && d.category) parts.push(categoryLabel(d.category));
    if (h.event === "number_changed" && d.number) parts.push((d.previous || "") + " → " + d.number);
    if (d.previous_state) parts.push(t("was_state", { state: tOr("state_" + d.previous_state, d.previous_state) }));
    if (d.agent) parts.push(t("agent_is", { agent: d.agent }));
    const attempt = d.attempt;
    if (attempt && typeof attempt === "object") {
      if (attempt.outcome && attempt.outcome !== h.reason) parts.push(tOr("reason_" + attempt.outcome, attempt.outcome));
      if (attempt.talk_seconds) parts.push(t("talked", { duration: fmtDuration(attempt.talk_seconds) }));
    }
    if (d.next_at) parts.push(t("next_try", { time: fmtDateTime(Number(d.next_at)) }));
    return parts.join("; ");
  }

  function openHistory(id) {
    api("GET", "/api/callbacks/" + encodeURIComponent(id)).then((data) => {
      const cb = data.callback;
      $("history-title").textContent = t("history_title", { id: id + " · " + cb.number + (cb.name ? " · " + cb.name : "") });
      const note = $("history-note");
      note.textContent = cb.note ? t("note_is", { note: cb.note }) : "";
      show(note, !!cb.note);
      $("history-body").replaceChildren(...data.history.map((h) => labelCells(el("tr", {},
        el("td", { className: "nowrap" }, fmtDateTime(h.at)),
        el("td", {}, tOr("event_" + h.event, h.event)),
        el("td", {}, tOr("state_" + h.state, h.state)),
        el("td", {}, historyDetail(h)),
        el("td", {}, actorLabel(h.actor))),
      ["col_time", "col_event", "col_state", "col_details", "col_actor"])));
      $("history-dialog").showModal();
    }).catch((e) => notice(t("error", { message: e.message }), true));
  }

  // ---------------------------------------------------------------- finding a callback

  async function onSearchSubmit(event) {
    event.preventDefault();
    const number = $("search-form").elements.number.value.trim();
    const result = $("search-result");
    result.classList.remove("error");
    try {
      const data = await api("GET", "/api/callbacks?number=" + encodeURIComponent(number));
      S.search = { number, callbacks: data.callbacks };
      renderSearch();
    } catch (e) {
      if (e.status === 401) { sessionOver(); return; }
      S.search = null;
      show($("search-results"), false);
      result.textContent = t("error", { message: e.message });
      result.classList.add("error");
    }
  }

  function renderSearch() {
    const { number, callbacks } = S.search;
    const result = $("search-result");
    result.classList.remove("error");
    result.textContent = callbacks.length ? t("search_found", { count: callbacks.length }) : t("search_none", { number });
    show($("search-results"), callbacks.length > 0);
    $("search-body").replaceChildren(...callbacks.map((cb) => labelCells(el("tr", { dataset: { id: cb.id } },
      el("td", {}, cb.id),
      numberCell(cb),
      el("td", { className: "state-" + cb.state }, t("state_" + cb.state)),
      el("td", {}, categoryTag(cb.category)),
      el("td", { className: "nowrap" }, fmtDateTime(cb.first_missed)),
      el("td", { className: "nowrap" }, fmtDateTime(cb.closed_at)),
      nameCell(reasonText("", cb.reason), cb.note),
      el("td", { className: "actions" }, el("button", { type: "button", className: "small", dataset: { act: "history", id: cb.id } }, t("history")))),
    ["col_id", "col_number", "col_state", "col_category", "col_first_missed", "col_closed", "col_reason_note", ""])));
  }

  function onWaitingClick(event) {
    const button = event.target.closest("button[data-act]");
    if (!button) return;
    const id = button.dataset.id;
    if (button.dataset.act === "call-now") {
      act("POST", "/api/callbacks/" + encodeURIComponent(id) + "/call-now").catch(() => {});
    } else if (button.dataset.act === "cancel") {
      S.cancelId = id;
      $("cancel-title").textContent = t("cancel_title", { number: button.dataset.number });
      $("cancel-error").textContent = "";
      $("cancel-form").elements.reason.value = "";
      $("cancel-dialog").showModal();
    } else if (button.dataset.act === "category") {
      openCategory(id, button.dataset.category);
    } else if (button.dataset.act === "history") {
      openHistory(id);
    }
  }

  function openCategory(id, current) {
    S.categoryFor = { id, current };
    $("category-title").textContent = t("category_title", { id });
    $("category-now").textContent = t("category_now", { category: categoryLabel(current) });
    $("category-error").textContent = "";
    fillCategorySelect($("category-form").elements.category, current);
    $("category-dialog").showModal();
  }

  async function onCategorySubmit(event) {
    event.preventDefault();
    const { id, current } = S.categoryFor || {};
    const category = $("category-form").elements.category.value;
    if (!id) return;
    if (category === current) { $("category-error").textContent = t("category_same"); return; }
    try {
      await api("POST", "/api/callbacks/" + encodeURIComponent(id) + "/category", { category });
      $("category-dialog").close();
    } catch (e) {
      if (e.status === 401) { sessionOver(); return; }
      $("category-error").textContent = t("error", { message: e.message });
    }
  }

  async function onCancelSubmit(event) {
    event.preventDefault();
    const reason = $("cancel-form").elements.reason.value;
    try {
      await api("POST", "/api/callbacks/" + encodeURIComponent(S.cancelId) + "/cancel", { reason });
      $("cancel-dialog").close();
    } catch (e) {
      $("cancel-error").textContent = t("error", { message: e.message });
    }
  }

  // ---------------------------------------------------------------- outages

  // An outage holds calls: a striped red band above everything, one line per outage.
  function renderOutages() {
    const box = $("outage-banner");
    const list = S.snapshot?.outages || [];
    document.body.classList.toggle("has-outage", list.some((o) => o.state === "active"));
    box.replaceChildren(...list.map(outageLine));
    show(box, list.length > 0);
  }

  function outageLine(o) {
    const categories = o.categories.map(categoryLabel).join(", ");
    const where = [...o.prefixes, ...o.areas];
    const parts = [
      t("outage_area", { area: where.length ? where.join(", ") : t("outage_everyone") }),
      o.expected_end ? t("outage_until", { time: fmtTime(o.expected_end) }) : t("outage_until_unknown"),
      t("outage_held", { count: o.waiting }),
    ];
    if (o.state !== "active") parts.push(t("outage_totals", { released: o.released, dropped: o.dropped }));
    parts.push(t("outage_since", { time: fmtTime(o.declared_at), by: actorLabel(o.declared_by) || "?" }));
    const title = o.state === "active" ? t("outage_active", { categories })
      : t("outage_ending", { choice: t("outage_choice_" + (o.end_choice || "release")) });
    const line = el("div", { className: "outage-line", dataset: { outage: o.id, state: o.state } },
      el("strong", {}, title), " ",
      o.message ? el("span", { className: "outage-msg" }, "«" + o.message + "» ") : null,
      el("span", {}, parts.join(" · ")));
    if (o.state === "active" && canAct()) {
      line.append(el("button", { type: "button", className: "act", dataset: { end: o.id } }, t("outage_end")));
    }
    return line;
  }

  function onOutageClick() {
    const box = $("outage-categories");
    box.replaceChildren(el("legend", {}, t("outage_categories")),
      ...(S.session?.categories || []).map((c) => el("label", {},
        el("input", { type: "checkbox", name: "category", value: c.name, checked: c.name === "support" }),
        " " + categoryLabel(c.name) + " ")));
    $("outage-error").textContent = "";
    $("outage-dialog").showModal();
  }

  // "18:00" in the PBX's time zone, today or (once past) tomorrow, as a Unix time.
  function untilFromTime(text) {
    if (!text) return null;
    const [h, m] = text.split(":").map(Number);
    const now = serverNow();
    const parts = fmt("time").formatToParts(new Date(now * 1000));
    const nowH = Number(parts.find((p) => p.type === "hour").value);
    const nowM = Number(parts.find((p) => p.type === "minute").value);
    let delta = (h * 60 + m - (nowH * 60 + nowM)) * 60;
    if (delta <= 0) delta += 86400;
    return Math.round(now + delta - (now % 60));
  }

  async function onOutageSubmit(event) {
    event.preventDefault();
    const form = $("outage-form");
    const categories = [...form.querySelectorAll("input[name=category]:checked")].map((i) => i.value);
    if (!categories.length) { $("outage-error").textContent = t("outage_need_category"); return; }
    const prefixes = form.elements.prefixes.value.split(/[\s,;]+/).filter(Boolean);
    try {
      await api("POST", "/api/outages", {
        categories, prefixes, message: form.elements.message.value,
        expected_end: untilFromTime(form.elements.until.value),
      });
      $("outage-dialog").close();
    } catch (e) {
      if (e.status === 401) { sessionOver(); return; }
      $("outage-error").textContent = t("error", { message: e.message });
    }
  }

  function onOutageBannerClick(event) {
    const button = event.target.closest("button[data-end]");
    if (!button) return;
    const outage = (S.snapshot?.outages || []).find((o) => o.id === button.dataset.end);
    if (!outage) return;
    S.endOutage = outage.id;
    $("outage-end-title").textContent = t("outage_end_title", { categories: outage.categories.map(categoryLabel).join(", ") });
    $("outage-end-form").elements.per_hour.value = String(outage.release_per_hour || S.session?.outage_release_per_hour || 60);
    $("outage-end-error").textContent = "";
    $("outage-end-dialog").showModal();
  }

  async function onOutageEndSubmit(event) {
    event.preventDefault();
    const form = $("outage-end-form");
    const choice = form.elements.choice.value;
    const perHour = form.elements.per_hour.value === "" ? null : Number(form.elements.per_hour.value);
    try {
      await api("POST", "/api/outages/" + encodeURIComponent(S.endOutage) + "/end", { choice, per_hour: perHour });
      $("outage-end-dialog").close();
    } catch (e) {
      if (e.status === 401) { sessionOver(); return; }
      $("outage-end-error").textContent = t("error", { message: e.message });
    }
  }

  async function onPauseClick() {
    if ($("pause-btn").dataset.paused) {
      await act("POST", "/api/dispatch/resume").catch(() => {});
      return;
    }
    $("pause-error").textContent = "";
    $("pause-form").elements.reason.value = "";
    $("pause-dialog").showModal();
  }

  async function onPauseSubmit(event) {
    event.preventDefault();
    try {
      await api("POST", "/api/dispatch/pause", { reason: $("pause-form").elements.reason.value });
      $("pause-dialog").close();
    } catch (e) {
      $("pause-error").textContent = t("error", { message: e.message });
    }
  }

  async function onAddSubmit(event) {
    event.preventDefault();
    const form = $("add-form");
    const result = $("add-result");
    const body = { number: form.elements.number.value.trim(), category: form.elements.category.value };
    if (form.elements.name.value.trim()) body.name = form.elements.name.value.trim();
    if (form.elements.note.value.trim()) body.note = form.elements.note.value.trim();
    try {
      const data = await act("POST", "/api/callbacks", body, result);
      result.textContent = t(data.result === "merged" ? "merged" : "added", { id: data.callback.id });
      form.elements.number.value = ""; form.elements.name.value = ""; form.elements.note.value = "";
    } catch (e) { /* shown by act() */ }
  }

  function dayOrSay(form, result) {
    const day = dayOf(form.elements.day);
    if (!day) {
      result.textContent = t("day_bad", { example: fmtDay("2026-11-23") });
      result.classList.add("error");
    }
    return day;
  }

  function onDayStep(event) {
    const button = event.target.closest("button[data-day-step]");
    if (!button) return;
    const form = button.form;
    const input = form.elements.day;
    const day = dayOf(input) || input.dataset.iso || S.snapshot?.day;
    if (!day) return;
    setDay(input, shiftDay(day, Number(button.dataset.dayStep)));
    if (form.id === "day-form") form.requestSubmit();
  }

  async function onDaySubmit(event) {
    event.preventDefault();
    const result = $("day-result");
    result.classList.remove("error");
    const day = dayOrSay($("day-form"), result);
    if (!day) return;
    try {
      S.dayStats = await api("GET", "/api/stats?day=" + encodeURIComponent(day));
      result.textContent = "";
      const box = $("day-stats");
      box.dataset.version = String(Date.now());
      renderStats(box, S.dayStats);
    } catch (e) {
      result.textContent = t("error", { message: e.message });
      result.classList.add("error");
    }
  }

  async function onReportSubmit(event) {
    event.preventDefault();
    const result = $("report-result");
    result.classList.remove("error");
    const day = dayOrSay($("report-form"), result);
    if (!day) return;
    try {
      await act("POST", "/api/reports", { day }, result);
      result.textContent = t("report_made", { day: fmtDay(day) });
    } catch (e) { /* shown by act() */ }
  }

  function onJobsClick(event) {
    const button = event.target.closest("button[data-job]");
    if (!button) return;
    act("POST", "/api/jobs/" + encodeURIComponent(button.dataset.job) + "/rerun", undefined, $("jobs-result")).catch(() => {});
  }

  // ---------------------------------------------------------------- start

  async function start() {
    try {
      const [strings, session] = await Promise.all([
        fetch("/static/i18n.json", { credentials: "same-origin" }).then((r) => r.json()),
        api("GET", "/api/session"),
      ]);
      S.strings = strings;
      S.session = session;
    } catch (e) {
      if (e.status === 401) { window.location.assign("/login"); return; }
      notice("Cannot load the page: " + e.message, true);
      setTimeout(start, 5000);
      return;
    }
    let saved = null;
    try { saved = localStorage.getItem("cbd.lang"); } catch (e) { /* private mode */ }
    S.lang = saved in S.strings ? saved : (S.session.language || "en");
    $("logout-form").elements.csrf_token.value = S.session.csrf_token;
    applyLanguage();

    for (const button of document.querySelectorAll("[data-lang]")) {
      button.addEventListener("click", () => setLanguage(button.dataset.lang));
    }
    $("waiting-body").addEventListener("click", onWaitingClick);
    $("search-body").addEventListener("click", onWaitingClick);
    $("search-form").addEventListener("submit", onSearchSubmit);
    $("category-form").addEventListener("submit", onCategorySubmit);
    $("category-close").addEventListener("click", () => $("category-dialog").close());
    $("banner-resume").addEventListener("click", () => act("POST", "/api/dispatch/resume").catch(() => {}));
    for (const form of [$("day-form"), $("report-form")]) form.addEventListener("click", onDayStep);
    $("cancel-form").addEventListener("submit", onCancelSubmit);
    $("cancel-close").addEventListener("click", () => $("cancel-dialog").close());
    $("pause-btn").addEventListener("click", onPauseClick);
    $("outage-btn").addEventListener("click", onOutageClick);
    $("outage-form").addEventListener("submit", onOutageSubmit);
    $("outage-close").addEventListener("click", () => $("outage-dialog").close());
    $("outage-banner").addEventListener("click", onOutageBannerClick);
    $("outage-end-form").addEventListener("submit", onOutageEndSubmit);
    $("outage-end-close").addEventListener("click", () => $("outage-end-dialog").close());
    $("pause-form").addEventListener("submit", onPauseSubmit);
    $("pause-close").addEventListener("click", () => $("pause-dialog").close());
    $("history-close").addEventListener("click", () => $("history-dialog").close());
    $("add-form").addEventListener("submit", onAddSubmit);
    $("day-form").addEventListener("submit", onDaySubmit);
    $("report-form").addEventListener("submit", onReportSubmit);
    $("failed-jobs-body").addEventListener("click", onJobsClick);
    $("rerun-all").addEventListener("click", () => act("POST", "/api/jobs/rerun-failed", undefined, $("jobs-result")).catch(() => {}));
    $("rerun-parked").addEventListener("click", () => act("POST", "/api/webhooks/rerun-parked", undefined, $("jobs-result")).catch(() => {}));
    setInterval(tick, 1000);
    setInterval(watchdog, 5000);
    connect();
  }

  // For tests and the curious: the page's own API helper (same token, same rules).
  window.cbd = { api, state: S };
  start();
})();
