// portway dashboard: plain JavaScript, no build step, no dependency.
// Live numbers come from the server-sent event stream /dashboard/events (one
// snapshot per tick); what is configured comes from the admin API's /routes
// and /endpoints, fetched again when the config or the routing table changes.
"use strict";

const HISTORY = 120; // points kept per chart (one per tick)
const ENDPOINTS_PAGE = 50;
const ENDPOINTS_REFRESH_MS = 5000;
const ROLLOUTS_REFRESH_MS = 2000;
const MAX_EVENTS = 200;
const MAX_ROUTES = 200;
const PALETTE = ["#2563eb", "#16a34a", "#d97706", "#9333ea", "#0891b2", "#db2777", "#65a30d", "#dc2626"];

const view = {
  history: [],
  events: new Map(),
  configVersion: undefined,
  tableVersion: undefined,
  rotation: undefined,
  routeStats: new Map(),
  backendsNext: null,
  cursors: [null],
  endpointsTimer: null,
  rolloutsTimer: null,
};

// ---- small DOM helpers -------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "text") node.textContent = String(value);
    else if (name === "style") node.setAttribute("style", value);
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  return node;
}

function setText(id, text) {
  const node = document.getElementById(id);
  if (node && node.textContent !== text) node.textContent = text;
}

function replace(id, ...children) {
  document.getElementById(id).replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

const clusterColours = new Map(); // in order of first sight, so clusters side by side differ

function colour(cluster) {
  if (!clusterColours.has(cluster)) clusterColours.set(cluster, PALETTE[clusterColours.size % PALETTE.length]);
  return clusterColours.get(cluster);
}

// ---- number formats ------------------------------------------------------------

function fmtRate(v) {
  if (v === null || v === undefined) return "–";
  return v >= 100 ? v.toFixed(0) : v.toFixed(1);
}
function fmtCount(v) {
  return v === null || v === undefined ? "–" : Number(v).toLocaleString("en-US");
}
function fmtMs(v) {
  if (v === null || v === undefined) return "–";
  return v >= 100 ? `${v.toFixed(0)} ms` : `${v.toFixed(v >= 10 ? 1 : 2)} ms`;
}
function fmtPercent(v) {
  return v === null || v === undefined ? "–" : `${(v * 100).toFixed(v >= 0.1 ? 1 : 2)} %`;
}
function fmtTime(unixSeconds) {
  return new Date(unixSeconds * 1000).toLocaleTimeString("en-GB", { hour12: false });
}

// ---- charts (inline SVG) -------------------------------------------------------

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function drawChart(id, series, format) {
  const node = document.getElementById(id);
  const width = 600, height = 160, top = 8, bottom = 152;
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && v > max) max = v;
  max = niceMax(max);
  const parts = [];
  for (const frac of [0, 0.5, 1]) {
    const y = bottom - (bottom - top) * frac;
    parts.push(svg("line", { x1: 0, x2: width, y1: y, y2: y, class: "grid" }));
    const label = svg("text", { x: 4, y: frac === 0 ? y - 3 : y + 12, class: "axis" });
    label.textContent = format(max * frac);
    parts.push(label);
  }
  for (const s of series) {
    const step = width / (HISTORY - 1);
    const offset = HISTORY - s.values.length;
    let points = [];
    const flush = () => {
      if (points.length > 1) parts.push(svg("polyline", { points: points.join(" "), class: s.cls }));
      points = [];
    };
    s.values.forEach((v, i) => {
      if (v === null) { flush(); return; }
      const x = (offset + i) * step;
      const y = bottom - (bottom - top) * (v / max);
      points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
    });
    flush();
  }
  node.replaceChildren(...parts);
}

function drawCharts() {
  const h = view.history;
  drawChart("chart-rps", [{ cls: "s-rps", values: h.map((p) => p.rps) }], (v) => fmtRate(v));
  drawChart(
    "chart-latency",
    [
      { cls: "s-p50", values: h.map((p) => p.p50) },
      { cls: "s-p99", values: h.map((p) => p.p99) },
    ],
    (v) => v.toFixed(v >= 10 ? 0 : 1),
  );
  drawChart("chart-errors", [{ cls: "s-err", values: h.map((p) => p.err) }], (v) => v.toFixed(1));
}

