// Operations page: polls GET /v1/admin/stats with an admin token kept only in this script's memory.
// Everything from the server is set with textContent, never as HTML.
const $ = (id) => document.getElementById(id);
const POLL_MS = 2000;
const AUDIT_MS = 10000;
const POINTS = 60;
const COLOURS = { p50: "#1565c0", p90: "#ef6c00", p99: "#b00020" };

let token = null;
let timer = null;
let lastAudit = 0;
const series = [];

function text(id, value) {
  $(id).textContent = value === undefined || value === null ? "–" : String(value);
}

function rows(tbody, entries) {
  const cells = entries.map((entry) => {
    const tr = document.createElement("tr");
    for (const value of entry) {
      const td = document.createElement("td");
      td.textContent = value === undefined || value === null ? "–" : String(value);
      tr.append(td);
    }
    return tr;
  });
  $(tbody).replaceChildren(...cells);
}

async function api(path) {
  return fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: "no-store" });
}

function draw() {
  const canvas = $("latency-chart");
  const ctx = canvas.getContext("2d");
  const { width, height } = canvas;
  ctx.clearRect(0, 0, width, height);
  const top = Math.max(1, ...series.flatMap((p) => [p.p50 || 0, p.p90 || 0, p.p99 || 0]));
  ctx.fillStyle = "#666";
  ctx.font = "11px system-ui, sans-serif";
  ctx.fillText(`${top.toFixed(1)} ms`, 4, 12);
  for (const key of ["p50", "p90", "p99"]) {
    ctx.strokeStyle = COLOURS[key];
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    let started = false;
    const step = (width - 2) / (POINTS - 1);
    series.forEach((point, i) => {
      if (point[key] === undefined) return;
      const x = width - 1 - (series.length - 1 - i) * step; // the newest point at the right edge
      const y = height - 2 - (point[key] / top) * (height - 18);
      if (started) ctx.lineTo(x, y);
      else ctx.moveTo(x, y);
      started = true;
    });
    ctx.stroke();
  }
  canvas.dataset.points = String(series.length);
}

function show(stats) {
  text("readers-total", stats.readers.total);
  rows("readers-transports", Object.entries(stats.readers.transports).sort());
  rows("readers-languages", Object.entries(stats.readers.languages).sort((a, b) => b[1] - a[1]));
  text("flashes-per-minute", stats.flashes_per_minute);
  const events = Object.entries(stats.events_last_minute).map(([type, n]) => `${n} ${type}`);
  text("events-last-minute", events.length ? events.join(", ") : "none");
  for (const key of ["p50", "p90", "p99"]) text(`latency-${key}`, stats.latency[key]);
  series.push(stats.latency);
  if (series.length > POINTS) series.shift();
  draw();
  rows(
    "hubs",
    stats.hubs.map((h) => [
      h.id,
      h.readers.total,
      h.readers.transports.websocket || 0,
      h.readers.transports.sse || 0,
      h.latency.p50,
      h.latency.p99,
      h.age_seconds,
    ]),
  );
  const screen = stats.time_to_screen;
  if (screen) {
    const line = (name, f) => [name, f.readers, f.receipts, f.p50, f.p90, f.p99];
    const lines = Object.entries(screen.surfaces).map(([surface, f]) => line(surface, f));
    rows("time-to-screen", lines.length ? [...lines, line("all", screen.all)] : [["no receipts in the last hour", "–", "–", "–", "–", "–"]]);
  }
  const redis = stats.redis;
  text("redis-status", redis.status);
  const detail = [redis.role, redis.version && `v${redis.version}`, redis.ping_ms !== undefined && `ping ${redis.ping_ms} ms`,
    redis.used_memory && `${redis.used_memory} used`, redis.connected_clients !== undefined && `${redis.connected_clients} clients`]
    .filter(Boolean);
  text("redis-detail", detail.length ? `(${detail.join(", ")})` : "");
  text("queue-depth", stats.mode === "embedded" ? "none (embedded: fan-out runs in the hub)" : `${redis.queue_depth} waiting`);
  const jobs = (w) => Object.entries(w.jobs).map(([outcome, n]) => `${n} ${outcome}`).join(", ") || "none yet";
  const workers = stats.workers.map((w) => [w.id, jobs(w), w.age_seconds]);
  if (stats.mode === "embedded") workers.push(["in the hub process (embedded)", "–", "–"]);
  else if (!workers.length) workers.push(["no worker is reporting: flashes are recorded but not sent to readers", "–", "–"]);
  rows("workers", workers);
}

function auditLine(entry) {
  // GET /v1/audit entries: {time, action, status, who, ip, flash, detail}; anything else is shown as JSON text.
  if (typeof entry !== "object" || entry === null) return String(entry);
  const parts = [
    entry.time,
    entry.who ?? (entry.action ? "(no valid token)" : undefined),
    entry.action,
    entry.status,
    entry.flash && `flash ${entry.flash}`,
    entry.ip && `from ${entry.ip}`,
    entry.detail,
  ].filter((v) => v !== undefined && v !== null && v !== "");
  return parts.length ? parts.join("  ") : JSON.stringify(entry);
}

async function refreshAudit() {
  const list = $("audit");
  let response;
  try {
    response = await api("/v1/audit?limit=20");
  } catch {
    list.replaceChildren(Object.assign(document.createElement("li"), { textContent: "audit log unreachable" }));
    return;
  }
  if (!response.ok) {
    const message = response.status === 404 ? "audit log unavailable" : `audit log: HTTP ${response.status}`;
    list.replaceChildren(Object.assign(document.createElement("li"), { textContent: message }));
    return;
  }
  const body = await response.json();
  const entries = Array.isArray(body) ? body : body.entries || body.items || [];
  const items = entries.slice(0, 20).map((entry) => Object.assign(document.createElement("li"), { textContent: auditLine(entry) }));
  if (!items.length) items.push(Object.assign(document.createElement("li"), { textContent: "no entries yet" }));
  list.replaceChildren(...items);
}

async function poll() {
  let response;
  try {
    response = await api("/v1/admin/stats");
  } catch {
    text("state", "unreachable, retrying");
    return;
  }
  if (response.status === 401 || response.status === 403) {
    signOut(response.status === 403 ? "This token is not an admin token (403)." : "Unknown or revoked token (401).");
    return;
  }
  if (!response.ok) {
    text("state", `HTTP ${response.status}, retrying`);
    return;
  }
  show(await response.json());
  text("state", `live · ${new Date().toLocaleTimeString()}`);
  if (Date.now() - lastAudit > AUDIT_MS) {
    lastAudit = Date.now();
    refreshAudit();
  }
}

function signOut(reason) {
  token = null;
  clearInterval(timer);
  $("dashboard").hidden = true;
  $("signin").hidden = false;
  text("signin-error", reason);
  text("state", "signed out");
}

$("signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  $("token").value = "";
  text("signin-error", "");
  lastAudit = 0;
  await poll();
  if (token === null) return;
  $("signin").hidden = true;
  $("dashboard").hidden = false;
  timer = setInterval(poll, POLL_MS);
});
