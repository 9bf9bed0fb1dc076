// layer1 status page. Plain JavaScript, no framework, no build step. Every value from the
// server is written with textContent (never innerHTML), so nothing in the data can run as code.
"use strict";
(function () {
  const HISTORY_LEN = 1800; // 15 minutes at one point per 500 ms, as the server keeps it
  const $ = (id) => document.getElementById(id);
  const hist = { in: [], out: [], seq: 0 };
  let last = null;
  let posting = false;

  function fmtNum(x) {
    if (x === null || x === undefined || Number.isNaN(x)) return "–";
    if (Math.abs(x) >= 1e6) return (x / 1e6).toFixed(2) + "M";
    if (Math.abs(x) >= 1e4) return (x / 1e3).toFixed(1) + "k";
    return (Math.round(x * 10) / 10).toString();
  }
  function fmtBytes(b) {
    const u = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0; let v = Number(b) || 0;
    while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
    return (i ? v.toFixed(1) : v.toString()) + " " + u[i];
  }
  function fmtDur(s) {
    if (s === null || s === undefined) return "–";
    if (s < 60) return s + "s";
    if (s < 3600) return Math.floor(s / 60) + "m " + (s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + Math.floor((s % 3600) / 60) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor((s % 86400) / 3600) + "h";
  }
  function fmtAge(ms) {
    if (ms === null || ms === undefined) return "never";
    return ms < 1000 ? ms + " ms" : (ms / 1000).toFixed(1) + " s";
  }
  function fmtUs(us) {
    if (us === null || us === undefined) return "–";
    if (us >= 1e6) return (us / 1e6).toFixed(2) + " s";
    if (us >= 1e3) return (us / 1e3).toFixed(2) + " ms";
    return us.toFixed(1) + " µs";
  }
  function fmtTime(v) {
    if (v === null || v === undefined || v === "") return "–";
    const d = typeof v === "number" ? new Date(v > 1e12 ? v : v * 1000) : new Date(v);
    return Number.isNaN(d.getTime()) ? String(v) : d.toLocaleString();
  }
  function text(el, v) { if (el && el.textContent !== v) el.textContent = v; }
  function pill(el, state, label) { el.dataset.state = state; text(el, label); }

  function cell(tr, v, cls, state) {
    const td = document.createElement("td");
    td.textContent = v;
    if (cls) td.className = cls;
    if (state) td.dataset.state = state;
    tr.appendChild(td);
  }
  function fillBody(tbody, rows, cols, emptyText) {
    const frag = document.createDocumentFragment();
    if (!rows.length) {
      const tr = document.createElement("tr"); tr.className = "empty";
      const td = document.createElement("td"); td.colSpan = cols; td.textContent = emptyText;
      tr.appendChild(td); frag.appendChild(tr);
    }
    rows.forEach((r) => frag.appendChild(r));
    tbody.replaceChildren(frag);
  }

  function renderFeeds(conns) {
    const rows = conns.map((c) => {
      const tr = document.createElement("tr");
      tr.dataset.vendor = c.vendor; tr.dataset.state = c.state;
      if (c.stale) tr.className = "stale";
      cell(tr, c.vendor);
      cell(tr, String(c.conn));
      cell(tr, c.thread);
      cell(tr, c.core === null || c.core === undefined ? "unpinned" : String(c.core));
      cell(tr, c.state + (c.last_error && c.state !== "open" ? " (" + c.last_error + ")" : ""), "state", c.state);
      cell(tr, fmtDur(c.uptime_s));
      cell(tr, String(c.reconnects));
      cell(tr, String(c.instruments));
      cell(tr, fmtAge(c.last_message_age_ms));
      return tr;
    });
    fillBody($("feeds").tBodies[0], rows, 9, "no connections reported yet");
    document.body.dataset.openConnections = String(conns.filter((c) => c.state === "open" && !c.stale).length);
  }

  function renderFlow(s) {
    text($("rate-in"), fmtNum(s.rates.ticks_in_per_s));
    text($("rate-out"), fmtNum(s.rates.produced_per_s));
    document.body.dataset.ticksPerS = String(s.rates.ticks_in_per_s);
    fillBody($("rejected").tBodies[0], s.rejected.map((r) => {
      const tr = document.createElement("tr");
      cell(tr, r.vendor); cell(tr, r.reason); cell(tr, String(r.total), "num");
      return tr;
    }), 3, "none");
    fillBody($("queues").tBodies[0], s.queues.map((q) => {
      const tr = document.createElement("tr");
      cell(tr, q.queue); cell(tr, "depth " + q.depth, "num"); cell(tr, "full " + q.full_total, "num");
      return tr;
    }), 3, "none");
    text($("in-flight"), String(s.kafka.in_flight));
    text($("journal"), fmtBytes(s.journal.bytes));
    [["lat-handoff", s.latency.handoff], ["lat-ack", s.latency.ack]].forEach(([id, p]) => {
      const tds = $(id).querySelectorAll("td");
      text(tds[0], fmtUs(p.p50_us)); text(tds[1], fmtUs(p.p99_us)); text(tds[2], fmtUs(p.p999_us));
    });
  }

  function renderBackfill(b, s) {
    const state = String(b.state || "unknown");
    const sec = $("backfill");
    sec.dataset.state = state;
    document.body.dataset.backfillState = state;
    pill($("bf-state"), state, state);
    // The backfill thread writes camelCase (instrumentsDone, startedAt, ...); snake_case is
    // accepted too, for hand-written values.
    const pick = (o, camel, snake) => (o[camel] !== undefined && o[camel] !== null ? o[camel] : o[snake]);
    const p = b.progress || {};
    const total = Number(pick(p, "instrumentsTotal", "instruments_total")) || 0;
    const done = Number(pick(p, "instrumentsDone", "instruments_done")) || 0;
    const cDone = Number(pick(p, "candlesDone", "candles_done")) || 0;
    const cTotal = Number(pick(p, "candlesTotal", "candles_total")) || 0;
    let pct = total > 0 ? Math.min(100, Math.round((done / total) * 100)) : (state === "completed" ? 100 : 0);
    if (cTotal > 0 && total === 0) pct = Math.min(100, Math.round((cDone / cTotal) * 100));
    $("bf-bar").style.width = pct + "%";
    sec.querySelector(".progress").setAttribute("aria-valuenow", String(pct));
    document.body.dataset.backfillPct = String(pct);
    const parts = [];
    if (total > 0) parts.push(done + " / " + total + " instruments");
    if (cTotal > 0 || cDone > 0) parts.push(cDone + " / " + (cTotal || "?") + " candles");
    if (b.error) parts.push(String(b.error));
    if (b.note) parts.push(String(b.note));
    text($("bf-progress"), parts.join(" · ") || (pct + "%"));
    text($("bf-current"), pick(b, "currentInstrument", "current_instrument") || b.current || "–");
    text($("bf-trigger"), b.trigger ? String(b.trigger) : "–");
    text($("bf-started"), fmtTime(pick(b, "startedAt", "started")));
    text($("bf-finished"), fmtTime(pick(b, "finishedAt", "finished")));
    text($("bf-reason"), b.reason ? String(b.reason) : "–");
    const errs = Array.isArray(b.errors) ? b.errors : [];
    const frag = document.createDocumentFragment();
    errs.slice(-10).forEach((e) => {
      const li = document.createElement("li");
      li.textContent = typeof e === "string" ? e
        : (e && e.message) ? [e.instrument, e.code, e.message].filter(Boolean).join(" · ")
        : JSON.stringify(e);
      frag.appendChild(li);
    });
    $("bf-errors").replaceChildren(frag);
    const btn = $("trigger");
    btn.disabled = posting || state === "running" || state === "unavailable";
    btn.title = state === "running" ? "a backfill is running" : "";
    const msg = $("trigger-msg");
    if (posting) return;
    if (state === "refused") {
      msg.dataset.kind = "error"; text(msg, "refused: " + (b.reason || "no reason given"));
    } else if (state === "failed") {
      msg.dataset.kind = "error"; text(msg, "failed" + (b.reason ? ": " + b.reason : ""));
    } else if (state === "running") {
      msg.dataset.kind = "ok"; text(msg, "running " + document.body.dataset.backfillPct + "%");
    } else if (state === "completed" && msg.dataset.kind === "ok") {
      text(msg, "completed");
    }
    void s;
  }

  function render(s) {
    last = s;
    text($("engine-name"), s.engine.name);
    text($("engine-version"), "v" + s.engine.version);
    document.title = s.engine.name + " · " + s.health.overall;
    pill($("health"), s.health.overall, "health: " + s.health.overall + (s.health.ready ? "" : " (not ready)"));
    pill($("market"), s.market.phase, "market: " + s.market.phase.replace("_", "-"));
    $("market").title = "source: " + s.market.source;
    const reasons = $("health-reasons");
    if (s.health.reasons.length) {
      const h = document.createElement("strong"); h.textContent = "Attention";
      const ul = document.createElement("ul");
      s.health.reasons.forEach((r) => { const li = document.createElement("li"); li.textContent = r; ul.appendChild(li); });
      reasons.replaceChildren(h, ul); reasons.hidden = false;
    } else { reasons.hidden = true; }
    renderFeeds(s.connections);
    renderFlow(s);
    renderBackfill(s.backfill || {}, s);
    text($("updated"), new Date(s.engine.now_ms).toLocaleTimeString());
    document.body.dataset.seq = String(s.seq);
  }

  function pushPoint(s) {
    if (s.seq <= hist.seq) return;
    hist.in.push(s.rates.ticks_in_per_s); hist.out.push(s.rates.produced_per_s);
    if (hist.in.length > HISTORY_LEN) { hist.in.splice(0, hist.in.length - HISTORY_LEN); hist.out.splice(0, hist.out.length - HISTORY_LEN); }
    hist.seq = s.seq;
  }

  function draw(canvas, data, color) {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.max(100, Math.floor(canvas.clientWidth * dpr));
    const h = Math.max(60, Math.floor(canvas.clientHeight * dpr));
    if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, w, h);
    const pad = 4 * dpr;
    const max = Math.max(1, ...data) * 1.1;
    g.strokeStyle = "#2a3541"; g.lineWidth = 1;
    for (let i = 1; i < 4; i++) { const y = Math.round((h * i) / 4) + 0.5; g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke(); }
    g.fillStyle = "#8b98a5"; g.font = (11 * dpr) + "px system-ui, sans-serif";
    g.fillText(fmtNum(max / 1.1) + "/s max", pad, 12 * dpr);
    g.fillText("-15m", pad, h - pad); const nowW = g.measureText("now").width; g.fillText("now", w - nowW - pad, h - pad);
    if (data.length < 2) return;
    const step = w / (HISTORY_LEN - 1);
    const x0 = w - (data.length - 1) * step;
    g.beginPath();
    data.forEach((v, i) => { const x = x0 + i * step; const y = h - pad - ((h - 2 * pad) * v) / max; if (i) g.lineTo(x, y); else g.moveTo(x, y); });
    g.strokeStyle = color; g.lineWidth = 1.5 * dpr; g.stroke();
    g.lineTo(w, h); g.lineTo(x0, h); g.closePath(); g.globalAlpha = 0.15; g.fillStyle = color; g.fill(); g.globalAlpha = 1;
  }
  function drawCharts() {
    draw($("chart-in"), hist.in, "#58a6ff");
    draw($("chart-out"), hist.out, "#3fb950");
  }

  async function load() {
    try {
      const r = await fetch("/api/status", { cache: "no-store" });
      if (!r.ok) return;
      const s = await r.json();
      if (s.history) {
        hist.in = s.history.ticks_in.slice(); hist.out = s.history.produced.slice(); hist.seq = s.history.last_seq;
      }
      render(s); drawCharts();
    } catch (e) { pill($("link"), "lost", "live: lost"); }
  }

  function connect() {
    if (!window.EventSource) { setInterval(load, 1000); return; }
    const es = new EventSource("/api/events");
    let lost = false;
    es.onopen = () => { pill($("link"), "live", "live"); if (lost) { lost = false; load(); } };
    es.onerror = () => { lost = true; pill($("link"), "lost", "live: reconnecting"); };
    es.onmessage = (m) => {
      let s; try { s = JSON.parse(m.data); } catch (e) { return; }
      pushPoint(s); render(s); drawCharts();
    };
  }

  async function trigger() {
    const btn = $("trigger"); const msg = $("trigger-msg");
    const headers = { "Content-Type": "application/json" };
    if (last && last.security.token_required) {
      let t = sessionStorage.getItem("layer1-token");
      if (!t) { t = window.prompt("Status token (STATUS_TOKEN) for this engine:") || ""; if (!t) return; sessionStorage.setItem("layer1-token", t); }
      headers.Authorization = "Bearer " + t;
    }
    posting = true; btn.disabled = true; msg.dataset.kind = ""; text(msg, "requesting…");
    try {
      const r = await fetch("/api/backfill", { method: "POST", headers, body: "{}", cache: "no-store", credentials: "same-origin" });
      let body = {}; try { body = await r.json(); } catch (e) { body = {}; }
      if (r.ok) { msg.dataset.kind = "ok"; text(msg, "requested"); }
      else {
        if (r.status === 401) sessionStorage.removeItem("layer1-token");
        msg.dataset.kind = "error"; text(msg, "refused: " + (body.message || ("HTTP " + r.status)));
      }
      document.body.dataset.triggerStatus = String(r.status);
    } catch (e) {
      msg.dataset.kind = "error"; text(msg, "request failed: " + e);
    } finally {
      posting = false;
      if (last) renderBackfill(last.backfill || {}, last); else btn.disabled = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("trigger").addEventListener("click", trigger);
    window.addEventListener("resize", drawCharts);
    load().then(connect);
  });
})();