// ---- snapshot rendering --------------------------------------------------------

function renderHeader(snap) {
  const c = snap.config || {};
  setText("config-version", c.version ? c.version.slice(0, 12) : "–");
  setText("table-version", c.table_version === null || c.table_version === undefined ? "–" : String(c.table_version));
  setText("workers", String(snap.workers));
  const reloads = c.reloads || {};
  setText("reloads", `${reloads.success ?? 0} ok / ${reloads.failure ?? 0} rejected`);
  // the server stretches its tick when sampling is costly (fleet size): say so
  if (!snap.baseline) setText("interval", `${snap.interval_s.toFixed(snap.interval_s < 10 ? 1 : 0)} s`);
}

function renderTotals(snap) {
  const t = snap.totals;
  setText("kpi-requests", fmtCount(t.requests));
  setText("kpi-connections", fmtCount(t.active_connections));
  if (snap.baseline) return;
  setText("kpi-rps", fmtRate(t.rps));
  setText("kpi-error-rate", fmtPercent(t.error_rate));
  setText("kpi-p50", fmtMs(t.p50_ms));
  setText("kpi-p99", fmtMs(t.p99_ms));
  const errors = document.getElementById("kpi-error-rate");
  errors.classList.toggle("bad", t.error_rate > 0.01);
}

function renderSplit(snap) {
  const byBackend = new Map();
  for (const row of snap.backends) {
    if (!byBackend.has(row.backend)) byBackend.set(row.backend, []);
    byBackend.get(row.backend).push(row);
  }
  if (byBackend.size === 0) {
    replace("split", el("p", { class: "empty", text: "no backend has served a request yet" }));
    return;
  }
  const blocks = [];
  for (const [backend, rows] of byBackend) {
    const rps = rows.reduce((a, r) => a + r.rps, 0);
    const bar = el("div", { class: "bar", title: `${backend}: ${fmtRate(rps)} req/s` },
      rows.filter((r) => r.share > 0).map((r) =>
        el("span", { style: `width:${(r.share * 100).toFixed(2)}%;background:${colour(r.cluster)}`, title: `${r.cluster} ${fmtPercent(r.share)}` })));
    const table = el("table", {},
      el("thead", {}, el("tr", {},
        el("th", { text: "cluster" }), el("th", { class: "num", text: "req/s" }), el("th", { class: "num", text: "share" }),
        el("th", { class: "num", text: "5xx/s" }), el("th", { class: "num", text: "requests" }), el("th", { class: "num", text: "endpoints up" }))),
      el("tbody", {}, rows.map((r) => el("tr", { "data-backend": r.backend, "data-cluster": r.cluster },
        el("td", {}, el("span", { class: "swatch", style: `background:${colour(r.cluster)}` }), r.cluster || "(none)"),
        el("td", { class: "num split-rps", text: fmtRate(r.rps) }),
        el("td", { class: "num", text: fmtPercent(r.share) }),
        el("td", { class: r.errors_per_s > 0 ? "num bad" : "num", text: fmtRate(r.errors_per_s) }),
        el("td", { class: "num split-requests", text: fmtCount(r.requests) }),
        el("td", { class: r.endpoints && r.available < r.endpoints ? "num warn" : "num",
          text: r.endpoints === null ? "–" : `${r.available}/${r.endpoints}` })))));
    blocks.push(el("div", { class: "split-backend" },
      el("h3", {}, backend || "(no backend)", el("span", { class: "muted", text: ` ${fmtRate(rps)} req/s` })), bar, table));
  }
  replace("split", blocks);
}

