// ray_runtime console: a page per view, over the façade's public API only. No build step, no third-party code.
// Server data only ever reaches the page as text (textContent), never as markup.

const KEY = "ray_runtime.key";
const state = { key: sessionStorage.getItem(KEY), me: null, stop: [] };

// ------------------------------------------------------------------------------------------------ plumbing

class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code;
  }
}

async function api(path, { method = "GET", body } = {}) {
  const headers = { accept: "application/json" };
  if (state.key) headers.authorization = `Bearer ${state.key}`;
  if (body !== undefined) headers["content-type"] = "application/json";
  const reply = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await reply.text();
  const data = text ? JSON.parse(text) : null;
  if (!reply.ok) throw new ApiError(reply.status, data);
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replace a node's children (arrays flattened; null, undefined and false left out). */
function fill(node, ...children) {
  node.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false));
}

const link = (href, text) => el("a", { href }, text);
const status = (value) => el("span", { class: `status ${value}` }, value);
const when = (seconds) => (seconds ? new Date(seconds * 1000).toLocaleString() : "");
const json = (value) => el("pre", {}, JSON.stringify(value, null, 2));
const may = (scope) => state.me && ["read", "submit", "admin"].indexOf(state.me.scope) >= ["read", "submit", "admin"].indexOf(scope);

function table(columns, rows, label) {
  return el("div", { class: "scroll" },
    el("table", { "aria-label": label },
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col" }, c)))),
      el("tbody", {}, rows.length ? rows.map((r) => el("tr", {}, r.map((c) => el("td", {}, c))))
        : el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, "nothing here")))));
}

function problem(error) {
  const box = document.getElementById("problem");
  if (!error) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = error.message || String(error);
  box.hidden = false;
}

/** Run ``refresh`` now and every ``seconds`` until the view changes. */
function every(seconds, refresh) {
  let alive = true;
  const tick = async () => {
    if (!alive) return;
    try { await refresh(); } catch (error) { problem(error); }
    if (alive) timer = setTimeout(tick, seconds * 1000);
  };
  let timer = setTimeout(tick, 0);
  state.stop.push(() => { alive = false; clearTimeout(timer); });
}

function socketUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}${path}`;
}

function keyProtocols(...protocols) {
  return state.key ? [...protocols, `rr.key.${state.key}`] : protocols;
}

// ------------------------------------------------------------------------------------------------ login

async function whoAmI() {
  try {
    state.me = await api("/api/v1/me");
  } catch (error) {
    if (error.status !== 401) throw error;
    state.me = null;
  }
  const who = document.getElementById("who");
  const logout = document.getElementById("logout");
  who.textContent = state.me ? `tenant ${state.me.tenant} · ${state.me.scope}${state.me.dev_mode ? " · dev mode" : ""}` : "";
  logout.hidden = !state.key;
  return state.me;
}

function askForKey(message) {
  const dialog = document.getElementById("login");
  const trouble = document.getElementById("login-problem");
  trouble.hidden = !message;
  trouble.textContent = message || "";
  if (!dialog.open) dialog.showModal();
  document.getElementById("key").focus();
}

async function logIn(event) {
  event.preventDefault();
  state.key = document.getElementById("key").value.trim();
  sessionStorage.setItem(KEY, state.key);
  if (await whoAmI()) {
    document.getElementById("login").close();
    document.getElementById("key").value = "";
    route();
  } else {
    sessionStorage.removeItem(KEY);
    state.key = null;
    askForKey("That key was not accepted: check it, or ask an admin for one.");
  }
}

function logOut() {
  sessionStorage.removeItem(KEY);
  state.key = null;
  state.me = null;
  document.getElementById("view").replaceChildren();
  start();
}

// ------------------------------------------------------------------------------------------------ views

async function overview(view) {
  view.append(el("h1", {}, "Overview"));
  const cards = el("div", { class: "cards" });
  const chart = el("section", {}, el("h2", {}, "Tasks finished per minute (all queues, last 15 minutes)"));
  const queues = el("section", {});
  view.append(cards, chart, queues);
  every(2, async () => {
    const [names, workers, jobs, active, paused] = await Promise.all([
      api("/api/v1/queues"), api("/api/v1/workers"), api("/api/v1/jobs?limit=1000"),
      api("/api/v1/sessions?status=active&limit=1000"), api("/api/v1/sessions?status=paused&limit=1000"),
    ]);
    const stats = await Promise.all(names.map((q) => api(`/api/v1/queues/${encodeURIComponent(q)}/stats`)));
    const sum = (status) => stats.reduce((n, s) => n + (s.counts[status] || 0), 0);
    const byStatus = {};
    for (const job of jobs.items) byStatus[job.status] = (byStatus[job.status] || 0) + 1;
    fill(cards,
      card("ready tasks", sum("queued") - stats.reduce((n, s) => n + s.delayed, 0), "overview-ready"),
      card("leased tasks", sum("leased"), "overview-leased"),
      card("delayed tasks", stats.reduce((n, s) => n + s.delayed, 0), "overview-delayed"),
      card("dead letters", sum("dead"), "overview-dead"),
      card("live workers", workers.length, "overview-workers"),
      card("jobs", Object.entries(byStatus).map(([k, v]) => `${v} ${k.toLowerCase()}`).join(", ") || "none", "overview-jobs"),
      card("sessions", `${active.items.length} active, ${paused.items.length} paused`, "overview-sessions"),
    );
    fill(chart, chart.firstChild, throughputChart(stats));
    fill(queues, el("h2", {}, "Queues"), queueTable(stats));
  });
}

function card(label, figure, id) {
  return el("div", { class: "card", id }, el("div", { class: "figure" }, figure), el("div", { class: "label" }, label));
}

function throughputChart(stats) {
  const minutes = new Map();
  for (const s of stats) {
    for (const point of s.throughput || []) {
      const seen = minutes.get(point.minute) || { succeeded: 0, failed: 0 };
      seen.succeeded += point.succeeded;
      seen.failed += point.failed;
      minutes.set(point.minute, seen);
    }
  }
  const now = Math.floor(Date.now() / 60000) * 60;
  const points = [];
  for (let m = now - 14 * 60; m <= now; m += 60) points.push({ minute: m, ...(minutes.get(m) || { succeeded: 0, failed: 0 }) });
  const top = Math.max(1, ...points.map((p) => p.succeeded + p.failed));
  const width = 600, height = 120, bar = width / points.length;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  const total = points.reduce((n, p) => n + p.succeeded + p.failed, 0);
  svg.setAttribute("aria-label", `${total} tasks finished in the last 15 minutes`);
  points.forEach((p, i) => {
    for (const [value, offset, colour] of [[p.succeeded, 0, "#1a7f37"], [p.failed, p.succeeded, "#b42318"]]) {
      if (!value) continue;
      const rect = document.createElementNS("http://www.w3.org/2000/svg", "rect");
      const h = (value / top) * (height - 10);
      rect.setAttribute("x", i * bar + 2);
      rect.setAttribute("width", bar - 4);
      rect.setAttribute("y", height - (offset / top) * (height - 10) - h);
      rect.setAttribute("height", h);
      rect.setAttribute("fill", colour);
      svg.append(rect);
    }
  });
  return svg;
}

function queueTable(stats) {
  return table(["queue", "ready", "leased", "delayed", "dead", "succeeded", "workers"], stats.map((s) => [
    link(`#/tasks?queue=${encodeURIComponent(s.queue)}`, s.queue),
    (s.counts.queued || 0) - s.delayed, s.counts.leased || 0, s.delayed, s.counts.dead || 0, s.counts.succeeded || 0,
    s.workers,
  ]), "queues");
}

async function queuesView(view) {
  view.append(el("h1", {}, "Queues"));
  const holder = el("div", {});
  view.append(holder);
  every(2, async () => {
    const names = await api("/api/v1/queues");
    const stats = await Promise.all(names.map((q) => api(`/api/v1/queues/${encodeURIComponent(q)}/stats`)));
    fill(holder, queueTable(stats));
  });
}

