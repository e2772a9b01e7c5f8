// The supervisor's wallboard (班长席大屏): plain JavaScript, no build step, no outside asset.
// The page comes server-rendered; each `board` event on /board/events (the user's own
// snapshot: its lines only) re-renders the same parts. Actions are POSTs with the session's
// CSRF token; their audit rows arrive with the next snapshot.
"use strict";
(function () {
  const body = document.body;
  const CSRF = body.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  const MODE = { listen: "监听", whisper: "耳语", barge: "强插" };
  // the server's clock minus ours: times in state count from the daemon's `since`
  let skew = (parseFloat(body.dataset.at) || Date.now() / 1000) - Date.now() / 1000;
  let mySpy = null;

  function now() { return Date.now() / 1000 + skew; }
  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text != null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }
  function pct(v) { return v == null ? "—" : (v * 100).toFixed(1) + "%"; }
  function dur(s) {
    if (s == null || s === "") return "—";
    s = Math.max(0, Math.floor(s));
    const m = Math.floor(s / 60), sec = s % 60;
    return m + ":" + String(sec).padStart(2, "0");
  }
  function clock(epoch) {
    if (!epoch) return "";
    return new Date(epoch * 1000).toLocaleTimeString("zh-CN", { hour12: false });
  }
  function td(text, cls) { return el("td", text, cls); }

  async function act(seat, action) {
    const payload = action === "not_ready" ? { reason: $("force-reason").value } : {};
    const resp = await fetch("/board/api/seats/" + encodeURIComponent(seat) + "/" + action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(payload),
    });
    if (resp.status === 401) { location.href = "/login"; return; }
    let data = {};
    try { data = await resp.json(); } catch (e) { data = {}; }
    const r = $("reply");
    if (data.ok) { r.textContent = "已执行：" + seat + " " + (data.detail || action); r.className = "muted"; }
    else {
      const err = data.error || {};
      r.textContent = "未执行：" + (err.message || err.code || resp.status);
      r.className = "error";
    }
  }

  function button(label, seat, action, enabled) {
    const b = el("button", label);
    b.dataset.action = action;
    b.disabled = !enabled;
    b.addEventListener("click", () => act(seat, action));
    return b;
  }

  // the controls of one seat row, from its status and the user's own spy
  function actions(cell, s) {
    cell.replaceChildren();
    const talking = s.status === "talking";
    const spying = mySpy && mySpy.seat === s.seat;
    for (const m of ["listen", "whisper", "barge"]) {
      const b = button(MODE[m], s.seat, m, talking && (!mySpy || spying) && !(spying && mySpy.mode === m));
      cell.appendChild(b);
    }
    cell.appendChild(button("停止", s.seat, "stop", !!spying));
    const out = s.status === "logged_out";
    cell.appendChild(button("示闲", s.seat, "ready", !out && s.status !== "ready"));
    cell.appendChild(button("示忙", s.seat, "not_ready", !out && s.status !== "not_ready"));
    cell.appendChild(button("签出", s.seat, "logout", !out));
  }

  function renderLines(lines) {
    const tb = $("lines");
    tb.replaceChildren(...lines.map((ln) => {
      const tr = el("tr");
      tr.dataset.line = ln.number;
      const name = td(null);
      name.append(el("b", ln.number), " " + ln.name, el("br"), el("span", ln.department, "muted small"));
      const cell = (k, text, cls) => { const c = td(text, "num " + (cls || "")); c.dataset.k = k; return c; };
      tr.append(name,
        cell("waiting", ln.waiting),
        cell("longest", dur(ln.longest_wait_s), ln.longest_wait_cls),
        cell("today-rate", pct(ln.today.answer_rate), ln.today.answer_rate_cls),
        cell("today-ns", pct(ln.today.n_s_answer_rate), ln.today.n_s_answer_rate_cls),
        cell("rolling-rate", pct(ln.rolling_24h.answer_rate), ln.rolling_24h.answer_rate_cls),
        cell("rolling-ns", pct(ln.rolling_24h.n_s_answer_rate), ln.rolling_24h.n_s_answer_rate_cls),
        cell("counts", ln.today.offered + " / " + ln.today.answered + " / " + ln.today.abandoned));
      return tr;
    }));
  }

  function renderSeats(seats) {
    $("seats").replaceChildren(...seats.map((s) => {
      const tr = el("tr");
      tr.dataset.seat = s.seat;
      tr.dataset.status = s.status;
      const st = td(null);
      st.appendChild(el("span", s.status_label, "state " + s.status.replace("wrap_up", "wrapup")));
      const reason = td(s.reason_label || "");
      if (s.pending) reason.appendChild(el("span", "（通话后" + s.pending + "）", "muted"));
      const since = td("", "num since");
      since.dataset.since = s.since || "";
      const call = td(s.caller || "");
      if (s.line) call.appendChild(el("span", " →" + s.line, "muted"));
      if (s.spy) call.appendChild(el("span", " " + s.spy.supervisor + " " + (MODE[s.spy.mode] || s.spy.mode), "spy"));
      const cell = td(null, "actions");
      actions(cell, s);
      tr.append(td(null), st, reason, since, call, cell);
      tr.firstChild.appendChild(el("b", s.seat));
      return tr;
    }));
    ticks();
  }

  function renderAbandoned(rows) {
    $("abandoned").replaceChildren(...rows.map((c) => {
      const tr = el("tr");
      tr.append(td(c.caller), td(c.caller_name), td(c.line), td(clock(c.abandoned_at)),
        td(dur(c.waited_s)), td(c.attempts));
      return tr;
    }));
  }

  function renderAudit(rows) {
    $("audit").replaceChildren(...rows.map((a) => {
      const tr = el("tr", null, a.result);
      const res = td(a.result === "ok" ? "成功 " : "拒绝：" + (a.code || "") + " ");
      res.appendChild(el("span", a.detail || "", "muted small"));
      tr.append(td(clock(a.at)), td(a.supervisor), td(a.action_label), td(a.seat), res);
      return tr;
    }));
  }

  function render(b) {
    if (b.at) skew = b.at - Date.now() / 1000;
    mySpy = b.my_spy || null;
    $("my-spy").textContent = mySpy ? "正在" + MODE[mySpy.mode] + "坐席 " + mySpy.seat : "";
    renderLines(b.lines);
    renderSeats(b.seats);
    renderAbandoned(b.abandoned);
    renderAudit(b.audit);
  }

  function ticks() {
    for (const c of document.querySelectorAll("td.since")) {
      const since = parseFloat(c.dataset.since);
      c.textContent = since ? dur(now() - since) : "";
    }
    for (const c of document.querySelectorAll("td.at[data-at]")) {
      c.textContent = clock(parseFloat(c.dataset.at));
    }
    $("clock").textContent = clock(now());
  }

  async function refetch() {
    const resp = await fetch("/board/api/snapshot", { credentials: "same-origin" });
    if (resp.status === 401) { location.href = "/login"; return; }
    if (resp.ok) render(await resp.json());
  }

  function connect() {
    const es = new EventSource("/board/events");
    const link = $("link");
    es.addEventListener("hello", () => { link.textContent = "已连接"; link.className = "link up"; });
    es.addEventListener("board", (ev) => render(JSON.parse(ev.data)));
    es.onerror = () => {
      link.textContent = "重新连接中…"; link.className = "link down";
      // a daemon restart loses the session: find out, then the stream reconnects itself
      refetch().catch(() => {});
    };
  }

  // the first paint's rows get their buttons from the server-rendered data
  refetch().catch(() => {});
  for (const tr of document.querySelectorAll("#seats tr")) {
    actions(tr.querySelector("td.actions"), { seat: tr.dataset.seat, status: tr.dataset.status });
  }
  ticks();
  setInterval(ticks, 1000);
  connect();
})();