function renderOutOfRotation(snap) {
  const out = snap.out_of_rotation;
  if (!out.count) {
    replace("out-of-rotation", el("p", { class: "empty", text: "every endpoint is in rotation" }));
    return;
  }
  const more = out.count > out.endpoints.length ? el("p", { class: "muted", text: `${out.count - out.endpoints.length} more not listed` }) : null;
  replace("out-of-rotation",
    el("table", {}, el("tbody", {}, out.endpoints.map((e) =>
      el("tr", {}, el("td", { class: "mono", text: e.key }), el("td", { class: "bad", text: e.reason }))))),
    more);
}

function addEvents(events) {
  for (const e of events) view.events.set(e.seq, e);
  const seqs = [...view.events.keys()].sort((a, b) => b - a);
  for (const seq of seqs.slice(MAX_EVENTS)) view.events.delete(seq);
  replace("events", seqs.slice(0, MAX_EVENTS).map((seq) => {
    const e = view.events.get(seq);
    return el("li", { class: `event ${e.kind}` },
      el("time", { text: fmtTime(e.at) }),
      el("span", { class: `kind ${e.kind}`, text: { reload: "reload", rejected: "rejected", table: "registry", out: "out", back: "back" }[e.kind] || e.kind }),
      e.subject ? el("code", { text: e.subject }) : null, e.subject ? " " : null, e.text);
  }));
}

function onSnapshot(snap) {
  renderHeader(snap);
  renderTotals(snap);
  if (!snap.baseline) {
    view.history.push({
      rps: snap.totals.rps,
      p50: snap.totals.p50_ms,
      p99: snap.totals.p99_ms,
      err: snap.totals.error_rate * 100,
    });
    if (view.history.length > HISTORY) view.history.shift();
    drawCharts();
    renderSplit(snap);
  }
  view.routeStats = new Map(snap.routes.map((r) => [r.route, r]));
  updateRouteStats();
  renderOutOfRotation(snap);
  if (snap.events.length) addEvents(snap.events);
  const c = snap.config || {};
  if (c.version !== view.configVersion) {
    view.configVersion = c.version;
    loadRoutes();
  }
  const rotation = `${snap.out_of_rotation.count}:${snap.out_of_rotation.endpoints.map((e) => e.key).join(",")}`;
  if (c.table_version !== view.tableVersion || rotation !== view.rotation) {
    // what /endpoints says changed: a new table, or endpoints left or joined rotation
    view.tableVersion = c.table_version;
    view.rotation = rotation;
    loadEndpoints();
  }
}

// ---- what is configured: /routes and /endpoints --------------------------------------

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function describeMatch(m) {
  const parts = [];
  if (m.method) parts.push(m.method);
  if (m.path) parts.push(`${m.path.type === "Exact" ? "=" : m.path.type === "RegularExpression" ? "~" : ""}${m.path.value}`);
  for (const h of m.headers || []) parts.push(`${h.name}: ${h.value}`);
  for (const q of m.queryParams || []) parts.push(`?${q.name}=${q.value}`);
  return parts.join(" ") || "*";
}

async function loadRoutes() {
  let body;
  try {
    body = await getJson("/routes");
  } catch (err) {
    replace("routes", el("p", { class: "bad", text: `cannot read /routes: ${err.message}` }));
    return;
  }
  const routes = body.routes || [];
  if (!routes.length) {
    replace("routes", el("p", { class: "empty", text: "no routes configured" }));
    return;
  }
  const rows = routes.slice(0, MAX_ROUTES).map((r) => {
    const rules = (r.rules || []).map((rule) => {
      const matches = (rule.matches || []).map(describeMatch).join(", ") || "*";
      const refs = (rule.backendRefs || []).map((b) => `${b.name}${b.weight !== undefined && b.weight !== null ? ` ×${b.weight}` : ""}`).join(", ");
      return el("div", {}, el("code", { text: matches }), " → ", refs || el("span", { class: "muted", text: "answered by the gateway" }));
    });
    return el("tr", { "data-route": r.name },
      el("td", {}, el("strong", { text: r.name })),
      el("td", { class: "mono", text: (r.hostnames || []).join(", ") || "*" }),
      el("td", {}, rules),
      el("td", { class: "num route-rps", text: "–" }),
      el("td", { class: "num route-p99", text: "–" }),
      el("td", { class: "num route-errors", text: "–" }));
  });
  const more = routes.length > MAX_ROUTES ? el("p", { class: "muted", text: `${routes.length - MAX_ROUTES} more routes not shown` }) : null;
  replace("routes", el("table", {},
    el("thead", {}, el("tr", {}, el("th", { text: "route" }), el("th", { text: "hosts" }), el("th", { text: "rules" }),
      el("th", { class: "num", text: "req/s" }), el("th", { class: "num", text: "p99" }), el("th", { class: "num", text: "5xx" }))),
    el("tbody", {}, rows)), more);
  updateRouteStats();
}