async function tasksView(view, params) {
  view.append(el("h1", {}, "Tasks"));
  const queue = el("input", { name: "queue", value: params.get("queue") || "", "aria-label": "queue" });
  const chosen = el("select", { name: "status", "aria-label": "status" },
    ["", "queued", "leased", "succeeded", "failed", "dead", "cancelled"].map((s) =>
      el("option", { value: s, selected: s === (params.get("status") || "") }, s || "any status")));
  const apply = () => { location.hash = `#/tasks?${new URLSearchParams({ queue: queue.value, status: chosen.value })}`; };
  view.append(el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); apply(); } },
    el("label", {}, "queue", queue), el("label", {}, "status", chosen), el("button", { type: "submit" }, "Filter")));
  const query = new URLSearchParams({ limit: "200" });
  for (const name of ["queue", "status", "resources_id"]) if (params.get(name)) query.set(name, params.get(name));
  if (params.get("resources_id")) view.append(el("p", {}, "Tasks pinned to resources ", el("code", {}, params.get("resources_id"))));
  const holder = el("div", {});
  view.append(holder);
  every(2, async () => {
    const page = await api(`/api/v1/tasks?${query}`);
    fill(holder, table(["task", "queue", "status", "attempts", "updated"], page.items.map((t) => [
      link(`#/task/${t.id}`, t.id), t.queue, status(t.status), `${t.attempts}/${t.max_attempts}`, when(t.updated_at),
    ]), "tasks"));
  });
}

async function taskView(view, params, id) {
  const holder = el("div", {});
  view.append(holder);
  const render = async () => {
    const t = await api(`/api/v1/tasks/${encodeURIComponent(id)}`);
    const actions = el("div", { class: "actions" });
    if (may("submit") && ["dead", "failed", "cancelled"].includes(t.status)) {
      actions.append(el("button", { type: "button", onclick: () => act(`/api/v1/tasks/${id}/retry`, render) }, "Retry"));
    }
    if (may("submit") && ["queued", "leased"].includes(t.status)) {
      actions.append(el("button", { type: "button", class: "secondary", onclick: () => act(`/api/v1/tasks/${id}/cancel`, render) }, "Cancel"));
    }
    const attempts = (t.history || []).map((a) => [a.attempt, a.worker_id || "", when(a.started_at), when(a.ended_at), a.outcome, a.error ? a.error.message || "" : ""]);
    if (t.attempt_id) attempts.push([t.attempts, t.worker_id || "", "", when(t.finished_at), t.status, t.error && t.status !== "succeeded" ? t.error.message : ""]);
    fill(holder,
      el("h1", {}, "Task ", el("code", {}, t.id), " ", status(t.status)),
      actions,
      table(["queue", "attempts", "resources", "created", "finished"], [[
        link(`#/tasks?queue=${encodeURIComponent(t.queue)}`, t.queue), `${t.attempts}/${t.max_attempts}`,
        t.resources_id || "latest", when(t.created_at), when(t.finished_at),
      ]], "task"),
      el("h2", {}, "Attempts"),
      table(["attempt", "worker", "started", "ended", "outcome", "error"], attempts, "attempts"),
      el("h2", {}, "Input"), json(t.input),
      t.result !== null ? [el("h2", {}, "Result"), json(t.result)] : [],
      t.error ? [el("h2", {}, "Last error"), json(t.error)] : [],
    );
  };
  every(3, render);
}

async function act(path, then, body) {
  try {
    problem(null);
    const answer = await api(path, { method: "POST", body });
    if (then) await then(answer);
    return answer;
  } catch (error) {
    problem(error);
  }
}

