// The seat console (坐席工作台): plain JavaScript, no build step, no outside asset.
// State comes from /console/api/state at load and after every reconnect of the live stream
// (/events, Server-Sent Events); every command is a POST with the session's CSRF token.
"use strict";
(function () {
  const body = document.body;
  const CSRF = body.dataset.csrf;
  const $ = (id) => document.getElementById(id);
  const STATUS = {
    logged_out: "未签入", ready: "示闲", not_ready: "示忙", reserved: "预占",
    ringing: "振铃", talking: "通话中", wrap_up: "话后整理",
  };
  const REASON = {
    meal: "用餐", meeting: "会议", training: "培训", rest: "小休", other: "其他",
    login: "刚签入", rona: "未接听", device_unavailable: "话机不可用", callback: "回拨中",
    restart: "系统重启",
  };
  const POP_KIND = { offer: "来电振铃", answer: "通话中", update: "来电", end: "通话结束" };
  let popCallId = null;
  let popArrived = null;

  function text(id, value) { $(id).textContent = value == null || value === "" ? "—" : String(value); }
  function clock(epoch) {
    if (!epoch) return "";
    const d = new Date(epoch * 1000);
    return d.toLocaleString("zh-CN", { hour12: false });
  }

  async function post(url, payload) {
    const resp = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
      body: JSON.stringify(payload || {}),
    });
    if (resp.status === 401) { location.href = "/login"; return null; }
    let data = null;
    try { data = await resp.json(); } catch (e) { data = null; }
    return { status: resp.status, data: data };
  }

  function showReply(r) {
    if (!r) return;
    const d = r.data || {};
    if (d.ok) { text("reply", "已执行"); return; }
    const err = d.error || {};
    text("reply", "未执行：" + (err.message || err.code || r.status));
  }

  async function command(payload) { showReply(await post("/console/api/command", payload)); }

  function showState(st) {
    if (!st) { text("state", "未知"); return; }
    const el = $("state");
    el.textContent = STATUS[st.status] || st.status;
    el.className = "state " + st.status.replace("wrap_up", "wrapup");
    el.dataset.status = st.status;
    const reason = st.reason ? "（" + (REASON[st.reason] || st.reason) + "）" : "";
    text("state-since", reason + (st.since ? " 自 " + clock(st.since) : ""));
    const p = st.pending;
    $("pending").textContent = p ? "通话结束后：" + (p.kind === "logout" ? "签出" : "示忙") : "";
    const s = st.status;
    $("btn-login").disabled = s !== "logged_out";
    $("btn-ready").disabled = !(s === "not_ready" || s === "wrap_up");
    $("btn-not-ready").disabled = s === "logged_out" || s === "not_ready";
    $("btn-wrapup-done").disabled = s !== "wrap_up";
    $("btn-wrapup-extend").disabled = s !== "wrap_up";
    $("btn-logout").disabled = s === "logged_out";
  }

  function showPop(pop) {
    if (!pop) return;
    const call = pop.call || {};
    if (pop.type === "update" && popCallId !== call.call_id && popCallId !== null) return;
    if (popCallId !== call.call_id) {
      // when this call's card first showed (the browser tests compare it with the ring)
      $("pop-card").dataset.shownAt = String(Date.now());
    }
    $("pop-card").hidden = false;
    $("pop-card").dataset.callId = call.call_id || "";
    $("pop-card").dataset.type = pop.type;
    popCallId = call.call_id;
    popArrived = call.arrived_at || popArrived;
    text("pop-kind", POP_KIND[pop.type] || pop.type);
    text("pop-line-name", call.line_name);
    text("pop-caller", call.caller);
    text("pop-name", call.caller_name);
    text("pop-line", call.line);
    text("pop-department", call.department);
    if (pop.waited_s != null) text("pop-waited", pop.waited_s.toFixed(1) + " 秒");
    if (pop.type === "end" && call.wait_s != null) text("pop-waited", Number(call.wait_s).toFixed(1) + " 秒");
    text("pop-ticket", pop.ticket === "pending" ? "生成中…" : pop.ticket);
    const d110 = call.dispatch110;
    $("pop-110").hidden = !d110;
    if (d110) {
      text("pop-110-id", d110.transfer_id);
      text("pop-110-category", d110.category);
      text("pop-110-summary", d110.summary);
      text("pop-110-address", d110.address);
    }
    if (pop.history) {
      const h = pop.history;
      $("pop-repeat").hidden = !h.repeat_caller;
      const ul = $("pop-history");
      ul.replaceChildren();
      for (const c of h.calls || []) {
        const li = document.createElement("li");
        li.textContent = clock(c.started_at) + " 拨打 " + c.line + " · " + c.outcome + (c.seat ? " · 坐席 " + c.seat : "");
        ul.appendChild(li);
      }
      for (const t of h.tickets || []) {
        const li = document.createElement("li");
        li.textContent = "工单 " + t.number + " · " + t.status + " · " + clock(t.created_at) + (t.content ? " · " + t.content : "");
        ul.appendChild(li);
      }
      if (!ul.children.length) {
        const li = document.createElement("li");
        li.textContent = h.complete ? "无历史记录" : "历史记录查询超时";
        ul.appendChild(li);
      }
    }
  }

  async function loadState() {
    const resp = await fetch("/console/api/state", { credentials: "same-origin" });
    if (resp.status === 401) { location.href = "/login"; return; }
    const data = await resp.json();
    showState(data.state);
    if (data.pop) showPop(data.pop);
  }

  async function loadCallbacks() {
    const resp = await fetch("/console/api/callbacks", { credentials: "same-origin" });
    if (!resp.ok) return;
    const data = await resp.json();
    const tbody = $("callbacks");
    tbody.replaceChildren();
    for (const cb of data.callbacks || []) {
      const tr = document.createElement("tr");
      for (const v of [cb.caller, cb.line, clock(cb.abandoned_at), cb.attempts]) {
        const td = document.createElement("td");
        td.textContent = v == null ? "" : String(v);
        tr.appendChild(td);
      }
      const td = document.createElement("td");
      const b = document.createElement("button");
      b.textContent = "回拨";
      b.className = "callback";
      b.addEventListener("click", async () => {
        const r = await post("/console/api/callbacks/" + encodeURIComponent(cb.call_id) + "/call", {});
        if (r) text("reply", r.status === 202 ? "回拨中：话机先振铃" : "回拨未执行：" + ((r.data && r.data.error && r.data.error.message) || r.status));
        loadCallbacks();
      });
      td.appendChild(b);
      tr.appendChild(td);
      tbody.appendChild(tr);
    }
  }

  function connect() {
    const es = new EventSource("/events");
    es.addEventListener("hello", () => {
      // the server's first event, sent once this stream receives every later event: the
      // state fetched now misses nothing (after a daemon restart or a lost stream the
      // state may have changed meanwhile)
      $("link").textContent = "已连接";
      $("link").className = "link up";
      loadState();
      loadCallbacks();
    });
    es.addEventListener("error", () => {
      $("link").textContent = "连接中断，正在重连…";
      $("link").className = "link down";
      if (es.readyState === EventSource.CLOSED) {
        // the browser gave up (e.g. the server answered 401 or 5xx): retry ourselves
        setTimeout(connect, 2000);
        fetch("/console/api/state", { credentials: "same-origin" }).then((r) => {
          if (r.status === 401) location.href = "/login";
        }).catch(() => {});
      }
    });
    es.addEventListener("state", (ev) => showState(JSON.parse(ev.data)));
    es.addEventListener("pop", (ev) => {
      const pop = JSON.parse(ev.data);
      showPop(pop);
      if (pop.type === "end") loadCallbacks();
    });
    es.addEventListener("reply", (ev) => showReply({ status: 200, data: JSON.parse(ev.data) }));
  }

  for (const b of document.querySelectorAll("button[data-cmd]")) {
    b.addEventListener("click", () => {
      const cmd = b.dataset.cmd;
      const payload = { cmd: cmd };
      if (cmd === "not_ready") payload.reason = $("busy-reason").value;
      if (cmd === "wrapup_extend") payload.seconds = 60;
      if (cmd === "login") payload.ready = false;
      command(payload);
    });
  }
  $("btn-transfer").addEventListener("click", () => {
    command({ cmd: "transfer", target: $("transfer-target").value });
  });
  for (const b of document.querySelectorAll("button.escalate")) {
    b.addEventListener("click", () => {
      if (!confirm("转 " + b.textContent + "？")) return;
      command({ cmd: "escalate", target: b.dataset.target, mode: b.dataset.mode });
    });
  }
  $("btn-refresh-callbacks").addEventListener("click", loadCallbacks);
  setInterval(() => {
    // the wait shown counts on while the phone rings
    const card = $("pop-card");
    if (!card.hidden && card.dataset.type === "offer" && popArrived) {
      text("pop-waited", Math.max(0, Date.now() / 1000 - popArrived).toFixed(0) + " 秒");
    }
  }, 1000);
  connect();
})();
