// 投诉工作台: plain JS, no build step, nothing loaded from outside this server.
// The token lives in sessionStorage only (gone when the window closes); every
// request sends it as a bearer header, including the live stream, which is read
// with fetch() because EventSource cannot send headers.
"use strict";

const LEVEL = { urgent: "紧急", important: "重要", general: "一般" };
const CHANNEL = { phone: "电话", app_review: "应用评论", email: "邮件", wechat: "微信" };
const CATEGORY = { product: "产品类", service: "服务类", process: "流程类", policy: "政策类" };
const KIND = { complaint: "投诉", consultation: "咨询", suggestion: "建议", praise: "表扬" };
const STATUS = { open: "待处理", claimed: "处理中", resolved: "已结案" };
const CODES = [
  ["resolved", "已解决"], ["explained", "已解释说明"], ["compensated", "已补偿"],
  ["transferred", "已转办"], ["rejected", "不予支持"], ["duplicate", "重复投诉"],
];
const ACTIONS = {
  ingested: "入库", reclassified: "重新分类", claimed: "领取", released: "释放",
  resolved: "结案", reassigned: "改派", escalated: "升级", viewed_contact: "查看联系方式",
  satisfaction_recorded: "记录满意度", follow_up_scheduled: "安排回访",
};

const state = { token: "", me: null, selected: null, lastEventId: "", stream: null, refreshTimer: null };

// --- small helpers -------------------------------------------------------------

function $(id) { return document.getElementById(id); }

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  for (const child of children.flat(Infinity)) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function toast(text) {
  const t = $("toast");
  t.textContent = text;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 3500);
}

function fmtTime(iso) {
  if (!iso) return "-";
  return new Date(iso).toLocaleString("zh-CN", { hour12: false, timeZone: "Asia/Shanghai" });
}

function fmtDuration(secs) {
  const s = Math.abs(Math.round(secs));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
  if (d) return `${d}天${h}小时`;
  if (h) return `${h}小时${m}分`;
  return `${m}分${s % 60}秒`;
}

function countdown(dueIso) {
  const span = el("span", { class: "countdown", "data-due": dueIso || "" });
  tickOne(span);
  return span;
}

function tickOne(span) {
  const due = span.getAttribute("data-due");
  if (!due) { span.textContent = "无时限"; return; }
  const left = (new Date(due) - Date.now()) / 1000;
  span.classList.toggle("late", left < 0);
  span.classList.toggle("soon", left >= 0 && left < 4 * 3600);
  span.textContent = left < 0 ? `超时 ${fmtDuration(left)}` : `剩余 ${fmtDuration(left)}`;
}

// --- the API --------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.reason) || `HTTP ${status}`);
    this.status = status;
  }
}

