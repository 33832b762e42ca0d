// Live dashboard: one tile per camera, fed by server-sent events (/api/live); snapshots are
// fetched per camera while the page is visible. Plain DOM and canvas: the machines are offline.
// The console: a tile opens its camera view (#camera/NAME: large picture, counts, state history,
// events, controls); #events lists event pictures. Controls and the add form appear only when
// the state says the camera API accepts changes (state.api.mutations).
"use strict";

const SETTINGS = Object.freeze({
  reconnectDelayMs: 3000,    // after the event stream closed for good (e.g. server restarted)
  maxColumns: 3,             // tiles per row on wide screens
  minTileWidthPx: 420,       // narrower screens get fewer columns
  chartHeadroom: 1.15,       // sparkline scale above the highest point
  qualityWarnBelow: 0.9,     // connection quality shown amber below this share
  qualityBadBelow: 0.5,      // and red below this
  cameraListIntervalMs: 5000, // how often the console re-reads /api/cameras (disabled cameras)
  viewEventsLimit: 12,       // events in a camera view
  eventsLimit: 60,           // events on the events page
  eventsIntervalMs: 5000,    // how often open event lists refresh
});

const token = new URLSearchParams(window.location.search).get("token");
const tiles = new Map();
let latestState = null;
let snapshotTimer = null;
let disabledCameras = [];   // names of configured cameras that are switched off (from /api/cameras)
let cameraListTimer = null;
const cameraView = { name: null, entry: null, timer: null, intervalMs: null, eventsTimer: null };
let eventsTimer = null;

