// Nestor dashboard. Plain browser JavaScript, no dependencies, no build step.
// It reads only the public JSON API, every few seconds, and redraws in place.
"use strict";

const KEY_STORE = "nestor.apiKey";
const SELECTED_STORE = "nestor.selected";
const PALETTE = ["#2f6fdb", "#e07b39", "#1f8a4c", "#8e44ad", "#c0392b", "#16a3b8", "#b7791f", "#5d6d7e"];
const COMPONENT_COLORS = { vectors: "#2f6fdb", index: "#e07b39", graph: "#e07b39", codes: "#8e44ad",
  rerank: "#16a3b8", payload: "#1f8a4c", ids: "#98a2b3", tokens: "#c0392b" };

const params = new URLSearchParams(location.search);
const state = {
  key: localStorage.getItem(KEY_STORE) || "",
  selected: params.get("collection") || localStorage.getItem(SELECTED_STORE) || null,
  refreshMs: Number(params.get("refresh")) || 3000,
  paused: false,
  timer: null,
  filter: "",
  infos: [],          // GET /collections/{name} results, in name order
  jobs: null,         // GET /jobs result, or null when unavailable
  snapshotRoute: undefined, // the snapshots path template from /openapi.json, or null when absent
  snapshots: {},      // name -> list | {error}
  busy: false,
};

// -- formatting --------------------------------------------------------------------------

const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const fmtInt = (n) => (n == null ? "–" : Math.round(n).toLocaleString("en-US"));

function fmtBytes(n) {
  if (n == null) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i === 0 ? n.toFixed(0) : n.toFixed(n < 10 ? 2 : 1)) + " " + units[i];
}

function fmtRate(r) {
  if (r == null) return "–";
  if (r === 0) return "0";
  if (r < 10) return r.toFixed(2);
  if (r < 1000) return r.toFixed(1);
  return fmtInt(r);
}

function fmtMs(seconds) {
  if (seconds == null) return "–";
  const ms = seconds * 1000;
  return (ms < 1 ? ms.toFixed(3) : ms < 100 ? ms.toFixed(2) : ms.toFixed(0)) + " ms";
}

function fmtAgo(epoch) {
  if (!epoch) return "never";
  const s = Math.max(0, Date.now() / 1000 - epoch);
  if (s < 60) return Math.round(s) + " s ago";
  if (s < 3600) return Math.round(s / 60) + " min ago";
  if (s < 86400) return (s / 3600).toFixed(1) + " h ago";
  return (s / 86400).toFixed(1) + " d ago";
}

const fmtTime = (epoch) => (epoch ? new Date(epoch * 1000).toLocaleString() : "");
function fmtDuration(s) {
  if (s == null) return "–";
  if (s < 10) return +s.toFixed(1) + " s";
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.floor(s / 60) + " min" + (Math.round(s % 60) ? " " + Math.round(s % 60) + " s" : "");
  return (s / 3600).toFixed(1) + " h";
}

// The knobs that shape an index, in the table; the detail panel and the tooltip show all of them.
const SPEC_KEYS = { hnsw: ["m", "ef_construction", "ef"], ivf_pq: ["nlist", "m", "nbits", "nprobe"] };

function indexSpec(cfg, full = false) {
  const ix = cfg.index || {};
  const keys = full ? Object.keys(ix).filter((k) => k !== "type") : SPEC_KEYS[ix.type] || [];
  const parts = keys.filter((k) => ix[k] != null).map((k) => `${k}=${ix[k]}`);
  let s = ix.type || "?";
  if (parts.length) s += " " + parts.join(" ");
  const codec = [cfg.reduce && `${cfg.reduce.type} ${cfg.reduce.dim}`, cfg.quantize && cfg.quantize.type].filter(Boolean);
  if (codec.length) s = codec.join(" ") + " → " + s;
  if (cfg.multivector) s = `${cfg.multivector.type} → ` + s;
  return s;
}

function componentColor(name, i) {
  return COMPONENT_COLORS[name] || PALETTE[i % PALETTE.length];
}

function memTotals(memory) {
  let ram = 0, disk = 0;
  for (const v of Object.values(memory || {})) { ram += v.ram || 0; disk += v.disk || 0; }
  return { ram, disk };
}

function stateClass(s) {
  if (s === "ready") return "ok";
  if (s === "failing" || s === "unavailable") return "bad";
  if (s === "training" || s === "building" || s === "indexing" || s === "paused") return "info";
  if (s === "untrained") return "";
  return "warn";
}

// -- named vectors -----------------------------------------------------------------------
// A collection has one unnamed vector (configured at the top level, `config.dim` set) or named
// vectors (`config.vectors: {name: {dim, metric, index, ...}}`, `config.dim` null). Its info has
// `vectors: {name: {index, segments, memory, placement}}` either way ("" is the unnamed one); the
// top-level `index` and `segments` describe the default vector only.

const namedVectors = (cfg) => (cfg.vectors && Object.keys(cfg.vectors).length ? cfg.vectors : null);
const vectorLabel = (name) => (name === "" ? "(default)" : name);

// Each vector's info by name; a server or collection kind without `vectors` has just the top-level one.
function vectorInfos(info) {
  const v = info.vectors || {};
  return Object.keys(v).length ? v : { "": { index: info.index || {}, segments: info.segments || [], memory: info.memory || {} } };
}

// The state that matters most across the vectors: a failing one wins, then building, then ready.
const STATE_RANK = ["failing", "unavailable", "training", "indexing", "paused", "untrained", "ready"];
function overallState(info) {
  const states = Object.values(vectorInfos(info)).map((v) => (v.index || {}).state).filter(Boolean);
  if (!states.length) return (info.index || {}).state;
  const rank = (s) => (STATE_RANK.includes(s) ? STATE_RANK.indexOf(s) : 1.5);
  return states.reduce((a, b) => (rank(b) < rank(a) ? b : a));
}

// The vectors whose indexer keeps failing, with the error each reports.
function failures(info) {
  return Object.entries(vectorInfos(info))
    .filter(([, v]) => v.index && (v.index.state === "failing" || v.index.error))
    .map(([name, v]) => ({ name, error: v.index.error || "the indexer keeps failing (see the server log)" }));
}

