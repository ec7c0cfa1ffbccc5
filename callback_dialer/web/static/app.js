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
    knownIds: null, deferWaiting: false, cancelId: null,
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

  function fmtDuration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return t("seconds_short", { n: s });
    const m = Math.floor(s / 60);
    if (m < 60) return t("minutes_short", { n: m });
    return t("hours_short", { h: Math.floor(m / 60), m: m % 60 });
  }

  function fmtShare(value) {
    return value === null || value === undefined ? "—" : Math.round(value * 100) + "%";
  }

  function age(since) {
    // Updated every second by tick(); the server's clock may run faster (demo).
    return el("span", { className: "age", dataset: { since: String(since) } },
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
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.classList.toggle("on", button.dataset.lang === S.lang);
      button.setAttribute("aria-pressed", button.dataset.lang === S.lang ? "true" : "false");
    }
    fillCategorySelect($("add-form").elements.category);
    renderAll();
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
    renderWaiting();
    renderInProgress();
    renderAgents();
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
    if (d.paused) {
      pill($("dispatch"), t("dispatch_paused", { by: d.paused_by || "?" }) + (d.paused_reason ? ": " + d.paused_reason : ""), "warn");
    } else if (!d.dispatching) {
      pill($("dispatch"), t("dispatch_blocked", { why: tOr("blocked_" + d.blocked_by, d.blocked_by) }), "warn");
    } else {
      pill($("dispatch"), t("dispatch_on"), "ok");
    }
    const button = $("pause-btn");
    show(button, canAct());
    button.textContent = d.paused ? t("resume") : t("pause");
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

  function renderWaiting() {
    const body = $("waiting-body");
    const snap = S.snapshot;
    if (!snap) return;
    // A supervisor in the middle of choosing a category keeps their dropdown.
    if (body.contains(document.activeElement) && document.activeElement.tagName === "SELECT") {
      S.deferWaiting = true;
      return;
    }
    S.deferWaiting = false;
    const previous = S.knownIds;
    S.knownIds = new Set(snap.waiting.map((c) => c.id));
    $("waiting-count").textContent = t("waiting_count", { shown: snap.waiting.length, total: snap.waiting_total });
    if (!snap.waiting.length) { body.replaceChildren(emptyRow(10)); return; }
    body.replaceChildren(...snap.waiting.map((cb) => {
      const next = cb.state === "scheduled" && cb.next_at ? fmtTime(cb.next_at)
        : cb.state === "pending" ? t("now") : "—";
      const actions = el("td", { className: "actions" });
      if (canAct()) {
        const select = el("select", { dataset: { act: "category", id: cb.id }, "aria-label": t("change_category") });
        fillCategorySelect(select, cb.category);
        actions.append(
          el("button", { type: "button", className: "small act", dataset: { act: "call-now", id: cb.id } }, t("call_now")),
          el("button", { type: "button", className: "small", dataset: { act: "cancel", id: cb.id, number: cb.number } }, t("cancel")),
          select);
      }
      actions.append(el("button", { type: "button", className: "small", dataset: { act: "history", id: cb.id } }, t("history")));
      const row = el("tr", { dataset: { id: cb.id }, className: previous && !previous.has(cb.id) ? "fresh" : "" },
        el("td", { className: "num" }, cb.position ?? ""),
        el("td", {}, categoryTag(cb.category), cb.pinned ? el("span", { className: "tag pinned" }, t("pinned")) : null),
        el("td", { className: "number" }, cb.number),
        el("td", { className: "name", title: cb.name }, cb.name),
        el("td", {}, fmtTime(cb.first_missed), age(cb.first_missed)),
        el("td", { className: "num" }, cb.missed_count),
        el("td", { className: "num" }, cb.attempts),
        el("td", {}, next),
        el("td", { className: "state-" + cb.state }, t("state_" + cb.state)),
        actions);
      return row;
    }));
  }

  function renderInProgress() {
    const snap = S.snapshot;
    if (!snap) return;
    const body = $("in-progress-body");
    if (!snap.in_progress.length) { body.replaceChildren(emptyRow(6)); return; }
    body.replaceChildren(...snap.in_progress.map((f) => el("tr", { dataset: { id: f.id } },
      el("td", { title: f.agent }, f.agent_name || f.agent),
      el("td", { className: "number" }, f.number),
      el("td", { className: "name", title: f.name }, f.name),
      el("td", {}, categoryTag(f.category)),
      el("td", {}, t("stage_" + f.stage)),
      el("td", {}, age(f.started_at)))));
  }

  function renderAgents() {
    const snap = S.snapshot;
    if (!snap) return;
    const body = $("agents-body");
    if (!snap.agents.length) { body.replaceChildren(emptyRow(5)); return; }
    body.replaceChildren(...snap.agents.map((a) => el("tr", {},
      el("td", { title: a.interface }, a.name || a.interface),
      el("td", { className: "agent-" + a.state }, t("agent_" + a.state)),
      el("td", {}, age(a.since)),
      el("td", {}, a.paused_reason || ""),
      el("td", {}, a.categories.map((c) => categoryTag(c))))));
  }

  function tile(label, value, sub) {
    return el("div", { className: "tile" },
      el("div", { className: "value" }, value),
      el("div", { className: "label" }, label),
      sub ? el("div", { className: "sub" }, sub) : null);
  }

  function tilesFor(stats) {
    const ttc = stats.time_to_callback;
    const within = stats.within_target;
    return [
      tile(t("missed_calls"), stats.missed.total),
      tile(t("called_back"), stats.called_back),
      tile(t("success_rate"), fmtShare(stats.success_rate)),
      tile(t("ttc_median"), fmtDuration(ttc.median_seconds)),
      tile(t("ttc_p90"), fmtDuration(ttc.p90_seconds)),
      tile(t("within_target", { target: fmtDuration(stats.target_seconds) }), fmtShare(within.share),
        within.of ? within.count + " / " + within.of : ""),
      tile(t("failed"), stats.failed),
      tile(t("served_own"), stats.served_inbound + stats.served_outbound),
      tile(t("still_open"), stats.open),
    ];
  }

  function renderTiles() {
    const box = $("today-tiles");
    if (!S.stats) return;
    box.replaceChildren(...tilesFor(S.stats));
    $("today-day").textContent = S.stats.day;
  }

  function statRow(cells) {
    return el("tr", {}, cells.map((c, i) => el("td", { className: i ? "num" : "" }, c)));
  }

  function renderStats(box, stats) {
    if (!stats) { box.replaceChildren(); return; }
    const version = box.dataset.version || "0";
    const query = "?day=" + encodeURIComponent(stats.day) + "&lang=" + S.lang + "&v=" + version;
    const categories = el("table", {},
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
        el("div", {}, el("h3", {}, t("by_category")), categories),
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
    }
  }

  // ---------------------------------------------------------------- live updates

  function setConn(kind, seconds) {
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
        if (!form.elements.day.value) form.elements.day.value = S.snapshot.day;
      }
      renderHeader(); renderWaiting(); renderInProgress(); renderAgents();
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

  function openHistory(id) {
    api("GET", "/api/callbacks/" + encodeURIComponent(id)).then((data) => {
      $("history-title").textContent = t("history_title", { id: id + " · " + data.callback.number + (data.callback.name ? " · " + data.callback.name : "") });
      $("history-body").replaceChildren(...data.history.map((h) => el("tr", {},
        el("td", {}, fmtTime(h.at)), el("td", {}, h.event), el("td", {}, tOr("state_" + h.state, h.state)),
        el("td", {}, h.reason), el("td", {}, h.actor))));
      $("history-dialog").showModal();
    }).catch((e) => notice(t("error", { message: e.message }), true));
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
    } else if (button.dataset.act === "history") {
      openHistory(id);
    }
  }

  function onWaitingChange(event) {
    const select = event.target.closest("select[data-act=category]");
    if (!select) return;
    act("POST", "/api/callbacks/" + encodeURIComponent(select.dataset.id) + "/category",
      { category: select.value }).catch(() => {}).finally(() => select.blur());
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

  async function onDaySubmit(event) {
    event.preventDefault();
    const day = $("day-form").elements.day.value;
    const result = $("day-result");
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
    const day = $("report-form").elements.day.value;
    const result = $("report-result");
    try {
      await act("POST", "/api/reports", { day }, result);
      result.textContent = t("report_made", { day });
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
    $("waiting-body").addEventListener("change", onWaitingChange);
    $("waiting-body").addEventListener("focusout", () => { if (S.deferWaiting) setTimeout(renderWaiting, 0); });
    $("cancel-form").addEventListener("submit", onCancelSubmit);
    $("cancel-close").addEventListener("click", () => $("cancel-dialog").close());
    $("pause-btn").addEventListener("click", onPauseClick);
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