async function api(method, path, body) {
  const init = { method, headers: { Authorization: `Bearer ${state.token}` } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const data = await response.json().catch(() => null);
  if (response.status === 401) { logout("令牌无效或已失效，请重新登录"); }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

function explain(error) {
  if (error.status === 409) return `操作冲突：${error.message}`;
  if (error.status === 403) return "您的角色无权执行此操作";
  if (error.status === 404) return "该投诉已不存在";
  if (error.status === 503) return "后台暂时不可用，请稍后重试";
  return `出错了：${error.message}`;
}

async function act(method, path, body, done) {
  try {
    const result = await api(method, path, body);
    if (done) toast(done);
    scheduleRefresh(0);
    return result;
  } catch (error) {
    toast(explain(error));
    scheduleRefresh(0);
    return null;
  }
}

// --- login ----------------------------------------------------------------------

async function login(token) {
  state.token = token;
  try {
    state.me = await api("GET", "/api/me");
  } catch (error) {
    state.token = "";
    $("login-error").textContent = error.status === 401 ? "令牌无效" : explain(error);
    return;
  }
  sessionStorage.setItem("desk.token", token);
  $("login").hidden = true;
  $("tabs").hidden = false;
  $("who").hidden = false;
  const roleName = { viewer: "只读", agent: "坐席", supervisor: "主管" }[state.me.role];
  $("me").textContent = `${state.me.name}（${roleName}）`;
  $("tab-stats").hidden = state.me.role !== "supervisor";
  $("next").hidden = state.me.role === "viewer";
  show("feed");
  startStream();
}

function logout(message) {
  sessionStorage.removeItem("desk.token");
  state.token = "";
  state.me = null;
  if (state.stream) state.stream.abort();
  $("login").hidden = false;
  $("tabs").hidden = true;
  $("who").hidden = true;
  $("desk-view").hidden = true;
  $("stats-view").hidden = true;
  $("login-error").textContent = message || "";
}

function show(view) {
  for (const tab of document.querySelectorAll(".tab")) {
    tab.classList.toggle("active", tab.dataset.view === view);
  }
  $("desk-view").hidden = view !== "feed";
  $("stats-view").hidden = view !== "stats";
  if (view === "feed") refresh();
  else loadStats();
}

// --- the feed -------------------------------------------------------------------

function filters() {
  const q = new URLSearchParams({ limit: "100" });
  for (const [id, key] of [["f-level", "level"], ["f-channel", "channel"], ["f-category", "category"]]) {
    if ($(id).value) q.set(key, $(id).value);
  }
  if ($("f-breached").checked) q.set("breached", "true");
  return q;
}

function scheduleRefresh(delayMs) {
  if (state.refreshTimer !== null) return;
  state.refreshTimer = setTimeout(() => { state.refreshTimer = null; refresh(); }, delayMs);
}

async function refresh() {
  if (!state.me || $("desk-view").hidden) return;
  try {
    const mineQuery = new URLSearchParams({ owner: state.me.name, limit: "100" });
    const [feed, mine] = await Promise.all([
      api("GET", `/api/feed?${filters()}`),
      api("GET", `/api/feed?${mineQuery}`),
    ]);
    renderSizes(feed.sizes);
    renderList($("feed"), feed.items);
    renderList($("mine"), mine.items);
    $("feed-empty").hidden = feed.items.length > 0;
    if (state.selected) await loadDetail(state.selected, true);
  } catch (error) {
    if (error.status !== 401) toast(explain(error));
  }
}

function renderSizes(sizes) {
  $("sizes").replaceChildren(
    ...Object.entries(LEVEL).map(([level, name]) =>
      el("span", {}, el("span", { class: `badge ${level}` }, name), ` ${sizes[level] || 0} 条`)),
  );
}

function renderList(list, items) {
  list.replaceChildren(...items.map(itemRow));
}

function itemRow(item) {
  const canAct = state.me.role !== "viewer";
  const claim = canAct && item.status === "open"
    ? el("button", {
      type: "button", class: "claim primary", "data-testid": "claim",
      onclick: (e) => { e.stopPropagation(); claimItem(item.id); },
    }, "领取")
    : null;
  return el("li", {
    class: `item ${item.urgency}${state.selected === item.id ? " selected" : ""}`,
    "data-id": item.id, "data-testid": "feed-item",
    onclick: () => loadDetail(item.id),
  },
  el("div", { class: "meta" },
    el("span", { class: `badge ${item.urgency}` }, LEVEL[item.urgency] || item.urgency),
    item.breached ? el("span", { class: "badge breached" }, "已超时") : null,
    item.escalated ? el("span", { class: "badge escalated" }, "已升级") : null,
    item.repeat_count ? el("span", { class: "badge repeat" }, `重复 ${item.repeat_count}`) : null,
    el("span", {}, CHANNEL[item.channel] || item.channel),
    el("span", {}, [CATEGORY[item.category] || item.category, item.business].filter(Boolean).join(" · ")),
    item.owner ? el("span", {}, `处理人 ${item.owner}`) : null,
    countdown(item.due_at)),
  el("div", {}, claim),
  el("div", { class: "text", title: item.text }, item.text));
}

async function claimItem(id) {
  const result = await act("POST", `/api/items/${encodeURIComponent(id)}/claim`, undefined, "已领取");
  if (result) loadDetail(id);
}

async function takeNext() {
  const result = await act("POST", "/api/next", undefined);
  if (!result) return;
  if (!result.item) { toast("队列里没有待处理的投诉"); return; }
  toast("已领取最紧急的一条");
  loadDetail(result.item.id);
}

// --- one item -------------------------------------------------------------------

async function loadDetail(id, quiet) {
  state.selected = id;
  for (const row of document.querySelectorAll(".item")) {
    row.classList.toggle("selected", row.dataset.id === id);
  }
  let data;
  try {
    data = await api("GET", `/api/items/${encodeURIComponent(id)}`);
  } catch (error) {
    if (!quiet) toast(explain(error));
    return;
  }
  if (state.selected !== id) return;
  const pane = $("detail");
  const keepContact = pane.querySelector(".contact");
  pane.replaceChildren(...detailView(data));
  if (keepContact && pane.dataset.id === id) pane.querySelector(".contact-slot").replaceWith(keepContact);
  pane.dataset.id = id;
}

function detailView(data) {
  const item = data.item;
  const mine = item.status === "claimed" && item.owner === state.me.name;
  const role = state.me.role;
  const path = `/api/items/${encodeURIComponent(item.id)}`;
  const nodes = [
    el("h2", {},
      el("span", { class: `badge ${item.urgency}` }, LEVEL[item.urgency]),
      item.breached ? el("span", { class: "badge breached" }, "已超时") : null,
      `${KIND[item.kind] || item.kind} · ${CHANNEL[item.channel] || item.channel}`,
      el("span", { class: "sub" }, STATUS[item.status] || item.status)),
    el("div", { class: "meta" },
      `受理时间 ${fmtTime(item.received_at)} · 时限 ${fmtTime(item.due_at)} · `, countdown(item.due_at),
      item.owner ? ` · 处理人 ${item.owner}` : "",
      ` · 客户 ${item.author || "-"}`),
    el("div", { class: "body", "data-testid": "detail-text" }, item.text),
    el("h3", {}, "分级理由"),
    el("ul", { class: "reasons" }, item.reasons.map((r) =>
      el("li", {}, el("span", { class: "signal" }, r.signal), r.detail))),
  ];
  if (role !== "viewer" && item.status !== "resolved") nodes.push(actionsView(item, mine, path));
  if (mine) nodes.push(resolveForm(item, path));
  nodes.push(el("div", { class: "contact-slot" }));
  if (data.outcome) {
    const o = data.outcome;
    nodes.push(el("h3", {}, "处理结果"), el("p", {},
      `${(CODES.find((c) => c[0] === o.code) || [0, o.code])[1]} · ${o.resolved_by} · ${fmtTime(o.resolved_at)}`,
      o.satisfaction ? ` · 满意度 ${o.satisfaction}/5` : "",
      o.follow_up_on ? ` · 回访日期 ${o.follow_up_on}` : "",
      o.note ? el("div", {}, o.note) : null));
  }
  if (data.turns.length) {
    nodes.push(el("h3", {}, "通话/对话记录"), el("ul", { class: "turns" }, data.turns.map((t) =>
      el("li", {}, el("span", { class: "role" }, t.role === "customer" ? "客户" : "坐席"), t.text))));
  }
  nodes.push(el("h3", {}, `该客户的其他记录（${data.history.length}）`));
  nodes.push(data.history.length
    ? el("ul", { class: "history", "data-testid": "history" }, data.history.map((h) =>
      el("li", {}, el("span", { class: `badge ${h.urgency}` }, LEVEL[h.urgency]),
        ` ${fmtTime(h.received_at)} ${CHANNEL[h.channel] || h.channel} ${STATUS[h.status] || h.status}：`,
        h.text.slice(0, 60))))
    : el("p", { class: "sub" }, "无"));
  nodes.push(el("h3", {}, "操作记录"), el("ul", { class: "audit" }, data.audit.map((a) =>
    el("li", {}, `${fmtTime(a.at)} ${a.actor} ${ACTIONS[a.action] || a.action}`))));
  return nodes;
}

function actionsView(item, mine, path) {
  const buttons = [];
  if (item.status === "open") {
    buttons.push(el("button", { type: "button", class: "primary", onclick: () => claimItem(item.id) }, "领取"));
  }
  if (mine) {
    buttons.push(el("button", { type: "button", onclick: () => act("POST", `${path}/renew`, undefined, "已续期") }, "续期"));
    buttons.push(el("button", { type: "button", onclick: () => act("POST", `${path}/release`, undefined, "已释放回队列") }, "释放"));
  }
  if (item.urgency !== "urgent") {
    buttons.push(el("button", {
      type: "button", class: "danger",
      onclick: () => {
        const reason = prompt("升级原因：");
        if (reason) act("POST", `${path}/escalate`, { reason }, "已升级为紧急");
      },
    }, "升级为紧急"));
  }
  if (state.me.role === "supervisor") {
    buttons.push(el("button", {
      type: "button",
      onclick: () => {
        const to = prompt("改派给（坐席姓名）：");
        if (to) act("POST", `${path}/reassign`, { to }, `已改派给 ${to}`);
      },
    }, "改派"));
  }
  buttons.push(el("button", { type: "button", onclick: () => showContact(path) }, "查看联系方式"));
  return el("div", { class: "actions" }, buttons);
}

async function showContact(path) {
  if (!confirm("查看联系方式会被记录在审计日志中（谁、何时）。继续？")) return;
  try {
    const c = await api("GET", `${path}/contact?reason=${encodeURIComponent("坐席处理投诉")}`);
    const box = el("div", { class: "contact" },
      `渠道：${c.channel}（${c.source}）\n联系人：${c.author}\n原始记录：${c.raw_ref || "-"}\n`,
      `渠道附加信息：${JSON.stringify(c.meta)}\n（本次查看已记入审计日志）`);
    const slot = $("detail").querySelector(".contact-slot, .contact");
    if (slot) slot.replaceWith(box);
  } catch (error) {
    toast(explain(error));
  }
}

function resolveForm(item, path) {
  const code = el("select", { id: "r-code", "data-testid": "resolve-code" },
    CODES.map(([value, name]) => el("option", { value }, name)));
  const note = el("textarea", { id: "r-note", "data-testid": "resolve-note", placeholder: "处理说明" });
  const satisfaction = el("select", { id: "r-satisfaction", "data-testid": "resolve-satisfaction" },
    el("option", { value: "" }, "未调查"),
    [5, 4, 3, 2, 1].map((n) => el("option", { value: String(n) }, `${n} 分`)));
  const followUp = el("input", { id: "r-follow-up", type: "date" });
  const submit = el("button", { type: "submit", class: "primary", "data-testid": "resolve-submit" }, "结案");
  return el("form", {
    class: "resolve",
    onsubmit: async (e) => {
      e.preventDefault();
      submit.disabled = true;
      const body = { code: code.value, note: note.value };
      if (satisfaction.value) body.satisfaction = Number(satisfaction.value);
      if (followUp.value) body.follow_up_on = followUp.value;
      const result = await act("POST", `${path}/resolve`, body, "已结案");
      submit.disabled = false;
      if (result) loadDetail(item.id);
    },
  },
  el("label", { for: "r-code" }, "处理结果"), code,
  el("label", { for: "r-note" }, "说明"), note,
  el("label", { for: "r-satisfaction" }, "客户满意度"), satisfaction,
  el("label", { for: "r-follow-up" }, "回访日期"), followUp,
  el("span", {}), el("div", {}, submit));
}

// --- the live stream ------------------------------------------------------------

async function startStream() {
  if (state.stream) state.stream.abort();
  const controller = new AbortController();
  state.stream = controller;
  while (!controller.signal.aborted && state.token) {
    try {
      const headers = { Authorization: `Bearer ${state.token}` };
      if (state.lastEventId) headers["Last-Event-ID"] = state.lastEventId;
      const response = await fetch("/api/events", { headers, signal: controller.signal });
      if (response.status === 401) { logout("令牌无效或已失效，请重新登录"); return; }
      // 400: the feed does not know our last id (e.g. it moved to another backend):
      // reconnect without it and reload the lists instead of retrying it forever
      if (response.status === 400) { state.lastEventId = ""; scheduleRefresh(0); }
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setLive(true);
      await readStream(response.body.getReader());
    } catch (error) {
      if (controller.signal.aborted) return;
    }
    setLive(false);
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}

async function readStream(reader) {
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      onFrame(frame);
    }
  }
}

function onFrame(frame) {
  let id = "", data = "";
  for (const line of frame.split("\n")) {
    if (line.startsWith("id: ")) id = line.slice(4);
    else if (line.startsWith("data: ")) data += line.slice(6);
  }
  if (!data) return;
  if (id) state.lastEventId = id;
  const event = JSON.parse(data);
  if (event.type === "breached" || event.type === "escalated") scheduleRefresh(0);
  else scheduleRefresh(1000);  // a burst of new records: one refresh a second at most
}

function setLive(on) {
  const live = $("live");
  live.classList.toggle("on", on);
  live.classList.toggle("off", !on);
  live.textContent = on ? "● 实时" : "● 重连中";
}

// --- statistics -----------------------------------------------------------------

async function loadStats() {
  let s;
  try {
    s = await api("GET", `/api/stats?days=${$("s-days").value}`);
  } catch (error) {
    toast(explain(error));
    return;
  }
  const pct = (x) => (x === null || x === undefined ? "-" : `${(x * 100).toFixed(1)}%`);
  const t = s.timeout, c = s.csat;
  const card = (title, figure, sub, mood) =>
    el("div", { class: `card ${mood || ""}` }, el("div", { class: "sub" }, title),
      el("div", { class: "figure" }, figure), el("div", { class: "sub" }, sub));
  const backlog = Object.values(s.backlog).reduce((a, b) => a + b, 0);
  $("stats").replaceChildren(
    card("记录总数", s.records, `窗口内收到的反馈`),
    card("待处理", backlog, `处理中 ${s.claimed} 条`),
    card("未结", s.unresolved.total, `其中已超时 ${s.breached.total} 条`, s.breached.total ? "bad" : ""),
    card("超时率", pct(t.rate), `目标 < ${pct(t.goal)}（到期 ${t.due} 条，超时 ${t.late} 条）`,
      t.within_goal === null ? "" : t.within_goal ? "good" : "bad"),
    card("客户满意度 CSAT", pct(c.rate), `满意 ${c.satisfied} / 回复 ${c.responses}，行业 ${pct(c.benchmark)}`,
      c.rate === null ? "" : c.rate >= c.benchmark ? "good" : "bad"),
    card("处理时长中位数", s.handling_secs.median === null ? "-" : fmtDuration(s.handling_secs.median),
      `已结案 ${s.handling_secs.resolved} 条`),
    el("div", { class: "card chart" }, el("div", { class: "sub" }, "每期投诉量（按级别）"),
      el("div", { class: "legend" }, Object.entries(LEVEL).map(([k, n]) => el("span", {}, el("i", { class: k }), n))),
      stackedBars(s.volume)),
    el("div", { class: "card chart" }, el("div", { class: "sub" }, "按渠道"), hBars(s.totals.channel, CHANNEL)),
    el("div", { class: "card chart" }, el("div", { class: "sub" }, "按类别"), hBars(s.totals.category, CATEGORY)),
  );
}

const COLORS = { urgent: "#d32f2f", important: "#f59e0b", general: "#9e9e9e" };

function stackedBars(volume) {
  const width = 900, height = 220, pad = 30;
  const max = Math.max(1, ...volume.map((b) => b.total));
  const step = (width - pad) / Math.max(1, volume.length);
  const bars = [];
  volume.forEach((b, i) => {
    let y = height - pad;
    for (const level of ["general", "important", "urgent"]) {
      const h = ((b.level[level] || 0) / max) * (height - 2 * pad);
      if (h > 0) {
        y -= h;
        bars.push(svg("rect", { x: pad + i * step + 2, y, width: Math.max(1, step - 4), height: h, fill: COLORS[level] },
          svg("title", {}, `${b.bucket} ${LEVEL[level]} ${b.level[level]}`)));
      }
    }
    if (volume.length <= 31 || i % Math.ceil(volume.length / 24) === 0) {
      bars.push(svg("text", { x: pad + i * step + step / 2, y: height - 10, "font-size": 10, "text-anchor": "middle", fill: "#6b7280" },
        b.bucket.slice(5)));
    }
  });
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "data-testid": "volume-chart" },
    svg("text", { x: 2, y: 12, "font-size": 10, fill: "#6b7280" }, String(max)),
    svg("line", { x1: pad, y1: height - pad, x2: width, y2: height - pad, stroke: "#e5e7eb" }), bars);
}