const failureText = (f, named) => (named && f.name !== "" ? `${f.name}: ` : "") + f.error;

// "text 384 int8 hnsw": a vector's name, dimension, compression and index, for the table.
function vectorBrief(name, vc) {
  const parts = [vc.reduce && vc.reduce.type, vc.quantize && vc.quantize.type].filter(Boolean);
  let ix = (vc.index || {}).type || "?";
  if (vc.multivector) ix = `${vc.multivector.type}→${ix}`;
  return [vectorLabel(name), vc.dim, ...parts, ix].join(" ");
}

function vectorsSummary(vectors) {
  const names = Object.keys(vectors);
  return `${names.length} vector${names.length === 1 ? "" : "s"}: ` + names.map((n) => vectorBrief(n, vectors[n])).join(", ");
}

// -- the API -----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, type, message) { super(message); this.status = status; this.type = type; }
}

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (state.key) headers["api-key"] = state.key;
  if (body !== undefined) headers["content-type"] = "application/json";
  const resp = await fetch(path, { method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (_) { /* not JSON: reported by status below */ }
  if (!resp.ok) {
    const err = (data && data.error) || {};
    throw new ApiError(resp.status, err.type || "http_error", err.message || resp.statusText || "request failed");
  }
  return data && "result" in data ? data.result : data;
}

function explain(err, what) {
  if (!(err instanceof ApiError)) return `${what}: ${err.message || err}`;
  if (err.status === 401) return `${what}: an API key is needed (paste one above)`;
  if (err.status === 403) return `${what}: this API key's role may not do that`;
  return `${what}: ${err.message}`;
}

// Snapshot routes are another module's: find them in the API description instead of probing for a 404.
async function discoverSnapshots() {
  try {
    const spec = await api("GET", "/openapi.json");
    const path = Object.keys(spec.paths || {}).find((p) => /^\/collections\/\{[^}]+\}\/snapshots$/.test(p));
    state.snapshotRoute = path ? { template: path, canCreate: "post" in spec.paths[path], canList: "get" in spec.paths[path] } : null;
  } catch (_) {
    state.snapshotRoute = null;
  }
}

const snapshotPath = (name) => state.snapshotRoute.template.replace(/\{[^}]+\}/, encodeURIComponent(name));

// -- charts (inline SVG) -----------------------------------------------------------------

function polylines(ts, ys, x, y) {
  // one polyline per run of non-null values, so an empty bucket breaks the line
  const runs = [];
  let cur = [];
  ys.forEach((v, i) => {
    if (v == null) { if (cur.length) runs.push(cur); cur = []; return; }
    cur.push(`${x(ts[i]).toFixed(1)},${y(v).toFixed(1)}`);
  });
  if (cur.length) runs.push(cur);
  return runs;
}

function sparkline(ts, ys, { width = 56, height = 18, color = "#2f6fdb", min = null, max = null } = {}) {
  const vals = ys.filter((v) => v != null);
  if (!vals.length || ts.length < 1) return `<svg class="spark" width="${width}" height="${height}"></svg>`;
  const lo = min ?? Math.min(...vals), hi = max ?? Math.max(...vals);
  const t0 = ts[0], t1 = ts[ts.length - 1] === t0 ? t0 + 1 : ts[ts.length - 1];
  const x = (t) => ((t - t0) / (t1 - t0)) * (width - 2) + 1;
  const y = (v) => height - 2 - ((v - lo) / (hi - lo || 1)) * (height - 4);
  const lines = polylines(ts, ys, x, y).map((pts) => pts.length === 1
    ? `<circle cx="${pts[0].split(",")[0]}" cy="${pts[0].split(",")[1]}" r="1.5" fill="${color}"/>`
    : `<polyline fill="none" stroke="${color}" stroke-width="1.4" points="${pts.join(" ")}"/>`);
  return `<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}">${lines.join("")}</svg>`;
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// A line chart: series = [{label, color, t: [...], y: [...]}], times in epoch seconds.
function lineChart({ title, series, format, yMin = 0, yMax = null, threshold = null, tMin = null, tMax = null, testid = "" }) {
  const W = 420, H = 150, L = 46, R = 8, T = 8, B = 20;
  const all = series.flatMap((s) => s.y.filter((v) => v != null));
  const ts = series.flatMap((s) => s.t);
  const now = Date.now() / 1000;
  const t1 = tMax ?? (ts.length ? Math.max(now, ...ts) : now);
  const t0 = tMin ?? (ts.length ? Math.min(...ts) : t1 - 600);
  const hi = yMax ?? niceMax(Math.max(0, ...all) * 1.1);
  const lo = yMin;
  const x = (t) => L + ((t - t0) / (t1 - t0 || 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo || 1)) * (H - T - B);
  let svg = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(title)}">`;
  for (const f of [0, 0.5, 1]) {
    const v = lo + (hi - lo) * f;
    svg += `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#eef0f3"/>`;
    svg += `<text x="${L - 4}" y="${y(v) + 3}" font-size="9" text-anchor="end" fill="#667085">${esc(format(v))}</text>`;
  }
  const span = t1 - t0;
  svg += `<text x="${L}" y="${H - 5}" font-size="9" fill="#667085">-${esc(fmtDuration(span))}</text>`;
  svg += `<text x="${W - R}" y="${H - 5}" font-size="9" text-anchor="end" fill="#667085">now</text>`;
  if (threshold != null) {
    svg += `<line x1="${L}" x2="${W - R}" y1="${y(threshold)}" y2="${y(threshold)}" stroke="#c53030" stroke-dasharray="4 3" stroke-width="1"/>`;
  }
  for (const s of series) {
    for (const pts of polylines(s.t, s.y, x, y)) {
      if (pts.length === 1) {
        const [cx, cy] = pts[0].split(",");
        svg += `<circle cx="${cx}" cy="${cy}" r="2.5" fill="${s.color}"/>`;
      } else {
        svg += `<polyline fill="none" stroke="${s.color}" stroke-width="1.6" stroke-linejoin="round" points="${pts.join(" ")}"/>`;
      }
    }
  }
  if (!all.length) svg += `<text x="${(L + W - R) / 2}" y="${H / 2}" font-size="11" text-anchor="middle" fill="#98a2b3">no data yet</text>`;
  svg += "</svg>";
  const legend = series.map((s) => `<span><span class="swatch" style="background:${s.color}"></span>${esc(s.label)}</span>`).join("");
  return `<div class="chart" data-chart="${esc(testid)}"><h3>${esc(title)}</h3><div class="legend">${legend}</div>${svg}</div>`;
}

