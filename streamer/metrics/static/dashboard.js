// Live dashboard: one tile per camera, fed by server-sent events (/api/live); snapshots are
// fetched per camera while the page is visible. Plain DOM and canvas: the machines are offline.
"use strict";

const SETTINGS = Object.freeze({
  reconnectDelayMs: 3000,    // after the event stream closed for good (e.g. server restarted)
  maxColumns: 3,             // tiles per row on wide screens
  minTileWidthPx: 420,       // narrower screens get fewer columns
  chartHeadroom: 1.15,       // sparkline scale above the highest point
  qualityWarnBelow: 0.9,     // connection quality shown amber below this share
  qualityBadBelow: 0.5,      // and red below this
});

const token = new URLSearchParams(window.location.search).get("token");
const tiles = new Map();
let latestState = null;
let snapshotTimer = null;

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
    parts.push([" · INFERENCE SERVER DOWN", since]);
  } else if (inference && inference.restarts) {
    parts.push([` · ${inference.restarts}`, " inference server restarts"]);
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

function removeGoneTiles(cameras) {
  // Cameras come and go at runtime (the camera API, a reload): a removed camera's tile goes too.
  const present = new Set(cameras.map((camera) => camera.name));
  for (const [name, entry] of tiles) {
    if (present.has(name)) continue;
    if (entry.objectUrl) URL.revokeObjectURL(entry.objectUrl);
    entry.element.remove();
    tiles.delete(name);
  }
}

function render(state) {
  latestState = state;
  layout(state.cameras.length);
  renderSummary(state);
  removeGoneTiles(state.cameras);
  state.cameras.forEach(renderTile);
  renderModels(state.models);
  renderSinks(state.sinks);
  scheduleSnapshots(state.snapshot_interval_s);
}

async function refreshSnapshot(name, entry) {
  if (entry.loading) return;
  entry.loading = true;
  try {
    const response = await fetch(withToken(`api/snapshot/${encodeURIComponent(name)}`), {
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
  for (const [name, entry] of tiles) refreshSnapshot(name, entry);
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

window.addEventListener("resize", () => latestState && render(latestState));
document.addEventListener("visibilitychange", refreshSnapshots);
connect();