function updateRouteStats() {
  for (const row of document.querySelectorAll("#routes tr[data-route]")) {
    const stats = view.routeStats.get(row.getAttribute("data-route"));
    row.querySelector(".route-rps").textContent = stats ? fmtRate(stats.rps) : "–";
    row.querySelector(".route-p99").textContent = stats ? fmtMs(stats.p99_ms) : "–";
    row.querySelector(".route-errors").textContent = stats ? fmtPercent(stats.error_rate) : "–";
  }
}

const KNOWN_ENDPOINT_FIELDS = new Set(["key", "address", "port", "cluster", "region", "zone", "node", "weight",
  "healthCheckPort", "ready", "locality_level", "locality", "healthy", "ejected", "draining", "available", "in_flight"]);

function endpointState(ep) {
  if (ep.available === true) return el("span", { class: "ok", text: "up" });
  const why = [];
  if (ep.ready === false) why.push("node not ready");
  if (ep.healthy === false) why.push("unhealthy");
  if (ep.ejected) why.push("ejected");
  if (ep.draining) why.push("drained");
  return el("span", { class: "bad", text: why.join(", ") || "down" });
}

function renderBackend(name, endpoints) {
  const clusters = new Map();
  for (const ep of endpoints) {
    if (!clusters.has(ep.cluster)) clusters.set(ep.cluster, []);
    clusters.get(ep.cluster).push(ep);
  }
  const up = endpoints.filter((e) => e.available).length;
  const extra = [...new Set(endpoints.flatMap((e) => Object.keys(e).filter((k) => !KNOWN_ENDPOINT_FIELDS.has(k))))];
  const clusterRows = [...clusters].map(([cluster, eps]) => {
    const levels = [...new Set(eps.map((e) => e.locality ?? (e.locality_level === null || e.locality_level === undefined ? "–" : `level ${e.locality_level}`)))];
    const regions = [...new Set(eps.map((e) => [e.region, e.zone].filter(Boolean).join("/")))].filter(Boolean);
    const ok = eps.filter((e) => e.available).length;
    return el("tr", { "data-cluster": cluster },
      el("td", {}, el("span", { class: "swatch", style: `background:${colour(cluster)}` }), cluster),
      el("td", { class: "mono", text: regions.join(", ") || "–" }),
      el("td", { text: levels.join(", ") }),
      el("td", { class: ok < eps.length ? "num warn" : "num ok", text: `${ok}/${eps.length}` }),
      el("td", { class: "num", text: fmtCount(eps.reduce((a, e) => a + (e.in_flight || 0), 0)) }));
  });
  const endpointRows = endpoints.map((ep) => el("tr", {},
    el("td", { class: "mono", text: ep.key }),
    el("td", { text: ep.locality ?? "–" }),
    el("td", { class: "mono", text: ep.node || "" }),
    el("td", { class: "num", text: String(ep.weight ?? "") }),
    el("td", {}, endpointState(ep)),
    el("td", { class: "num", text: String(ep.in_flight ?? 0) }),
    extra.map((k) => el("td", { class: "mono", text: ep[k] === null || ep[k] === undefined ? "" : typeof ep[k] === "object" ? JSON.stringify(ep[k]) : String(ep[k]) }))));
  return el("details", { class: "backend", "data-backend": name, open: endpoints.length <= 8 },
    el("summary", {}, el("strong", { text: name }), el("span", { class: up < endpoints.length ? "warn" : "muted", text: `  ${up}/${endpoints.length} endpoints up, ${clusters.size} cluster(s)` })),
    el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "cluster" }), el("th", { text: "region/zone" }), el("th", { text: "locality" }),
      el("th", { class: "num", text: "up" }), el("th", { class: "num", text: "in flight" }))), el("tbody", {}, clusterRows)),
    el("details", { class: "endpoints" }, el("summary", { text: "endpoints" }),
      el("table", {}, el("thead", {}, el("tr", {}, el("th", { text: "key" }), el("th", { text: "locality" }), el("th", { text: "node" }),
        el("th", { class: "num", text: "weight" }), el("th", { text: "state" }), el("th", { class: "num", text: "in flight" }),
        extra.map((k) => el("th", { text: k })))), el("tbody", {}, endpointRows))));
}