// -- rendering ---------------------------------------------------------------------------

function card(label, value, { id, raw, warn } = {}) {
  return `<div class="card${warn ? " warn" : ""}"><div class="label">${esc(label)}</div>` +
    `<div class="value" data-field="${esc(id)}" data-value="${esc(raw ?? "")}">${esc(value)}</div></div>`;
}

function renderSummary() {
  const infos = state.infos;
  let points = 0, ram = 0, disk = 0, qps = 0, ups = 0, warnings = 0;
  let minRecall = null;
  for (const info of infos) {
    points += info.count;
    const m = memTotals(info.memory);
    ram += m.ram; disk += m.disk;
    const st = info.stats;
    if (st) {
      qps += st.search.rate; ups += st.upsert.rate;
      if (st.recall.warning) warnings++;
      if (st.recall.latest != null) minRecall = minRecall == null ? st.recall.latest : Math.min(minRecall, st.recall.latest);
    }
  }
  const running = state.jobs ? state.jobs.filter((j) => j.state === "running" || j.state === "queued").length : null;
  document.getElementById("summary").innerHTML = [
    card("Collections", fmtInt(infos.length), { id: "total-collections", raw: infos.length }),
    card("Points", fmtInt(points), { id: "total-points", raw: points }),
    card("RAM", fmtBytes(ram), { id: "total-ram", raw: ram }),
    card("Disk", fmtBytes(disk), { id: "total-disk", raw: disk }),
    card("Queries/s", fmtRate(qps), { id: "total-qps", raw: qps }),
    card("Upserted points/s", fmtRate(ups), { id: "total-ups", raw: ups }),
    card("Active jobs", running == null ? "–" : fmtInt(running), { id: "active-jobs", raw: running ?? "" }),
    card("Lowest recall@10", minRecall == null ? "–" : minRecall.toFixed(3), { id: "min-recall", raw: minRecall ?? "", warn: warnings > 0 }),
  ].join("");
  const failing = infos.filter((i) => failures(i).length)
    .map((i) => `<div class="bad" data-failing="${esc(i.name)}">✖ <b>${esc(i.name)}</b>: indexing keeps failing (` +
      failures(i).map((f) => `${f.name !== "" && namedVectors(i.config) ? "vector <b>" + esc(f.name) + "</b>: " : ""}<code>${esc(f.error)}</code>`).join("; ") +
      `). Searches still answer, exactly over the points not indexed; the server log has the traceback.</div>`);
  const warn = failing.concat(infos.filter((i) => i.stats && i.stats.recall.warning)
    .map((i) => `<div data-warning="${esc(i.name)}">⚠ <b>${esc(i.name)}</b>: ${esc(i.stats.recall.warning)}. ` +
      `Check for drift, a bad refit, or a low <code>ef</code>/<code>nprobe</code>.</div>`));
  const box = document.getElementById("warnings");
  box.innerHTML = warn.join("");
  box.hidden = warn.length === 0;
}

function memBar(memory, total) {
  if (!total) return "";
  const keys = Object.keys(memory);
  const parts = keys.map((k, i) => {
    const w = ((memory[k].ram || 0) / total) * 100;
    return w > 0 ? `<span style="width:${w.toFixed(2)}%;background:${componentColor(k, i)}" title="${esc(k)}"></span>` : "";
  });
  return `<div class="membar">${parts.join("")}</div>`;
}

function cell(field, value, text, cls = "") {
  return `<td class="${cls}" data-field="${field}" data-value="${esc(value ?? "")}">${text}</td>`;
}

function renderCollections() {
  const tbody = document.querySelector("#collections tbody");
  const filter = state.filter.toLowerCase();
  const shown = state.infos.filter((i) => !filter || i.name.toLowerCase().includes(filter));
  document.getElementById("collection-count").textContent = String(state.infos.length);
  document.getElementById("no-collections").hidden = state.infos.length > 0;
  tbody.innerHTML = shown.map((info) => {
    const cfg = info.config, ix = info.index || {}, st = info.stats;
    const named = namedVectors(cfg);
    const mem = memTotals(info.memory);
    const shownState = overallState(info);
    const segs = named ? vectorStates(info) : (info.segments || []).map((s) => `${fmtInt(s.points)} ${esc(s.type)}`).join(" · ");
    const errs = failures(info).map((f) => failureText(f, named));
    const errLine = errs.length
      ? `<span class="sub err" data-field="error" data-value="${esc(errs.join("\n"))}" title="${esc(errs.join("\n"))}">${esc(errs.join("; "))}</span>` : "";
    const search = st ? st.search : null, upsert = st ? st.upsert : null, recall = st ? st.recall : null;
    const qSpark = search ? sparkline(search.series.t, search.series.items) : "";
    const uSpark = upsert ? sparkline(upsert.series.t, upsert.series.items, { color: "#e07b39" }) : "";
    const rSpark = recall && recall.history.t.length ? sparkline(recall.history.t, recall.history.recall, { color: recall.warning ? "#c53030" : "#1f8a4c", min: 0, max: 1 }) : "";
    const recallText = recall && recall.latest != null
      ? `<span class="pill ${recall.warning ? "bad" : "ok"}">${recall.latest.toFixed(3)}</span>` : `<span class="muted">–</span>`;
    const sel = info.name === state.selected ? " selected" : "";
    return `<tr data-name="${esc(info.name)}" class="${sel}">` +
      cell("name", info.name, esc(info.name), "name") +
      cell("count", info.count, fmtInt(info.count), "num") +
      (named ? namedCells(named) :
        `<td><span data-field="dim" data-value="${cfg.dim}">${cfg.dim}</span> · <span data-field="metric" data-value="${esc(cfg.metric)}">${esc(cfg.metric)}</span></td>` +
        cell("index", indexSpec(cfg), `<span class="small" title="${esc(indexSpec(cfg, true))}">${esc(indexSpec(cfg))}</span>` +
          (ix.spec ? `<span class="sub">${esc(ix.spec)}</span>` : ""), "spec")) +
      cell("state", shownState, `<span class="pill ${stateClass(shownState)}">${esc(shownState)}</span><span class="sub">${segs}</span>${errLine}`, "state") +
      cell("ram", mem.ram, fmtBytes(mem.ram) + memBar(info.memory, mem.ram), "num") +
      cell("disk", mem.disk, fmtBytes(mem.disk), "num") +
      cell("qps", search ? search.rate : "", fmtRate(search && search.rate) + qSpark, "num") +
      cell("p95", search ? search.p95 : "", fmtMs(search && search.p95), "num") +
      cell("ups", upsert ? upsert.rate : "", fmtRate(upsert && upsert.rate) + uSpark, "num") +
      cell("recall", recall ? recall.latest : "", recallText + rSpark, "num") +
      `<td><span data-field="last-write" data-value="${esc(info.last_write ?? "")}" title="${esc(fmtTime(info.last_write))}">${fmtAgo(info.last_write)}</span>` +
      `<span class="sub" data-field="last-optimized" data-value="${esc(info.last_optimized ?? "")}" title="${esc(fmtTime(info.last_optimized))}">${fmtAgo(info.last_optimized)}</span></td>` +
      "</tr>";
  }).join("");
}