function withToken(path) {
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

function formatLatency(ms) {
  if (ms === null || ms === undefined) return "–";
  return formatNumber(ms, ms < 10 ? 1 : 0);
}

function formatDuration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

function field(root, name) {
  return root.querySelector(`[data-field="${name}"]`);
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

function cssColour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function drawSparkline(canvas, values, colour) {
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, width, height);
  const points = values.map((v, i) => [i, v]).filter(([, v]) => v !== null && v !== undefined);
  if (points.length < 2) return;
  const top = Math.max(...points.map(([, v]) => v)) * SETTINGS.chartHeadroom || 1;
  const step = width / Math.max(1, values.length - 1);
  const pad = 2 * ratio;
  const x = (i) => i * step;
  const y = (v) => height - pad - (v / top) * (height - 2 * pad);
  context.beginPath();
  points.forEach(([i, v], n) => (n ? context.lineTo(x(i), y(v)) : context.moveTo(x(i), y(v))));
  context.lineWidth = 2.5 * ratio;
  context.strokeStyle = colour;
  context.lineJoin = "round";
  context.stroke();
  context.lineTo(x(points[points.length - 1][0]), height);
  context.lineTo(x(points[0][0]), height);
  context.closePath();
  context.globalAlpha = 0.18;
  context.fillStyle = colour;
  context.fill();
  context.globalAlpha = 1;
  const [lastI, lastV] = points[points.length - 1];
  context.beginPath();
  context.arc(x(lastI), y(lastV), 3.5 * ratio, 0, 2 * Math.PI);
  context.fill();
}

function createTile(camera) {
  const template = document.getElementById("tile-template");
  const tile = template.content.firstElementChild.cloneNode(true);
  tile.dataset.camera = camera.name;
  setText(field(tile, "name"), camera.name);
  tile.tabIndex = 0;
  tile.title = `open ${camera.name}`;
  const open = () => { window.location.hash = `#camera/${encodeURIComponent(camera.name)}`; };
  tile.addEventListener("click", open);
  tile.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
  document.getElementById("cameras").appendChild(tile);
  const entry = { element: tile, objectUrl: null, loading: false, frameIndex: null };
  tiles.set(camera.name, entry);
  return entry;
}

function overlayText(camera) {
  switch (camera.status) {
    case "streaming":
      return null;
    case "backoff":
      return ["RECONNECTING", camera.detail || "stream lost"];
    case "failed":
      return ["FAILED", camera.detail || "cannot open the stream"];
    case "stalled":
      return ["STALLED", camera.detail || "no frames"];
    case "degraded":
      return ["DEGRADED", camera.detail || "frames not processed"];
    case "connecting":
      return ["CONNECTING…", camera.reconnects ? `reconnect #${camera.reconnects}` : ""];
    case "finished":
      return ["FINISHED", "end of file"];
    default:
      return [camera.status.toUpperCase(), ""];
  }
}

function renderCounts(box, analytics) {
  // Occupancy per zone and crossings per line and direction, as chips.
  const chips = [];
  const zones = (analytics && analytics.zones) || {};
  const lines = (analytics && analytics.lines) || {};
  for (const [zone, figures] of Object.entries(zones)) {
    const chip = document.createElement("span");
    chip.className = "chip zone";
    chip.dataset.zone = zone;
    chip.textContent = `${zone}: ${formatNumber(figures.occupancy)} inside`;
    chips.push(chip);
  }
  for (const [line, directions] of Object.entries(lines)) {
    const chip = document.createElement("span");
    chip.className = "chip line";
    chip.dataset.line = line;
    const counts = Object.entries(directions).map(([d, n]) => `${d} ${formatNumber(n)}`);
    chip.textContent = `${line}: ${counts.join(" · ")}`;
    chips.push(chip);
  }
  const text = chips.map((c) => c.textContent).join("|");
  if (box.dataset.text === text) return;
  box.dataset.text = text;
  box.replaceChildren(...chips);
}

function renderTile(camera) {
  const entry = tiles.get(camera.name) || createTile(camera);
  const tile = entry.element;
  tile.dataset.status = camera.status;
  setText(field(tile, "status"), camera.status);
  setText(field(tile, "fps"), formatNumber(camera.processed_fps, 1));
  setText(field(tile, "latency"), formatLatency(camera.latency_ms));
  setText(field(tile, "decoded_fps"), formatNumber(camera.decoded_fps, 1));
  setText(field(tile, "tracks"), formatNumber(camera.tracks));
  setText(field(tile, "dropped"), formatNumber(camera.dropped));
  setText(field(tile, "skipped"), formatNumber(camera.skipped));
  // Motion gating: frames left out of detection, and the moving share of the latest frame.
  setText(
    field(tile, "gated"),
    camera.motion_gated
      ? `${formatNumber(camera.gated)} (${(camera.motion_area * 100).toFixed(1)}% moving)`
      : "off",
  );
  setText(field(tile, "reconnects"), formatNumber(camera.reconnects));
  const quality = field(tile, "quality");
  setText(quality, `${formatNumber(camera.quality * 100)}%`);
  quality.classList.toggle("bad", camera.quality < SETTINGS.qualityBadBelow);
  quality.classList.toggle(
    "warn", camera.quality >= SETTINGS.qualityBadBelow && camera.quality < SETTINGS.qualityWarnBelow,
  );
  setText(field(tile, "source"), camera.source);
  field(tile, "source").title = camera.source;
  const overlay = field(tile, "overlay");
  const message = overlayText(camera);
  overlay.classList.toggle("shown", message !== null);
  if (message) {
    const [headline, detail] = message;
    overlay.replaceChildren(document.createTextNode(headline));
    if (detail) {
      const small = document.createElement("small");
      small.textContent = detail;
      overlay.appendChild(small);
    }
  }
  renderCounts(field(tile, "analytics"), camera.analytics);
  drawSparkline(tile.querySelector('[data-chart="fps"]'), camera.history.fps, cssColour("--fps"));
  drawSparkline(
    tile.querySelector('[data-chart="latency"]'), camera.history.latency_ms, cssColour("--latency"),
  );
}

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function batchBars(executions) {
  const td = document.createElement("td");
  td.className = "batches-cell";
  const sizes = Object.keys(executions);
  if (!sizes.length) {
    td.textContent = "–";
    return td;
  }
  const box = document.createElement("div");
  box.className = "batches";
  const most = Math.max(...Object.values(executions));
  for (const size of sizes) {
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.setProperty("height", `${Math.max(6, (100 * executions[size]) / most)}%`);
    bar.title = `batch ${size}: ${executions[size]} executions`;
    const label = document.createElement("span");
    label.textContent = size;
    bar.appendChild(label);
    box.appendChild(bar);
  }
  td.appendChild(box);
  return td;
}

function renderModels(models) {
  const body = document.querySelector("#models tbody");
  const rows = models.map((model) => {
    const tr = document.createElement("tr");
    tr.dataset.model = model.name;
    tr.append(
      cell(model.name),
      cell(formatNumber(model.requests_per_s, 1), "num"),
      cell(formatNumber(model.failures), "num"),
      cell(model.recent_batch === null ? "–" : formatNumber(model.recent_batch, 2), "num"),
      batchBars(model.batch_executions),
      cell(formatLatency(model.queue_ms), "num"),
      cell(formatLatency(model.compute_ms), "num"),
    );
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.appendChild(cell("starting…", "empty"));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function renderSinks(sinks) {
  const body = document.querySelector("#sinks tbody");
  const rows = sinks.map((sink) => {
    const tr = document.createElement("tr");
    tr.dataset.sink = sink.name;
    const state = cell(sink.connected ? "connected" : "disconnected", "pill");
    state.classList.add(sink.connected ? "up" : "down");
    tr.append(
      cell(sink.name),
      state,
      cell(formatNumber(sink.published), "num"),
      cell(formatNumber(sink.buffered), "num"),
      cell(formatNumber(sink.dropped), "num"),
      cell(formatNumber(sink.errors), "num"),
    );
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.appendChild(cell("no sinks configured", "empty"));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
}

function renderSummary(state) {
  const online = state.cameras.filter((c) => c.status === "streaming").length;
  const fps = state.cameras.reduce((sum, c) => sum + c.processed_fps, 0);
  const summary = document.getElementById("summary");
  summary.replaceChildren();
  const parts = [
    [`${state.cameras.length}`, " cameras · "],
    [`${online}`, " streaming · "],
    [formatNumber(fps, 1), " fps processed · up "],
    [formatDuration(state.uptime_s), ""],
  ];
  const inference = state.inference;
  if (inference && !inference.up) {
    const since = inference.down_for_s === null ? "" : ` for ${formatDuration(inference.down_for_s)}`;
    parts.push([" · INFERENCE DOWN", `${since}${inference.problem ? `: ${inference.problem}` : ""}`]);
  } else if (inference && inference.restarts) {
    parts.push([` · ${inference.restarts}`, " inference server restarts"]);
  }
  for (const part of state.parts || []) {
    if (part.state !== "ok") {
      parts.push([` · ${part.name.toUpperCase()} ${part.state.toUpperCase()}`, `: ${part.problem || ""}`]);
    }
  }
  for (const [strong, rest] of parts) {
    const b = document.createElement("b");
    b.textContent = strong;
    summary.append(b, document.createTextNode(rest));
  }
}

function layout(count) {
  const byWidth = Math.max(1, Math.floor(window.innerWidth / SETTINGS.minTileWidthPx));
  const wanted = Math.min(SETTINGS.maxColumns, Math.ceil(Math.sqrt(count)) || 1);
  const columns = Math.max(1, Math.min(wanted, byWidth));
  document.getElementById("cameras").style.setProperty("--columns", String(columns));
}

function renderDisabledTile(name) {
  const entry = tiles.get(name) || createTile({ name });
  const tile = entry.element;
  tile.dataset.status = "disabled";
  setText(field(tile, "status"), "disabled");
  const overlay = field(tile, "overlay");
  overlay.classList.add("shown");
  overlay.replaceChildren(document.createTextNode("DISABLED"));
  setText(field(tile, "fps"), "–");
}

function removeGoneTiles(cameras) {
  // Cameras come and go at runtime (the camera API, a reload): a removed camera's tile goes too.
  const present = new Set([...cameras.map((camera) => camera.name), ...disabledCameras]);
  for (const [name, entry] of tiles) {
    if (present.has(name)) continue;
    if (entry.objectUrl) URL.revokeObjectURL(entry.objectUrl);
    entry.element.remove();
    tiles.delete(name);
  }
}

function render(state) {
  latestState = state;
  const live = new Set(state.cameras.map((camera) => camera.name));
  const disabled = disabledCameras.filter((name) => !live.has(name));
  layout(state.cameras.length + disabled.length);
  renderSummary(state);
  removeGoneTiles(state.cameras);
  state.cameras.forEach(renderTile);
  disabled.forEach(renderDisabledTile);
  renderModels(state.models);
  renderSinks(state.sinks);
  scheduleSnapshots(state.live_view_interval_s);
  renderConsole(state);
}

async function refreshSnapshot(name, entry) {
  if (entry.loading) return;
  entry.loading = true;
  try {
    const response = await fetch(withToken(`api/live-view/${encodeURIComponent(name)}`), {
      cache: "no-store",
    });
    if (response.status !== 200) return; // 204: nothing kept yet; it follows shortly
    const frameIndex = response.headers.get("X-Frame-Index");
    if (frameIndex !== null && frameIndex === entry.frameIndex) return;
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const image = field(entry.element, "snapshot");
    image.src = url;
    image.alt = `latest frame of ${name}`;
    if (entry.objectUrl) URL.revokeObjectURL(entry.objectUrl);
    entry.objectUrl = url;
    entry.frameIndex = frameIndex;
  } catch (error) {
    // Network hiccup: the next tick tries again.
  } finally {
    entry.loading = false;
  }
}

function refreshSnapshots() {
  if (document.hidden || !latestState) return; // nobody watching: the server stops keeping images
  if (document.getElementById("overview").hidden) return; // another page: tiles not shown
  for (const [name, entry] of tiles) {
    if (entry.element.dataset.status !== "disabled") refreshSnapshot(name, entry);
  }
}

function scheduleSnapshots(intervalS) {
  if (snapshotTimer !== null) return;
  refreshSnapshots();
  snapshotTimer = window.setInterval(refreshSnapshots, Math.max(250, intervalS * 1000));
}

function setConnection(state, text) {
  const badge = document.getElementById("connection");
  badge.dataset.state = state;
  setText(badge, text);
}

function connect() {
  const source = new EventSource(withToken("api/live"));
  source.onopen = () => setConnection("live", "live");
  source.onmessage = (event) => {
    setConnection("live", "live");
    render(JSON.parse(event.data));
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setConnection("lost", "disconnected");
      window.setTimeout(connect, SETTINGS.reconnectDelayMs);
    } else {
      setConnection("connecting", "reconnecting…");
    }
  };
}

// -- console: calls to the camera API ------------------------------------------------------------

function authHeaders(json) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json) headers["Content-Type"] = "application/json";
  return headers;
}

async function api(method, path, body) {
  // JSON in and out: {ok, status, body, error}; error is the API's one-line message.
  let response;
  try {
    response = await fetch(path, {
      method,
      cache: "no-store",
      headers: authHeaders(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    return { ok: false, status: 0, body: null, error: "the service did not answer (network error)" };
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (error) {
    parsed = null;
  }
  const message = response.ok
    ? null
    : (parsed && parsed.error) || text.trim() || `HTTP ${response.status}`;
  return { ok: response.ok, status: response.status, body: parsed, error: message };
}

function mutationsAllowed() {
  return Boolean(latestState && latestState.api && latestState.api.mutations);
}

function showError(element, message) {
  element.hidden = !message;
  setText(element, message || "");
}

function showOverlay(overlay, message) {
  overlay.classList.toggle("shown", message !== null);
  if (!message) return;
  const [headline, detail] = message;
  overlay.replaceChildren(document.createTextNode(headline));
  if (detail) {
    const small = document.createElement("small");
    small.textContent = detail;
    overlay.appendChild(small);
  }
}

async function refreshCameraList() {
  const answer = await api("GET", "api/cameras");
  if (!answer.ok || !answer.body) return;
  const names = answer.body.cameras.filter((c) => c.state === "disabled").map((c) => c.name);
  disabledCameras = names;
  if (latestState) render(latestState);
}

function renderConsole(state) {
  const mutations = mutationsAllowed();
  document.getElementById("add-camera-open").hidden = !mutations;
  if (!mutations) document.getElementById("add-camera").hidden = true;
  document.getElementById("events-link").hidden = !state.events_enabled;
  if (mutations && cameraListTimer === null) {
    refreshCameraList();
    cameraListTimer = window.setInterval(refreshCameraList, SETTINGS.cameraListIntervalMs);
  }
  if (cameraView.name !== null) {
    renderCameraView();
    if (!cameraView.eventsShown) refreshViewEvents();
  }
  updateEventFilters(state);
}

// -- console: events (camera view and events page) ---------------------------------------------

const EVENTS_NEED_SNAPSHOTS =
  "Event history needs snapshots.enabled: true in the config (it keeps the events and their pictures).";

function describeEvent(event) {
  switch (event.type) {
    case "zone_enter":
      return `entered ${event.zone}`;
    case "zone_exit":
      return `left ${event.zone}${event.dwell_s == null ? "" : ` after ${formatDuration(event.dwell_s)}`}`;
    case "loitering":
      return `loitering in ${event.zone}`;
    case "line_cross":
      return `crossed ${event.line} (${event.direction})`;
    case "new":
      return "track started";
    case "end":
      return "track ended";
    default:
      return event.type;
  }
}

function renderEvents(box, events, message) {
  const key = message || events.map((event) => `${event.id}:${event.snapshot_id}`).join(",");
  if (box.dataset.key === key) return;
  box.dataset.key = key;
  if (message) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = message;
    box.replaceChildren(p);
    return;
  }
  const template = document.getElementById("event-template");
  const figures = events.map((event) => {
    const figure = template.content.firstElementChild.cloneNode(true);
    figure.dataset.type = event.type;
    figure.dataset.camera = event.camera;
    if (event.zone) figure.dataset.zone = event.zone;
    if (event.line) figure.dataset.line = event.line;
    const link = field(figure, "link");
    const thumb = field(figure, "thumb");
    if (event.snapshot_id) {
      thumb.src = withToken(`api/snapshots/${encodeURIComponent(event.snapshot_id)}.jpg`);
      thumb.alt = `${describeEvent(event)}, track ${event.track_id}`;
      link.href = withToken(`api/snapshots/${encodeURIComponent(event.snapshot_id)}-frame.jpg`);
      link.title = "the whole frame";
    } else {
      figure.classList.add("no-picture");
      link.replaceChildren(document.createTextNode("no picture"));
    }
    setText(field(figure, "what"), describeEvent(event));
    setText(field(figure, "where"), `${event.camera} · #${event.track_id}`);
    const when = field(figure, "when");
    const date = new Date(event.capture_ts * 1000);
    when.dateTime = date.toISOString();
    setText(when, date.toLocaleTimeString());
    return figure;
  });
  box.replaceChildren(...figures);
}

async function loadEvents(box, query, current) {
  // `current()` tells whether the answer is still wanted (the filters or the view may change).
  if (latestState && !latestState.events_enabled) {
    renderEvents(box, [], EVENTS_NEED_SNAPSHOTS);
    return true;
  }
  const answer = await api("GET", `api/events?${query}`);
  if (!current()) return false;
  if (!answer.ok) {
    renderEvents(box, [], answer.status === 404 ? EVENTS_NEED_SNAPSHOTS : `events unavailable: ${answer.error}`);
    return true;
  }
  const events = answer.body.events;
  renderEvents(box, events, events.length ? null : "no events yet");
  return true;
}

function eventsQuery() {
  const form = document.getElementById("event-filters");
  const params = new URLSearchParams({ limit: String(SETTINGS.eventsLimit) });
  for (const name of ["camera", "zone", "line", "type"]) {
    const value = form.elements[name].value;
    if (value) params.set(name, value);
  }
  return params.toString();
}

async function refreshEventsPage() {
  const query = eventsQuery();
  await loadEvents(document.getElementById("events-list"), query, () => eventsQuery() === query);
}

function openEventsPage() {
  if (eventsTimer !== null) return;
  refreshEventsPage();
  eventsTimer = window.setInterval(refreshEventsPage, SETTINGS.eventsIntervalMs);
}

function closeEventsPage() {
  if (eventsTimer === null) return;
  window.clearInterval(eventsTimer);
  eventsTimer = null;
}

function fillSelect(select, values) {
  const wanted = ["", ...values];
  const present = [...select.options].map((option) => option.value);
  if (wanted.join("\n") === present.join("\n")) return;
  const selected = select.value;
  select.replaceChildren(...wanted.map((value) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = value || "all";
    return option;
  }));
  select.value = wanted.includes(selected) ? selected : "";
}

function updateEventFilters(state) {
  const form = document.getElementById("event-filters");
  const zones = new Set();
  const lines = new Set();
  for (const camera of state.cameras) {
    Object.keys(camera.analytics.zones).forEach((zone) => zones.add(zone));
    Object.keys(camera.analytics.lines).forEach((line) => lines.add(line));
  }
  const cameras = [...state.cameras.map((camera) => camera.name), ...disabledCameras];
  fillSelect(form.elements.camera, [...new Set(cameras)].sort());
  fillSelect(form.elements.zone, [...zones].sort());
  fillSelect(form.elements.line, [...lines].sort());
}

// -- console: the camera view -----------------------------------------------------------------

function viewElement() {
  return document.getElementById("camera-view");
}

function currentCamera() {
  if (!latestState) return undefined;
  return latestState.cameras.find((camera) => camera.name === cameraView.name);
}

function viewStatus(camera) {
  if (camera) return camera.status;
  if (disabledCameras.includes(cameraView.name)) return "disabled";
  return latestState ? "not running" : "connecting";
}

function renderHistory(list, history) {
  const key = history.map((change) => `${change.time}:${change.status}`).join(",");
  if (list.dataset.key === key && list.childElementCount) return;
  list.dataset.key = key;
  const items = history.slice().reverse().map((change) => {
    const item = document.createElement("li");
    item.dataset.status = change.status;
    const time = document.createElement("time");
    time.textContent = new Date(change.time * 1000).toLocaleTimeString();
    const status = document.createElement("b");
    status.textContent = change.status;
    item.append(time, " ", status);
    if (change.detail) {
      const detail = document.createElement("small");
      detail.textContent = change.detail;
      item.append(" ", detail);
    }
    return item;
  });
  fillList(list, items, "no state reported yet");
}

// The list's items, or one greyed line saying why there are none.
function fillList(list, items, emptyText) {
  if (!items.length) {
    const item = document.createElement("li");
    item.className = "empty";
    item.textContent = emptyText;
    items.push(item);
  }
  list.replaceChildren(...items);
}

function renderCameraView() {
  const view = viewElement();
  const camera = currentCamera();
  const status = viewStatus(camera);
  view.dataset.status = status;
  setText(field(view, "status"), status);
  setText(field(view, "fps"), camera ? formatNumber(camera.processed_fps, 1) : "–");
  setText(field(view, "latency"), camera ? formatLatency(camera.latency_ms) : "–");
  setText(field(view, "tracks"), camera ? formatNumber(camera.tracks) : "–");
  setText(field(view, "source"), camera ? camera.source : "");
  renderCounts(field(view, "analytics"), camera ? camera.analytics : null);
  showOverlay(
    field(view, "overlay"),
    camera
      ? overlayText(camera)
      : [status.toUpperCase(), status === "disabled" ? "switched off: enable it to start" : ""],
  );
  renderHistory(field(view, "history"), camera ? camera.state_history : []);
  const controls = field(view, "controls");
  controls.hidden = !mutationsAllowed() || status === "not running";
  setText(controls.querySelector('[data-action="toggle"]'), status === "disabled" ? "Enable" : "Disable");
}

function viewSnapshotIntervalMs() {
  // The processed rate, capped by the server's snapshot rate (dashboard.live_view_max_fps).
  const floorS = latestState ? latestState.live_view_interval_s : 1;
  const camera = currentCamera();
  const frameS = camera && camera.processed_fps > 0 ? 1 / camera.processed_fps : floorS;
  return Math.max(floorS, frameS) * 1000;
}

async function viewSnapshotLoop() {
  const name = cameraView.name;
  if (name === null) return;
  if (!document.hidden && currentCamera()) await refreshSnapshot(name, cameraView.entry);
  if (cameraView.name !== name) return;
  cameraView.timer = window.setTimeout(viewSnapshotLoop, viewSnapshotIntervalMs());
}

async function refreshViewEvents() {
  const name = cameraView.name;
  if (name === null || !latestState) return;
  const query = new URLSearchParams({ camera: name, limit: String(SETTINGS.viewEventsLimit) });
  const shown = await loadEvents(field(viewElement(), "events"), query.toString(),
    () => cameraView.name === name);
  if (shown && cameraView.name === name) cameraView.eventsShown = true;
}

function openCameraView(name) {
  if (cameraView.name === name) return;
  closeCameraView();
  const view = viewElement();
  cameraView.name = name;
  cameraView.entry = { element: view, objectUrl: null, loading: false, frameIndex: null };
  cameraView.eventsShown = false;
  setText(field(view, "name"), name);
  field(view, "snapshot").removeAttribute("src");
  field(view, "edit-form").hidden = true;
  closeGeometryEditor();
  showError(field(view, "control-error"), null);
  const events = field(view, "events");
  events.replaceChildren();
  delete events.dataset.key;
  renderCameraView();
  viewSnapshotLoop();
  refreshViewEvents();
  cameraView.eventsTimer = window.setInterval(refreshViewEvents, SETTINGS.eventsIntervalMs);
  window.scrollTo(0, 0);
}

function closeCameraView() {
  if (cameraView.name === null) return;
  window.clearTimeout(cameraView.timer);
  window.clearInterval(cameraView.eventsTimer);
  if (cameraView.entry.objectUrl) URL.revokeObjectURL(cameraView.entry.objectUrl);
  Object.assign(cameraView, { name: null, entry: null, timer: null, eventsTimer: null });
  refreshSnapshots(); // the tiles' pictures resume at once
}

function cameraPath(name) {
  return `api/cameras/${encodeURIComponent(name)}`;
}

async function toggleCamera() {
  const name = cameraView.name;
  const enable = viewStatus(currentCamera()) === "disabled";
  const answer = await api("PATCH", cameraPath(name), { enabled: enable });
  showError(field(viewElement(), "control-error"), answer.ok ? null : answer.error);
  await refreshCameraList();
}

async function removeCamera() {
  const name = cameraView.name;
  if (!window.confirm(`Remove camera "${name}"? Its tracks end and it leaves the config file.`)) return;
  const answer = await api("DELETE", cameraPath(name));
  if (!answer.ok) {
    showError(field(viewElement(), "control-error"), answer.error);
    return;
  }
  await refreshCameraList();
  window.location.hash = "";
}

async function openEditForm() {
  const view = viewElement();
  const form = field(view, "edit-form");
  const answer = await api("GET", cameraPath(cameraView.name));
  if (!answer.ok) {
    showError(field(view, "control-error"), answer.error);
    return;
  }
  const config = answer.body.config;
  cameraView.editing = config;
  form.elements.url.value = config.url;
  form.elements.max_fps.value = config.max_fps === null ? "" : String(config.max_fps);
  form.elements.pacing.value = config.pacing;
  form.elements.loop.checked = config.loop;
  form.elements.enabled.checked = config.enabled;
  showError(field(form, "error"), null);
  form.hidden = false;
}

async function submitEdit(event) {
  event.preventDefault();
  const form = event.currentTarget;
  const original = cameraView.editing;
  const elements = form.elements;
  const maxFps = elements.max_fps.value.trim() === "" ? null : Number(elements.max_fps.value);
  const edited = {
    url: elements.url.value.trim(),
    max_fps: maxFps,
    pacing: elements.pacing.value,
    loop: elements.loop.checked,
    enabled: elements.enabled.checked,
  };
  // Only what changed: an untouched URL stays as configured (the form shows it redacted).
  const changes = Object.fromEntries(Object.entries(edited).filter(([key, value]) => value !== original[key]));
  if (Object.keys(changes).length) {
    const answer = await api("PATCH", cameraPath(cameraView.name), changes);
    if (!answer.ok) {
      showError(field(form, "error"), answer.error);
      return;
    }
  }
  form.hidden = true;
  await refreshCameraList();
}

function setupCameraView() {
  const view = viewElement();
  view.querySelector('[data-action="toggle"]').addEventListener("click", toggleCamera);
  view.querySelector('[data-action="remove"]').addEventListener("click", removeCamera);
  view.querySelector('[data-action="edit"]').addEventListener("click", openEditForm);
  const form = field(view, "edit-form");
  form.addEventListener("submit", submitEdit);
  view.querySelector('[data-action="cancel-edit"]').addEventListener("click", () => {
    form.hidden = true;
  });
}

// -- console: the zone and line editor ------------------------------------------------------------
// New shapes are stored in fractions of the frame (units: fraction), so they fit any resolution;
// shapes already configured go back unchanged. Saving sends both lists with PATCH.

const editor = { zones: [], lines: [], points: [], active: false };

function editorBox() {
  return field(viewElement(), "geometry-editor");
}

function shapeKind() {
  return editorBox().querySelector('[name="shape-kind"]:checked').value;
}

function pictureFraction(event) {
  // A click on the picture, as fractions of the frame (the image is letterboxed: object-fit).
  const image = field(viewElement(), "snapshot");
  const rect = image.getBoundingClientRect();
  if (!image.naturalWidth || !image.naturalHeight) return null;
  const scale = Math.min(rect.width / image.naturalWidth, rect.height / image.naturalHeight);
  const width = image.naturalWidth * scale;
  const height = image.naturalHeight * scale;
  const x = (event.clientX - rect.left - (rect.width - width) / 2) / width;
  const y = (event.clientY - rect.top - (rect.height - height) / 2) / height;
  if (x < 0 || x > 1 || y < 0 || y > 1) return null;
  return [Math.round(x * 10000) / 10000, Math.round(y * 10000) / 10000];
}

function drawEditor() {
  const canvas = field(viewElement(), "draw");
  const image = field(viewElement(), "snapshot");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  canvas.height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  if (!image.naturalWidth) return;
  const scale = Math.min(canvas.width / image.naturalWidth, canvas.height / image.naturalHeight);
  const width = image.naturalWidth * scale;
  const height = image.naturalHeight * scale;
  const left = (canvas.width - width) / 2;
  const top = (canvas.height - height) / 2;
  const at = ([x, y]) => [left + x * width, top + y * height];
  const path = (points, close, colour) => {
    if (!points.length) return;
    context.beginPath();
    points.map(at).forEach(([x, y], n) => (n ? context.lineTo(x, y) : context.moveTo(x, y)));
    if (close) context.closePath();
    context.lineWidth = 3 * ratio;
    context.strokeStyle = colour;
    context.stroke();
    for (const [x, y] of points.map(at)) {
      context.beginPath();
      context.arc(x, y, 4 * ratio, 0, 2 * Math.PI);
      context.fillStyle = colour;
      context.fill();
    }
  };
  for (const zone of editor.zones) if (zone.units === "fraction") path(zone.points, true, "#3cc8ff");
  for (const line of editor.lines) if (line.units === "fraction") path(line.points, false, "#ff3c3c");
  path(editor.points, false, "#ffffff");
}

function renderShapes() {
  const list = field(editorBox(), "shapes");
  const items = [
    ...editor.zones.map((shape) => ["zone", shape]),
    ...editor.lines.map((shape) => ["line", shape]),
  ].map(([kind, shape]) => {
    const item = document.createElement("li");
    item.dataset.kind = kind;
    item.dataset.name = shape.name;
    item.append(document.createTextNode(`${kind} ${shape.name} `));
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button small";
    remove.textContent = "remove";
    remove.addEventListener("click", () => {
      const key = kind === "zone" ? "zones" : "lines";
      editor[key] = editor[key].filter((other) => other !== shape);
      renderShapes();
    });
    item.appendChild(remove);
    return item;
  });
  fillList(list, items, "no zones or lines yet");
  const kind = shapeKind();
  field(editorBox(), "draw-hint").textContent = kind === "zone"
    ? `Zone: click its corners on the picture (${editor.points.length} so far, at least 3), then Finish zone.`
    : `Line: click its two ends, A then B (${editor.points.length} so far); crossing from left to right of A→B is the first direction ("in").`;
  editorBox().querySelector('[data-action="finish-shape"]').hidden = kind !== "zone";
  drawEditor();
}

function finishShape() {
  const box = editorBox();
  const error = field(box, "geometry-error");
  const nameInput = box.querySelector('[name="shape-name"]');
  const name = nameInput.value.trim();
  const kind = shapeKind();
  if (!name) {
    showError(error, `${kind}: give it a name first`);
    return;
  }
  const taken = [...editor.zones, ...editor.lines].some((shape) => shape.name === name);
  if (taken) {
    showError(error, `${kind} '${name}': that name is already used on this camera`);
    return;
  }
  if (kind === "zone") {
    if (editor.points.length < 3) {
      showError(error, "zone: click at least 3 corners on the picture");
      return;
    }
    editor.zones.push({ name, points: editor.points, units: "fraction" });
  } else {
    editor.lines.push({ name, points: editor.points.slice(0, 2), units: "fraction" });
  }
  editor.points = [];
  nameInput.value = "";
  showError(error, null);
  renderShapes();
}

function pictureClicked(event) {
  if (!editor.active) return;
  const point = pictureFraction(event);
  if (point === null) return;
  editor.points.push(point);
  if (shapeKind() === "line" && editor.points.length === 2) {
    finishShape();
    if (editor.points.length) editor.points = editor.points.slice(0, 1); // kept: fix the name
  }
  renderShapes();
}

async function openGeometryEditor() {
  const view = viewElement();
  const answer = await api("GET", cameraPath(cameraView.name));
  if (!answer.ok) {
    showError(field(view, "control-error"), answer.error);
    return;
  }
  Object.assign(editor, {
    zones: answer.body.config.zones || [],
    lines: answer.body.config.lines || [],
    points: [],
    active: true,
  });
  editorBox().hidden = false;
  field(view, "draw").hidden = false;
  showError(field(editorBox(), "geometry-error"), null);
  renderShapes();
}

function closeGeometryEditor() {
  editor.active = false;
  editor.points = [];
  editorBox().hidden = true;
  field(viewElement(), "draw").hidden = true;
}

async function saveGeometry() {
  const answer = await api("PATCH", cameraPath(cameraView.name), {
    zones: editor.zones,
    lines: editor.lines,
  });
  if (!answer.ok) {
    showError(field(editorBox(), "geometry-error"), answer.error);
    return;
  }
  closeGeometryEditor();
}

function setupGeometryEditor() {
  const view = viewElement();
  const box = editorBox();
  view.querySelector('[data-action="geometry"]').addEventListener("click", openGeometryEditor);
  field(view, "draw").addEventListener("click", pictureClicked);
  box.querySelector('[data-action="finish-shape"]').addEventListener("click", finishShape);
  box.querySelector('[data-action="clear-shape"]').addEventListener("click", () => {
    editor.points = [];
    renderShapes();
  });
  box.querySelector('[data-action="save-geometry"]').addEventListener("click", saveGeometry);
  box.querySelector('[data-action="cancel-geometry"]').addEventListener("click", closeGeometryEditor);
  for (const radio of box.querySelectorAll('[name="shape-kind"]')) {
    radio.addEventListener("change", () => {
      editor.points = [];
      renderShapes();
    });
  }
}

// -- console: adding a camera -------------------------------------------------------------------

function setupAddForm() {
  const panel = document.getElementById("add-camera");
  const form = document.getElementById("add-camera-form");
  const error = field(form, "error");
  document.getElementById("add-camera-open").addEventListener("click", () => {
    panel.hidden = false;
    form.elements.name.focus();
  });
  form.querySelector('[data-action="cancel"]').addEventListener("click", () => {
    panel.hidden = true;
    showError(error, null);
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const elements = form.elements;
    const body = { name: elements.name.value.trim(), url: elements.url.value.trim() };
    if (elements.max_fps.value.trim() !== "") body.max_fps = Number(elements.max_fps.value);
    if (elements.loop.checked) body.loop = true;
    const submit = form.querySelector('[type="submit"]');
    submit.disabled = true;
    try {
      const answer = await api("POST", "api/cameras", body);
      if (!answer.ok) {
        showError(error, answer.error);
        return;
      }
      form.reset();
      showError(error, null);
      panel.hidden = true;
      await refreshCameraList();
    } finally {
      submit.disabled = false;
    }
  });
}

// -- console: pages ---------------------------------------------------------------------------

function route() {
  const hash = decodeURIComponent(window.location.hash.slice(1));
  const page = hash.startsWith("camera/") ? "camera" : hash === "events" ? "events" : "overview";
  document.getElementById("overview").hidden = page !== "overview";
  viewElement().hidden = page !== "camera";
  document.getElementById("events-page").hidden = page !== "events";
  for (const link of document.querySelectorAll(".nav-link")) {
    link.classList.toggle("current", link.dataset.page === page);
  }
  if (page === "camera") openCameraView(hash.slice("camera/".length));
  else closeCameraView();
  if (page === "events") openEventsPage();
  else closeEventsPage();
  if (page === "overview" && latestState) render(latestState); // tiles were not laid out while hidden
}

window.addEventListener("resize", () => latestState && render(latestState));
window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", refreshSnapshots);
document.getElementById("event-filters").addEventListener("change", refreshEventsPage);
setupAddForm();
setupCameraView();
setupGeometryEditor();
route();
connect();