async function loadEndpoints(extraPage) {
  // every page loaded so far is read again, so "more backends" survives a refresh
  const cursors = extraPage ? [...view.cursors, extraPage] : view.cursors;
  const blocks = [];
  let next = null;
  try {
    for (const after of cursors) {
      const body = await getJson(`/endpoints?limit=${ENDPOINTS_PAGE}${after ? `&after=${encodeURIComponent(after)}` : ""}`);
      for (const [name, eps] of Object.entries(body.backends || {})) blocks.push(renderBackend(name, eps));
      next = body.next;
      if (!next) break;
    }
  } catch (err) {
    replace("backends", el("p", { class: "bad", text: `cannot read /endpoints: ${err.message}` }));
    return;
  }
  view.cursors = cursors;
  const target = document.getElementById("backends");
  const open = new Map([...target.querySelectorAll("details[data-backend]")].map((d) => [d.getAttribute("data-backend"), d.open]));
  for (const block of blocks) {
    const name = block.getAttribute("data-backend");
    if (open.has(name)) block.open = open.get(name);
  }
  target.replaceChildren(...(blocks.length ? blocks : [el("p", { class: "empty", text: "no backends" })]));
  view.backendsNext = next;
  document.getElementById("backends-more").hidden = !next;
}

// ---- rollouts (only when the admin API serves /rollouts) -----------------------------

// GET /rollouts (gateway.rollout.api): {"driving", "driver", "registry": {...}, "rollouts": [view]},
// each view with name, route, canary, stable, phase, step, steps [{percent, pause_s}], weight,
// weights, applied_weight, since, reason, limits, window. Fields missing are left out.

function fmtSeconds(s) {
  if (typeof s !== "number") return "–";
  return s >= 60 ? `${(s / 60).toFixed(s % 60 ? 1 : 0)} min` : `${s.toFixed(s >= 10 ? 0 : 1)} s`;
}