// The dim and index cells of a collection with named vectors: how many, then one line per vector.
function namedCells(vectors) {
  const names = Object.keys(vectors);
  const metrics = [...new Set(names.map((n) => vectors[n].metric))];
  const metric = metrics.length === 1 ? metrics[0] : "mixed";
  const dims = names.map((n) => `${vectorLabel(n)}: ${vectors[n].dim} ${vectors[n].metric}`).join("\n");
  const lines = names.map((n) => `<span class="line" data-vector="${esc(n)}" title="${esc(vectorLabel(n) + ": " + indexSpec(vectors[n], true))}">${esc(vectorBrief(n, vectors[n]))}</span>`);
  return `<td title="${esc(dims)}"><span data-field="dim" data-value="${names.length} vectors">${names.length} vectors</span> · ` +
    `<span data-field="metric" data-value="${esc(metric)}">${esc(metric)}</span></td>` +
    cell("index", vectorsSummary(vectors), `<span class="small">${lines.join("")}</span>`, "spec");
}

// "2 ready · 1 failing": the vectors' index states, counted.
function vectorStates(info) {
  const counts = {};
  for (const v of Object.values(vectorInfos(info))) { const s = (v.index || {}).state || "?"; counts[s] = (counts[s] || 0) + 1; }
  return Object.entries(counts).map(([s, n]) => `${n} ${esc(s)}`).join(" · ");
}

function renderMemory(info) {
  const entries = Object.entries(info.memory || {});
  const tot = memTotals(info.memory);
  const maxv = Math.max(1, ...entries.flatMap(([, v]) => [v.ram || 0, v.disk || 0]));
  const rows = entries.map(([k, v], i) => {
    const color = componentColor(k, i);
    const bar = (n, c) => `<div class="membar" style="width:120px"><span style="width:${((n || 0) / maxv) * 100}%;background:${c}"></span></div>`;
    return `<tr data-component="${esc(k)}"><td><span class="swatch" style="background:${color}"></span>${esc(k)}</td>` +
      `<td class="num" data-field="mem-ram" data-value="${v.ram || 0}">${fmtBytes(v.ram || 0)}${bar(v.ram, color)}</td>` +
      `<td class="num" data-field="mem-disk" data-value="${v.disk || 0}">${fmtBytes(v.disk || 0)}${bar(v.disk, "#98a2b3")}</td></tr>`;
  }).join("");
  return `<div><h3>Memory by component</h3><table class="memory"><thead><tr><th>component</th><th class="num">RAM</th><th class="num">disk</th></tr></thead>` +
    `<tbody>${rows}<tr><td><b>total</b></td><td class="num"><b>${fmtBytes(tot.ram)}</b></td><td class="num"><b>${fmtBytes(tot.disk)}</b></td></tr></tbody></table></div>`;
}

// Each vector's recall target (`quality`): the recall measured (calibration, live probe) with its 95% interval,
// the knobs in force, and why the target is out of reach when it is.
function renderQuality(info) {
  const est = (e) => e ? `${e.recall.toFixed(3)} [${e.low.toFixed(3)}, ${e.high.toFixed(3)}]` : "–";
  const rows = Object.entries(vectorInfos(info)).filter(([, vi]) => vi.index && vi.index.quality).map(([n, vi]) => {
    const q = vi.index.quality;
    const knobs = Object.entries(q.params || {}).map(([k, v]) => `${k} ${v}`).join(", ") || "–";
    const cls = q.state === "met" || q.state === "exact" ? "ok" : q.state === "unmet" || q.state === "below_target" ? "bad" : "info";
    const msg = q.message ? `<div class="small" data-field="quality-message">${esc(q.message)}</div>` : "";
    return `<tr data-quality="${esc(n)}"><td class="name">${esc(vectorLabel(n))}</td><td class="num">${q.recall_target}</td>` +
      `<td><span class="pill ${cls}" data-field="quality-state">${esc(q.state)}</span>${msg}</td>` +
      `<td class="num">${esc(est(q.calibration))}</td><td class="num">${esc(est(q.live))}</td><td>${esc(knobs)}</td></tr>`;
  }).join("");
  if (!rows) return "";
  return `<div data-field="quality"><h3>Recall target</h3><table><thead><tr><th>vector</th><th class="num">target</th><th>state</th>` +
    `<th class="num">calibration recall@k [95%]</th><th class="num">live recall [95%]</th><th>knobs in force</th></tr></thead>` +
    `<tbody>${rows}</tbody></table></div>`;
}

const encoderText = (enc) => enc.name + (enc.config && enc.config.model ? " " + enc.config.model : "");