async function jobsView(view, params) {
  view.append(el("h1", {}, "Jobs"));
  const chosen = el("select", { name: "status", "aria-label": "status" },
    ["", "PENDING", "RUNNING", "SUCCEEDED", "FAILED", "STOPPED"].map((s) =>
      el("option", { value: s, selected: s === (params.get("status") || "") }, s || "any status")));
  const plugin = el("input", { name: "plugin", value: params.get("plugin") || "", "aria-label": "plugin" });
  view.append(el("form", { class: "filters", onsubmit: (e) => { e.preventDefault(); location.hash = `#/jobs?${new URLSearchParams({ status: chosen.value, plugin: plugin.value })}`; } },
    el("label", {}, "status", chosen), el("label", {}, "plugin", plugin), el("button", { type: "submit" }, "Filter")));
  const query = new URLSearchParams({ limit: "100" });
  for (const name of ["status", "plugin"]) if (params.get(name)) query.set(name, params.get(name));
  const holder = el("div", {});
  view.append(holder);
  every(3, async () => {
    const page = await api(`/api/v1/jobs?${query}`);
    fill(holder, table(["job", "what", "status", "started"], page.items.map((j) => [
      link(`#/job/${j.submission_id}`, j.submission_id), j.plugin ? `${j.plugin}/${j.action}` : j.entrypoint,
      status(j.status), when(j.start_time ? j.start_time / 1000 : null),
    ]), "jobs"));
  });
}

async function jobView(view, params, id) {
  const head = el("div", {});
  const log = el("pre", { class: "log", id: "job-log", "aria-label": "job log" });
  view.append(head, el("h2", {}, "Log"), log);
  const render = async () => {
    const job = await api(`/api/v1/jobs/${encodeURIComponent(id)}`);
    const run = job.run;
    const progress = run && run.progress ? run.progress : null;
    fill(head,
      el("h1", {}, "Job ", el("code", {}, job.submission_id), " ", status(job.status)),
      el("p", {}, job.plugin ? `${job.plugin}/${job.action}` : job.entrypoint),
      may("submit") && !["SUCCEEDED", "FAILED", "STOPPED"].includes(job.status)
        ? el("div", { class: "actions" }, el("button", { type: "button", class: "secondary", onclick: () => act(`/api/v1/jobs/${id}/stop`, render) }, "Stop")) : null,
      progress ? el("label", {}, `progress ${progress.done}/${progress.total ?? "?"} ${progress.message || ""}`,
        el("progress", { max: progress.total || 1, value: progress.done })) : null,
      run && run.result !== null && run.result !== undefined ? [el("h2", {}, "Result"), json(run.result)] : [],
      run && run.error ? [el("h2", {}, "Error"), json(run.error)] : [],
    );
  };
  every(2, render);
  followLog(id, log);
}

/** The job's log over the façade's WebSocket tail, resumed at the last offset whenever the connection drops. */
function followLog(id, pre) {
  let offset = 0, done = false, socket = null, retry = null;
  const connect = () => {
    socket = new WebSocket(socketUrl(`/api/v1/jobs/${encodeURIComponent(id)}/logs/ws?offset=${offset}`), keyProtocols("rr.logs.v1"));
    socket.onmessage = (event) => {
      const frame = JSON.parse(event.data);
      if (frame.type === "lines") { pre.append(document.createTextNode(frame.data)); offset = frame.offset; pre.scrollTop = pre.scrollHeight; }
      if (frame.type === "end" || frame.type === "limit") { done = true; pre.dataset.ended = frame.status || frame.type; }
      if (frame.type === "error") { done = true; problem(new Error(frame.error ? frame.error.message : "log unavailable")); }
    };
    socket.onclose = () => { if (!done) retry = setTimeout(connect, 1000); };
  };
  connect();
  state.stop.push(() => { done = true; clearTimeout(retry); if (socket) socket.close(); });
}