function renderRollout(r) {
  const steps = Array.isArray(r.steps) ? r.steps : [];
  const weight = typeof r.weight === "number" ? r.weight : null;
  const phase = String(r.phase ?? "");
  const stepsRow = steps.length ? el("div", { class: "steps" }, steps.map((s, i) =>
    el("span", { class: i === r.step ? "step current" : i < r.step ? "step done" : "step",
      title: `step ${i + 1}: ${s.percent}% for ${fmtSeconds(s.pause_s)}`, text: `${s.percent}%` }))) : null;
  const weights = r.weights && typeof r.weights === "object"
    ? el("div", { class: "bar", title: "traffic split of the rule" }, Object.entries(r.weights).filter(([, w]) => w > 0).map(([b, w]) =>
      el("span", { style: `width:${w}%;background:${colour(b)}`, title: `${b} ${w.toFixed(1)}%` })))
    : null;
  const win = r.window;
  const limits = r.limits || {};
  const measured = win ? el("table", {}, el("tbody", {},
    el("tr", {}, el("th", { text: "requests this step" }), el("td", { class: "num", text: fmtCount(win.requests) }),
      el("td", { class: "muted", text: limits.min_requests !== undefined ? `at least ${limits.min_requests}` : "" })),
    el("tr", {}, el("th", { text: "error rate" }), el("td", { class: "num", text: `${win.error_rate} %` }),
      el("td", { class: "muted", text: limits.max_error_rate !== undefined ? `at most ${limits.max_error_rate} %` : "" })),
    el("tr", {}, el("th", { text: "p99" }), el("td", { class: "num", text: typeof win.p99_s === "number" ? fmtMs(win.p99_s * 1000) : String(win.p99_s ?? "–") }),
      el("td", { class: "muted", text: typeof limits.max_p99_s === "number" ? `at most ${fmtMs(limits.max_p99_s * 1000)}` : "" })))) : null;
  return el("div", { class: "rollout", "data-rollout": String(r.name ?? "") },
    el("h3", {}, String(r.name ?? "rollout"),
      el("span", { class: `phase ${phase}`, text: phase }),
      r.canary ? el("span", { class: "muted", text: ` canary ${r.canary}${Array.isArray(r.stable) ? ` / stable ${r.stable.map((s) => s.backend).join(", ")}` : ""}` }) : null),
    weight !== null ? el("div", { class: "rollout-weight" },
      el("div", { class: "progress", title: `canary ${weight}%` }, el("span", { style: `width:${Math.max(0, Math.min(100, weight))}%` })),
      el("span", { class: "canary-weight", text: `${weight}% to the canary` }),
      typeof r.applied_weight === "number" && r.applied_weight !== weight ? el("span", { class: "muted", text: ` (this gateway applies ${r.applied_weight}%)` }) : null) : null,
    stepsRow, weights,
    r.reason ? el("p", { class: "reason", text: r.reason }) : null,
    measured);
}

async function loadRollouts(path) {
  let body;
  try {
    body = await getJson(path);
  } catch (err) {
    replace("rollout-list", el("p", { class: "bad", text: `cannot read ${path}: ${err.message}` }));
    return;
  }
  const list = Array.isArray(body.rollouts) ? body.rollouts : [];
  const registry = body.registry || {};
  const driver = body.driving !== undefined && list.length
    ? el("p", { class: registry.up === false ? "bad" : "muted",
      text: `${body.driving ? "this gateway drives the rollouts" : `driven by ${body.driver || "no replica yet"}`}`
        + `${registry.up === false ? `; rollout state unreachable: ${registry.error || "registry down"}` : ""}` })
    : null;
  replace("rollout-list", driver, list.length ? list.map(renderRollout) : [el("p", { class: "empty", text: "no rollout configured" })]);
}

function onHello(hello) {
  view.events.clear();
  addEvents(hello.events || []);
  setText("events-note", "reloads and table updates always; rotation changes while a dashboard is open");
  const section = document.getElementById("rollouts");
  clearInterval(view.rolloutsTimer);
  if (hello.rollouts) {
    section.hidden = false;
    loadRollouts(hello.rollouts);
    view.rolloutsTimer = setInterval(() => loadRollouts(hello.rollouts), ROLLOUTS_REFRESH_MS);
  } else {
    section.hidden = true;
  }
}

// ---- wiring ------------------------------------------------------------------------

function connect() {
  const status = document.getElementById("status");
  const source = new EventSource("/dashboard/events");
  source.addEventListener("open", () => { status.textContent = "live"; status.className = "status live"; });
  source.addEventListener("error", () => { status.textContent = "reconnecting"; status.className = "status connecting"; });
  source.addEventListener("hello", (e) => onHello(JSON.parse(e.data)));
  source.addEventListener("snapshot", (e) => onSnapshot(JSON.parse(e.data)));
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("backends-more").addEventListener("click", () => loadEndpoints(view.backendsNext));
  view.endpointsTimer = setInterval(() => loadEndpoints(), ENDPOINTS_REFRESH_MS);
  drawCharts();
  connect();
});