function renderFacts(info) {
  const ix = info.index || {};
  const named = namedVectors(info.config);
  // With named vectors the top-level index is only the default one's: the vectors table shows each.
  const indexFacts = named ? [["vectors", String(Object.keys(named).length)]]
    : Object.entries(ix).filter(([k, v]) => k !== "error" && (typeof v !== "object" || v === null))
      .map(([k, v]) => [k, v === null ? "–" : typeof v === "number" ? fmtInt(v) : String(v)]);
  const facts = [
    ["points", fmtInt(info.count)], ["seq", fmtInt(info.seq)], ["status", info.status], ...indexFacts,
    ["last write", fmtTime(info.last_write) || "never"], ["last optimized", fmtTime(info.last_optimized) || "never"],
  ];
  const use = info.usage, opt = info.optimizer; // live and dead bytes, compaction (docs/compaction.md)
  if (use) facts.push(["dead", `${fmtBytes(use.dead)} (${(100 * use.dead_fraction).toFixed(1)} %), ${fmtInt(use.dead_labels)} dead labels`]);
  if (opt) {
    const pct = opt.progress == null ? "" : ` ${Math.round(100 * opt.progress)} %`;
    facts.push(["compaction", opt.state === "running" ? `${opt.phase}${pct} (${opt.reason})`
      : opt.last ? `idle; last ${fmtTime(opt.last.finished_at)}` : "idle; never"]);
  }
  if (info.config.encoder) facts.push(["encoder", encoderText(info.config.encoder)]);
  for (const [n, vc] of Object.entries(named || {})) if (vc.encoder) facts.push([`encoder (${vectorLabel(n)})`, encoderText(vc.encoder)]);
  const st = info.stats;
  if (st) facts.push(["probe", `${st.recall.sample} queries every ${fmtDuration(st.recall.interval_seconds)} (${st.recall.queries_buffered} buffered)`]);
  return `<div><h3>Index</h3><dl class="kv">${facts.map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(v)}</dd>`).join("")}</dl></div>`;
}

// Every named vector: its config in brief, its index state (and error), what serves it, its size.
function renderVectors(info) {
  const named = namedVectors(info.config);
  if (!named) return "";
  const infos = vectorInfos(info);
  const rows = Object.keys(named).map((n) => {
    const vc = named[n], vi = infos[n] || {}, ix = vi.index || {};
    const mem = memTotals(vi.memory);
    const mv = ix.multivector;
    const served = (ix.backend || "–") + (ix.spec ? ` · ${ix.spec}` : "") +
      (mv && mv.fde_dim ? ` · FDE ${fmtInt(mv.fde_dim)} dims` : "") + (mv ? ` · ${fmtInt(mv.tokens)} ${mv.token_dtype} tokens` : "");
    const err = ix.error ? `<div class="err-full" data-field="vector-error">${esc(ix.error)}</div>` : "";
    return `<tr data-vector="${esc(n)}"><td class="name">${esc(vectorLabel(n))}</td>` +
      `<td>${vc.dim} · ${esc(vc.metric)}</td>` +
      `<td class="mono">${esc(indexSpec(vc, true))}</td>` +
      `<td data-field="vector-state" data-value="${esc(ix.state)}"><span class="pill ${stateClass(ix.state)}">${esc(ix.state || "?")}</span>${err}</td>` +
      `<td class="num" data-field="vector-indexed" data-value="${esc(ix.indexed ?? "")}">${fmtInt(ix.indexed)}</td>` +
      `<td class="num">${fmtInt(ix.pending)}</td>` +
      `<td data-field="vector-backend" data-value="${esc(ix.backend ?? "")}">${esc(served)}</td>` +
      `<td class="num">${fmtBytes(mem.ram)}</td><td class="num">${fmtBytes(mem.disk)}</td></tr>`;
  }).join("");
  return `<div class="vectors-block" data-field="vectors"><h3>Vectors</h3><table class="vectors"><thead><tr><th>vector</th><th>dim · metric</th>` +
    `<th>index</th><th>state</th><th class="num">indexed</th><th class="num">pending</th><th>served by</th>` +
    `<th class="num">RAM</th><th class="num">disk</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

// -- payload indexes and search plans ----------------------------------------------------
// `info.payload_schema`: {key: {data_type, state, points, ram, is_tenant?}}; `stats.plans`: how many
// searches each plan (the result's `strategy`) answered since the server started, and the filter keys
// those searches had to read from the payloads because no payload index covers them.

const SCHEMA_TYPES = "keyword | integer | float | bool | datetime | uuid | text";

function tenantFlag(info, key) {
  const pi = (info.payload_schema || {})[key] || {};
  if (pi.is_tenant != null) return pi.is_tenant;
  const cfg = ((info.config || {}).payload_schema || {})[key];
  return cfg && typeof cfg === "object" && cfg.is_tenant != null ? cfg.is_tenant : null;
}

function renderPayloadIndexes(info) {
  const schema = info.payload_schema || {};
  const keys = Object.keys(schema).sort();
  let body;
  if (!keys.length) {
    body = `<p class="muted" data-field="payload-indexes-empty">No payload indexes: every filter reads the payloads of the points it checks. ` +
      `Index a key you filter on with <code>PUT /collections/${esc(info.name)}/index</code>.</p>`;
  } else {
    const tenants = keys.some((k) => tenantFlag(info, k) != null);
    const rows = keys.map((k) => {
      const pi = schema[k], t = tenantFlag(info, k);
      return `<tr data-key="${esc(k)}"><td class="mono" data-field="pi-key">${esc(k)}</td>` +
        cell("pi-type", pi.data_type, esc(pi.data_type)) +
        (tenants ? cell("pi-tenant", t ?? "", t ? `<span class="pill info">tenant</span>` : "–") : "") +
        cell("pi-state", pi.state, `<span class="pill ${stateClass(pi.state)}">${esc(pi.state)}</span>`) +
        cell("pi-points", pi.points, fmtInt(pi.points), "num") +
        cell("pi-bytes", pi.ram, fmtBytes(pi.ram), "num") +
        cell("pi-per-point", pi.points ? pi.ram / pi.points : "", pi.points ? (pi.ram / pi.points).toFixed(1) + " B" : "–", "num") + "</tr>";
    }).join("");
    body = `<table class="payload-indexes"><thead><tr><th>field</th><th>type</th>${tenants ? "<th>tenant</th>" : ""}<th>state</th>` +
      `<th class="num">points</th><th class="num">RAM</th><th class="num">per point</th></tr></thead><tbody>${rows}</tbody></table>`;
  }
  return `<div data-field="payload-indexes"><h3>Payload indexes <span class="pill">${keys.length}</span></h3>${body}</div>`;
}