async function resourcesView(view, params) {
  view.append(el("h1", {}, "Resources"));
  const history = await api("/api/v1/resources?limit=50");
  if (!history.length) { view.append(el("p", { class: "muted" }, "No resources published yet.")); return; }
  const pick = (name, index) => el("select", { name, "aria-label": name }, history.map((r, i) =>
    el("option", { value: r.resources_id, selected: i === index }, `v${r.version} (${r.resources_id})`)));
  const older = pick("older", Math.min(1, history.length - 1));
  const newer = pick("newer", 0);
  const diff = el("div", { class: "diff" });
  const show = () => fill(diff, resourcesDiff(history.find((r) => r.resources_id === older.value), history.find((r) => r.resources_id === newer.value)));
  older.onchange = show;
  newer.onchange = show;
  view.append(
    table(["version", "id", "created", "resources", "tasks pinned"], history.map((r) => [
      `v${r.version}`, el("code", {}, r.resources_id), when(r.created_at), Object.keys(r.resources).join(", "),
      link(`#/tasks?resources_id=${r.resources_id}`, "tasks"),
    ]), "resources versions"),
    el("h2", {}, "What changed"), el("div", { class: "filters" }, el("label", {}, "from", older), el("label", {}, "to", newer)), diff,
  );
  show();
}

function resourcesDiff(older, newer) {
  const names = [...new Set([...Object.keys(older.resources), ...Object.keys(newer.resources)])].sort();
  const rows = [];
  for (const name of names) {
    const before = older.resources[name], after = newer.resources[name];
    const kind = before === undefined ? "added" : after === undefined ? "removed" : JSON.stringify(before) === JSON.stringify(after) ? "same" : "changed";
    if (kind === "same") continue;
    const row = el("tr", { class: kind }, el("td", {}, name), el("td", {}, kind),
      el("td", {}, before === undefined ? "" : json(before)), el("td", {}, after === undefined ? "" : json(after)));
    rows.push(row);
  }
  if (!rows.length) return el("p", { class: "muted" }, "No differences.");
  return el("div", { class: "scroll" }, el("table", { "aria-label": "resources diff" },
    el("thead", {}, el("tr", {}, ["resource", "change", `v${older.version}`, `v${newer.version}`].map((c) => el("th", { scope: "col" }, c)))),
    el("tbody", {}, rows)));
}

async function sessionsView(view, params) {
  view.append(el("h1", {}, "Sessions"));
  const chosen = el("select", { name: "status", "aria-label": "status" },
    ["", "active", "paused", "inactive", "closed", "error"].map((s) =>
      el("option", { value: s, selected: s === (params.get("status") || "") }, s || "any status")));
  chosen.onchange = () => { location.hash = `#/sessions?status=${chosen.value}`; };
  view.append(el("div", { class: "filters" }, el("label", {}, "status", chosen)));
  const holder = el("div", {});
  view.append(holder);
  const query = new URLSearchParams({ limit: "200" });
  if (params.get("status")) query.set("status", params.get("status"));
  every(3, async () => {
    const page = await api(`/api/v1/sessions?${query}`);
    fill(holder, table(["session", "template", "status", "turns", "tokens", "last active"], page.items.map((s) => [
      link(`#/session/${s.id}`, s.id), s.template, status(s.status), s.invocations, s.tokens, when(s.last_activity_at),
    ]), "sessions"));
  });
}