function hBars(counts, names) {
  const entries = Object.entries(counts).sort((a, b) => b[1] - a[1]);
  const width = 900, row = 22;
  const max = Math.max(1, ...entries.map((e) => e[1]));
  return svg("svg", { viewBox: `0 0 ${width} ${Math.max(row, entries.length * row)}`, role: "img" },
    entries.map(([key, n], i) => [
      svg("text", { x: 0, y: i * row + 15, "font-size": 12, fill: "#1f2933" }, names[key] || key),
      svg("rect", { x: 110, y: i * row + 4, width: ((width - 170) * n) / max, height: 14, fill: "#1d4ed8" }),
      svg("text", { x: 115 + ((width - 170) * n) / max, y: i * row + 15, "font-size": 12, fill: "#6b7280" }, String(n)),
    ]));
}

// --- wiring ---------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    login($("login-token").value.trim());
  });
  $("logout").addEventListener("click", () => logout(""));
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => show(tab.dataset.view));
  }
  for (const id of ["f-level", "f-channel", "f-category", "f-breached"]) {
    $(id).addEventListener("change", () => refresh());
  }
  $("next").addEventListener("click", takeNext);
  $("s-refresh").addEventListener("click", loadStats);
  $("s-days").addEventListener("change", loadStats);
  setInterval(() => document.querySelectorAll(".countdown").forEach(tickOne), 1000);
  const saved = sessionStorage.getItem("desk.token");
  if (saved) login(saved);
});