function renderPlans(info) {
  const plans = info.stats && info.stats.plans;
  if (!plans) return "";
  let body;
  if (!plans.total) {
    body = `<p class="muted" data-field="plans-empty">No searches since the server started.</p>`;
  } else {
    const rows = plans.strategies.map((r) => {
      const pct = (r.share * 100).toFixed(1);
      const scan = r.payload_scan ? ` <span class="pill warn" title="a filter key had no payload index: its values were read from the payloads">payload scan</span>` : "";
      return `<tr data-strategy="${esc(r.strategy)}" class="${r.payload_scan ? "scan" : ""}">` +
        `<td class="mono" data-field="plan-strategy">${esc(r.strategy)}${scan}</td>` +
        cell("plan-count", r.count, fmtInt(r.count), "num") +
        cell("plan-share", r.share.toFixed(4), `<span class="sharebar"><span style="width:${pct}%"></span></span>${pct}%`, "num") + "</tr>";
    }).join("");
    body = `<table class="plans"><thead><tr><th>strategy</th><th class="num">searches</th><th class="num">share</th></tr></thead><tbody>${rows}</tbody>` +
      `<tfoot><tr><td><b>total</b></td><td class="num" data-field="plans-total" data-value="${plans.total}"><b>${fmtInt(plans.total)}</b></td><td></td></tr></tfoot></table>`;
  }
  const since = plans.since ? `<span class="muted small since" title="${esc(fmtTime(plans.since))}">since the server started, ${esc(fmtAgo(plans.since))}</span>` : "";
  return `<div data-field="plans"><h3>Search plans ${since}</h3>${body}${renderScanHint(info, plans)}</div>`;
}

// Filter keys searches read from the payloads for want of an index (still unindexed now), with the fix.
function renderScanHint(info, plans) {
  const indexed = info.payload_schema || {};
  const keys = (plans.scanned_keys || []).filter((k) => !(k.key in indexed));
  if (!keys.length) return "";
  const items = keys.map((k) => `<li data-scanned-key="${esc(k.key)}" data-value="${k.searches}"><code>${esc(k.key)}</code>: ` +
    `${fmtInt(k.searches)} search${k.searches === 1 ? "" : "es"}</li>`).join("");
  const example = JSON.stringify({ field: keys[0].key, schema: "keyword" });
  return `<div class="scan-hint" data-field="scan-hint"><b>Filter keys without a payload index</b>` +
    `<ul>${items}</ul><div class="small">These filters read every candidate point's payload (the <code>+payload_scan</code> plans). ` +
    `Create an index on each key, with its type (${esc(SCHEMA_TYPES)}), for example:</div>` +
    `<code class="request">PUT /collections/${esc(info.name)}/index ${esc(example)}</code></div>`;
}

function renderCluster(info) {
  const cl = info.cluster;
  if (!cl) return "";
  const rows = (cl.shard_list || []).flatMap((sh) => (sh.replicas || []).map((r) =>
    `<tr data-shard="${sh.shard}" data-replica="${r.replica}"><td>${sh.shard}</td><td>${r.replica}</td>` +
    `<td><span class="pill ${r.health === "green" ? "ok" : "bad"}" data-field="replica-state">${esc(r.state)}</span></td>` +
    `<td>${esc(r.node || "–")}</td><td class="num">${r.count == null ? "–" : fmtInt(r.count)}</td>` +
    `<td class="num">${fmtInt(r.failures || 0)}</td><td class="num">${fmtInt(r.catch_ups || 0)}</td></tr>`)).join("");
  return `<div data-field="cluster"><h3>Shards and replicas · <span data-field="cluster-health">${esc(cl.health)}</span></h3>` +
    `<p class="muted small">${fmtInt(cl.shards)} shards × ${fmtInt(cl.replicas)} replicas on ${fmtInt((cl.nodes || []).length)} node(s)</p>` +
    `<table class="snapshots"><thead><tr><th>shard</th><th>replica</th><th>state</th><th>node</th><th class="num">points</th>` +
    `<th class="num">failures</th><th class="num">catch-ups</th></tr></thead><tbody>${rows}</tbody></table></div>`;
}

function renderSnapshots(name) {
  const route = state.snapshotRoute;
  if (route === undefined) return `<div><h3>Snapshots</h3><p class="muted">…</p></div>`;
  if (route === null) return `<div><h3>Snapshots</h3><p class="muted">This server has no snapshot API.</p></div>`;
  const snap = state.snapshots[name];
  let body;
  if (!snap) body = `<p class="muted">loading…</p>`;
  else if (snap.error) body = `<p class="muted" data-field="snapshots-error">${esc(snap.error)}</p>`;
  else if (!snap.list.length) body = `<p class="muted" data-field="snapshots-empty">No snapshots yet.</p>`;
  else {
    body = `<table class="snapshots"><thead><tr><th>snapshot</th><th>created</th><th class="num">size</th></tr></thead><tbody>` +
      snap.list.map((s) => {
        const id = s.name ?? s.id ?? s.snapshot ?? JSON.stringify(s);
        const created = s.created_at ?? s.creation_time ?? s.created ?? null;
        const size = s.size ?? s.bytes ?? s.size_bytes ?? null;
        const when = typeof created === "number" ? fmtTime(created) : (created || "");
        return `<tr data-snapshot="${esc(id)}"><td>${esc(id)}</td><td>${esc(when)}</td><td class="num">${size == null ? "–" : fmtBytes(size)}</td></tr>`;
      }).join("") + "</tbody></table>";
  }
  const note = snap && snap.note ? `<p class="muted small" data-field="snapshot-note">${esc(snap.note)}</p>` : "";
  const button = route.canCreate ? `<button type="button" class="primary" id="create-snapshot" data-name="${esc(name)}">Create snapshot</button>` : "";
  return `<div><h3>Snapshots</h3>${body}<div style="margin-top:6px">${button} <span class="muted small">admin key</span></div>${note}</div>`;
}