async function sessionView(view, params, id) {
  const head = el("div", {});
  const turns = el("div", { class: "turns", id: "chat-turns", "aria-live": "polite" });
  const input = el("input", { id: "chat-input", "aria-label": "message", autocomplete: "off", placeholder: "Say something" });
  const send = el("button", { type: "submit", id: "chat-send" }, "Send");
  const chat = el("section", { class: "chat" }, el("h2", {}, "Chat"), turns,
    el("form", { onsubmit: (e) => { e.preventDefault(); say(); } }, input, send));
  const transcript = el("div", {});
  view.append(head, chat, el("h2", {}, "Transcript"), transcript);
  let socket = null, current = null, open = false;

  const setOpen = (value) => { open = value; input.disabled = send.disabled = !value || !may("submit"); };
  const connect = () => {
    socket = new WebSocket(socketUrl(`/api/v1/sessions/${encodeURIComponent(id)}/ws`), keyProtocols("rr.agent.v1"));
    socket.onopen = () => setOpen(true);
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "event") {
        const e = message.event;
        if (!current) current = turns.appendChild(el("div", { class: "agent" }));
        if (e.kind === "text_chunk") current.append(document.createTextNode(e.text));
        else if (e.kind === "tool_call") turns.append(el("div", { class: "tool" }, `⚙ ${e.name}(${JSON.stringify(e.arguments)})`));
        else if (e.kind === "tool_result") turns.append(el("div", { class: "tool" }, `↳ ${JSON.stringify(e.result)}`));
      } else if (message.type === "end") {
        turns.append(el("div", { class: "tool" }, `${message.status}: ${message.tokens_used} tokens, ${message.duration_s.toFixed(2)} s`));
        current = null;
        renderHead();
      } else if (message.type === "error") {
        turns.append(el("div", { class: "tool", role: "alert" }, `error: ${message.message}`));
        current = null;
      } else if (message.type === "bye") {
        turns.append(el("div", { class: "tool" }, `the session says goodbye (${message.reason})`));
        setOpen(false);
      }
      turns.scrollTop = turns.scrollHeight;
    };
    socket.onclose = () => setOpen(false);
  };
  const say = () => {
    const text = input.value.trim();
    if (!text || !open) return;
    turns.append(el("div", { class: "you" }, `you: ${text}`));
    current = null;
    socket.send(JSON.stringify({ type: "user_message", text }));
    input.value = "";
  };
  const lifecycle = async (action) => {
    problem(null);
    try {
      if (action === "close") await api(`/api/v1/sessions/${id}`, { method: "DELETE" });
      else {
        const answer = await api(`/api/v1/sessions/${id}/${action}`, { method: "POST", body: {} });
        if (action === "fork") { location.hash = `#/session/${answer.id}`; return; }
      }
    } catch (error) { problem(error); }
    await renderHead();
  };
  const renderHead = async () => {
    // the transcript first: reading it reports the host's unreported turns, so the counters below include them
    const log = await api(`/api/v1/sessions/${encodeURIComponent(id)}/transcript`);
    const s = await api(`/api/v1/sessions/${encodeURIComponent(id)}`);
    const buttons = may("submit") ? el("div", { class: "actions" },
      s.status === "active" ? el("button", { type: "button", onclick: () => lifecycle("pause") }, "Pause") : null,
      ["paused", "inactive"].includes(s.status) ? el("button", { type: "button", onclick: () => lifecycle("resume") }, "Resume") : null,
      ["active", "paused", "inactive"].includes(s.status) ? el("button", { type: "button", class: "secondary", onclick: () => lifecycle("fork") }, "Fork") : null,
      s.status !== "closed" ? el("button", { type: "button", class: "secondary", onclick: () => lifecycle("close") }, "Close") : null,
    ) : null;
    fill(head,
      el("h1", {}, "Session ", el("code", {}, s.id), " ", el("span", { id: "session-status" }, status(s.status))),
      el("p", {}, `${s.template} · ${plural(s.invocations, "turn")} · ${plural(s.tokens, "token")}`, s.parent_id ? [" · forked from ", link(`#/session/${s.parent_id}`, s.parent_id)] : []),
      buttons,
    );
    if (s.status === "active" && (!socket || socket.readyState > 1)) connect();
    fill(transcript, table(["turn", "asked", "answered", "status", "tokens"], log.map((t) => [
      t.turn_id, t.request.text || JSON.stringify(t.request.data), t.text, status(t.status), t.tokens_used,
    ]), "transcript"));
  };
  setOpen(false);
  await renderHead();
  state.stop.push(() => { if (socket) socket.close(); });
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

function schemaTable(schema, label) {
  const properties = (schema && schema.properties) || {};
  const required = new Set((schema && schema.required) || []);
  return table(["parameter", "type", "required", "default", "description"], Object.entries(properties).map(([name, p]) => [
    el("code", {}, name), p.type || (p.anyOf || []).map((t) => t.type).filter(Boolean).join(" | ") || "",
    required.has(name) ? "yes" : "", p.default === undefined ? "" : JSON.stringify(p.default), p.description || "",
  ]), label);
}