function renderDetail() {
  const box = document.getElementById("detail");
  const info = state.infos.find((i) => i.name === state.selected);
  if (!info) { box.hidden = true; box.innerHTML = ""; return; }
  box.hidden = false;
  const st = info.stats;
  let charts = "";
  if (st) {
    const s = st.search.series, u = st.upsert.series, r = st.recall;
    const bs = st.bucket_seconds;
    const t0 = s.t.length ? s.t[0] : null, t1 = s.t.length ? s.t[s.t.length - 1] + bs : null;
    const perSec = (xs) => xs.map((v) => v / bs);
    const ms = (xs) => xs.map((v) => (v == null ? null : v * 1000));
    charts =
      lineChart({ title: "Throughput", testid: "rate", tMin: t0, tMax: t1, format: fmtRate,
        series: [{ label: "queries/s", color: "#2f6fdb", t: s.t, y: perSec(s.items) }, { label: "upserted points/s", color: "#e07b39", t: u.t, y: perSec(u.items) }] }) +
      lineChart({ title: "Search latency", testid: "search-latency", tMin: t0, tMax: t1, format: (v) => v.toFixed(v < 10 ? 1 : 0) + " ms",
        series: [{ label: "p50", color: "#1f8a4c", t: s.t, y: ms(s.p50) }, { label: "p95", color: "#b7791f", t: s.t, y: ms(s.p95) }, { label: "p99", color: "#c53030", t: s.t, y: ms(s.p99) }] }) +
      lineChart({ title: "Upsert latency", testid: "upsert-latency", tMin: t0, tMax: t1, format: (v) => v.toFixed(v < 10 ? 1 : 0) + " ms",
        series: [{ label: "p50", color: "#1f8a4c", t: u.t, y: ms(u.p50) }, { label: "p95", color: "#b7791f", t: u.t, y: ms(u.p95) }, { label: "p99", color: "#c53030", t: u.t, y: ms(u.p99) }] }) +
      lineChart({ title: `Live recall@${r.k}` + (r.latest != null ? ` (now ${r.latest.toFixed(3)})` : ""), testid: "recall",
        yMin: Math.min(0.5, ...r.history.recall.map((v) => Math.floor(v * 10) / 10)), yMax: 1, threshold: r.warn_below,
        format: (v) => v.toFixed(2),
        series: [{ label: `recall@${r.k} vs exact`, color: r.warning ? "#c53030" : "#1f8a4c", t: r.history.t, y: r.history.recall },
          { label: `warn below ${r.warn_below}`, color: "#c53030", t: [], y: [] }] });
  }
  const cfg = info.config;
  const named = namedVectors(cfg);
  const shownState = overallState(info);
  const latencies = st ? `search p50 ${fmtMs(st.search.p50)} · p95 ${fmtMs(st.search.p95)} · p99 ${fmtMs(st.search.p99)} over ${fmtDuration(st.window_seconds)}` : "";
  const spec = named ? vectorsSummary(named)
    : `dim ${cfg.dim} · ${cfg.metric} · ${indexSpec(cfg, true)}${info.index.spec ? " · " + info.index.spec : ""}`;
  const errors = failures(info).map((f) =>
    `<div class="error-box" data-field="detail-error" data-vector="${esc(f.name)}"><b>Indexing keeps failing</b>` +
    `${named ? " (vector " + esc(vectorLabel(f.name)) + ")" : ""}: <code>${esc(f.error)}</code>` +
    `<div class="small">The indexer retries with a growing pause (up to a minute). Searches still answer, exactly over the points not indexed.</div></div>`).join("");
  box.innerHTML =
    `<div class="detail-head"><h2 style="margin:0" data-field="detail-name">${esc(info.name)}</h2>` +
    `<span class="pill ${stateClass(shownState)}" data-field="detail-state" data-value="${esc(shownState)}">${esc(shownState)}</span>` +
    `<span class="spec">${esc(spec)}</span>` +
    `<span class="muted small" data-field="detail-latency">${esc(latencies)}</span></div>` +
    errors +
    (st && st.recall.warning ? `<div class="warning-list" style="margin-bottom:10px"><div>⚠ ${esc(st.recall.warning)}</div></div>` : "") +
    renderVectors(info) +
    renderQuality(info) +
    `<div class="filters-grid">${renderPayloadIndexes(info)}${renderPlans(info)}</div>` +
    `<div class="detail-grid">${charts}${renderMemory(info)}${renderFacts(info)}${renderCluster(info)}${renderSnapshots(info.name)}</div>`;
  const btn = document.getElementById("create-snapshot");
  if (btn) btn.addEventListener("click", () => createSnapshot(btn.dataset.name, btn));
}

function renderJobs() {
  const tbody = document.querySelector("#jobs tbody");
  const jobs = state.jobs || [];
  document.getElementById("job-count").textContent = state.jobs ? String(jobs.length) : "";
  document.getElementById("no-jobs").hidden = !(state.jobs && jobs.length === 0);
  // the active ones, then the 20 most recent others
  const active = jobs.filter((j) => j.state === "running" || j.state === "queued");
  const done = jobs.filter((j) => !(j.state === "running" || j.state === "queued")).slice(0, 20);
  tbody.innerHTML = [...active, ...done].map((j) => {
    const frac = j.total ? Math.min(1, j.done / j.total) : j.state === "succeeded" ? 1 : 0;
    const pct = (frac * 100).toFixed(1);
    const errs = j.errors || [];
    const errText = errs.slice(0, 3).map((e) => `line ${e.line}: ${e.reason}`).join("; ");
    const errCell = (j.error ? `<div>${esc(j.error)}</div>` : "") + (errs.length
      ? `<details><summary>${fmtInt(j.failed)} bad rows</summary>${errs.slice(0, 50).map((e) => `<div>line ${e.line}: ${esc(e.reason)}</div>`).join("")}</details>`
      : "");
    const cls = { running: "info", queued: "", succeeded: "ok", failed: "bad", cancelled: "warn" }[j.state] ?? "";
    return `<tr data-job="${esc(j.id)}">` +
      `<td title="${esc(j.source && j.source.path)}"><code>${esc(j.id.slice(0, 8))}</code></td>` +
      `<td>${esc(j.collection)}</td>` +
      cell("state", j.state, `<span class="pill ${cls}">${esc(j.state)}</span>`) +
      `<td><div class="progress ${esc(j.state)}" data-field="progress" data-value="${frac.toFixed(4)}" title="${esc(errText)}">` +
      `<div class="fill" style="width:${pct}%"></div><div class="pct">${pct}%</div></div></td>` +
      cell("done", j.done, `${fmtInt(j.done)} / ${j.total == null ? "?" : fmtInt(j.total)}`, "num") +
      cell("rate", j.rate, j.rate == null ? "–" : fmtRate(j.rate) + " rows/s", "num") +
      cell("eta", j.eta, j.eta == null ? "–" : fmtDuration(j.eta), "num") +
      cell("upserted", j.upserted, fmtInt(j.upserted), "num") +
      cell("failed", j.failed, fmtInt(j.failed), "num") +
      `<td class="errors">${errCell}</td>` +
      `<td><span title="${esc(fmtTime(j.started_at))}">${j.started_at ? fmtAgo(j.started_at) : "–"}</span></td></tr>`;
  }).join("");
}