async function pluginsView(view) {
  view.append(el("h1", {}, "Plugins"));
  const plugins = await api("/api/v1/plugins");
  view.append(table(["plugin", "version", "actions", "description"], plugins.map((p) => [
    link(`#/plugin/${p.name}`, p.name), p.version, Object.keys(p.actions).join(", "), p.description || "",
  ]), "plugins"));
}

async function pluginView(view, params, name) {
  const described = await api(`/api/v1/plugins/${encodeURIComponent(name)}`);
  view.append(el("h1", {}, "Plugin ", el("code", {}, described.name), ` ${described.version}`));
  for (const action of described.actions) {
    const params = el("textarea", { rows: 4, cols: 60, "aria-label": `parameters of ${action.name}` }, "{}");
    const section = el("section", {}, el("h2", {}, action.name), el("p", {}, `modes: ${action.modes.join(", ")}`),
      action.description ? el("p", {}, action.description) : null,
      schemaTable(action.params_schema || action.config_schema, `parameters of ${action.name}`),
      el("details", {}, el("summary", {}, "JSON Schema"), json(action.params_schema || action.config_schema || {})));
    if (may("submit") && action.modes.includes("job")) {
      section.append(el("form", { onsubmit: async (e) => {
        e.preventDefault();
        let parsed;
        try { parsed = JSON.parse(params.value || "{}"); } catch (error) { problem(new Error(`parameters are not JSON: ${error.message}`)); return; }
        const job = await act("/api/v1/jobs", null, { plugin: name, action: action.name, params: parsed });
        if (job) location.hash = `#/job/${job.submission_id}`;
      } }, el("label", {}, "parameters (JSON)", params), el("div", { class: "actions" }, el("button", { type: "submit" }, "Submit as a job"))));
    }
    if (may("submit") && action.modes.includes("session")) {
      section.append(el("div", { class: "actions" }, el("button", { type: "button", onclick: async () => {
        let config;
        try { config = JSON.parse(params.value || "{}"); } catch (error) { problem(new Error(`config is not JSON: ${error.message}`)); return; }
        const session = await act("/api/v1/sessions", null, { template: `${name}.${action.name}`, config });
        if (session) location.hash = `#/session/${session.id}`;
      } }, "Start a session")));
    }
    view.append(section);
  }
}

// ------------------------------------------------------------------------------------------------ router

const VIEWS = {
  overview, queues: queuesView, tasks: tasksView, task: taskView, jobs: jobsView, job: jobView,
  resources: resourcesView, sessions: sessionsView, session: sessionView, plugins: pluginsView, plugin: pluginView,
};

async function route() {
  for (const stop of state.stop.splice(0)) stop();
  problem(null);
  const [path, query] = (location.hash.slice(1) || "/overview").split("?");
  const [, name, id] = path.split("/");
  const view = document.getElementById("view");
  view.replaceChildren();
  for (const a of document.querySelectorAll("header nav a")) {
    a.toggleAttribute("aria-current", a.getAttribute("href") === `#/${name}` || a.getAttribute("href") === `#/${name}s`);
    if (a.hasAttribute("aria-current")) a.setAttribute("aria-current", "page");
  }
  try {
    await (VIEWS[name] || overview)(view, new URLSearchParams(query || ""), id && decodeURIComponent(id));
  } catch (error) {
    if (error.status === 401) { askForKey("Your key is no longer accepted; log in again."); return; }
    problem(error);
  }
  view.focus({ preventScroll: true });
}

async function start() {
  try {
    if (await whoAmI()) route();
    else askForKey();
  } catch (error) {
    problem(error);
  }
}

document.getElementById("login-form").addEventListener("submit", logIn);
document.getElementById("logout").addEventListener("click", logOut);
window.addEventListener("hashchange", () => { if (state.me) route(); });
start();