function setBanner(text, kind = "") {
  const b = document.getElementById("banner");
  b.hidden = !text;
  b.className = "banner" + (kind ? " " + kind : "");
  b.textContent = text || "";
}

// -- refresh loop ------------------------------------------------------------------------

async function loadSnapshots(name) {
  if (!state.snapshotRoute || !state.snapshotRoute.canList || !name) return;
  try {
    const res = await api("GET", snapshotPath(name));
    const list = Array.isArray(res) ? res : (res && (res.snapshots || res.items)) || [];
    state.snapshots[name] = { list, note: (state.snapshots[name] || {}).note };
  } catch (err) {
    state.snapshots[name] = { error: explain(err, "snapshots"), note: (state.snapshots[name] || {}).note };
  }
}

async function createSnapshot(name, btn) {
  btn.disabled = true;
  let note;
  try {
    const res = await api("POST", snapshotPath(name));
    const id = res && (res.name || res.id);
    note = "Snapshot created" + (id ? `: ${id}` : "") + ".";
  } catch (err) {
    note = err instanceof ApiError && err.status === 403 ? "Creating a snapshot needs an admin key." : explain(err, "create snapshot");
  }
  await loadSnapshots(name);
  state.snapshots[name] = { ...(state.snapshots[name] || { list: [] }), note };
  renderDetail();
}

async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    if (state.snapshotRoute === undefined) await discoverSnapshots();
    const [list, jobs] = await Promise.allSettled([api("GET", "/collections"), api("GET", "/jobs")]);
    let authProblem = null;
    if (list.status === "fulfilled") {
      const names = list.value.collections.map((c) => c.name).sort();
      const infos = await Promise.allSettled(names.map((n) => api("GET", "/collections/" + encodeURIComponent(n))));
      // a collection deleted between the two calls is simply left out
      state.infos = infos.filter((r) => r.status === "fulfilled").map((r) => r.value);
      document.getElementById("collections-error").textContent = "";
    } else {
      if (list.reason instanceof ApiError && list.reason.status === 401) authProblem = list.reason;
      document.getElementById("collections-error").textContent = explain(list.reason, "collections");
    }
    if (jobs.status === "fulfilled") {
      state.jobs = jobs.value.jobs;
      document.getElementById("jobs-error").textContent = "";
    } else {
      state.jobs = null;
      document.getElementById("jobs-error").textContent = explain(jobs.reason, "jobs");
    }
    if (!state.infos.some((i) => i.name === state.selected)) state.selected = state.infos.length ? state.infos[0].name : null;
    await loadSnapshots(state.selected);
    setBanner(authProblem ? "This server requires an API key: paste one in the box above." + (state.key ? " (The saved key was refused.)" : "") : "", authProblem ? "warn" : "");
    const pill = document.getElementById("server-state");
    pill.textContent = authProblem ? "key needed" : "connected";
    pill.className = "pill " + (authProblem ? "warn" : "ok");
    renderSummary();
    renderCollections();
    renderDetail();
    renderJobs();
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
  } catch (err) {
    const pill = document.getElementById("server-state");
    pill.textContent = "unreachable";
    pill.className = "pill bad";
    setBanner("Cannot reach the server: " + (err.message || err));
  } finally {
    state.busy = false;
  }
}

function schedule() {
  clearTimeout(state.timer);
  if (state.paused) return;
  state.timer = setTimeout(async () => { await refresh(); schedule(); }, state.refreshMs);
}

function init() {
  const keyInput = document.getElementById("api-key");
  keyInput.value = state.key;
  document.getElementById("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    state.key = keyInput.value.trim();
    if (state.key) localStorage.setItem(KEY_STORE, state.key); else localStorage.removeItem(KEY_STORE);
    state.snapshots = {};
    refresh();
  });
  document.getElementById("key-clear").addEventListener("click", () => {
    state.key = ""; keyInput.value = ""; localStorage.removeItem(KEY_STORE); refresh();
  });
  const sel = document.getElementById("refresh");
  if (![...sel.options].some((o) => Number(o.value) === state.refreshMs)) sel.add(new Option(state.refreshMs / 1000 + " s", String(state.refreshMs)));
  sel.value = String(state.refreshMs);
  sel.addEventListener("change", () => { state.refreshMs = Number(sel.value); schedule(); });
  const pause = document.getElementById("pause");
  pause.addEventListener("click", () => {
    state.paused = !state.paused;
    pause.textContent = state.paused ? "Resume" : "Pause";
    if (!state.paused) refresh();
    schedule();
  });
  document.getElementById("filter").addEventListener("input", (e) => { state.filter = e.target.value; renderCollections(); });
  document.querySelector("#collections tbody").addEventListener("click", (e) => {
    const row = e.target.closest("tr[data-name]");
    if (!row) return;
    state.selected = row.dataset.name;
    localStorage.setItem(SELECTED_STORE, state.selected);
    renderCollections();
    renderDetail();
    loadSnapshots(state.selected).then(renderDetail);
  });
  refresh().then(schedule);
}

init();
