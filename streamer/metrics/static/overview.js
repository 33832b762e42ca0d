// The overview page: one tile per camera (live view picture, figures, sparklines), the models and
// the sinks. Its tiles and picture timer are its own.

import { cssColour, field, formatLatency, formatNumber, setText, showOverlay } from "./dom.js";
import { disabledCameras, latestState } from "./store.js";
import { drawSparkline, overlayText, pictureEntry, refreshPicture, renderCounts } from "./widgets.js";

const SETTINGS = Object.freeze({
  maxColumns: 3,             // tiles per row on wide screens
  minTileWidthPx: 420,       // narrower screens get fewer columns
  qualityWarnBelow: 0.9,     // connection quality shown amber below this share
  qualityBadBelow: 0.5,      // and red below this
});

const tiles = new Map(); // camera name -> picture entry of its tile
let pictureTimer = null;

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
  const entry = pictureEntry(tile);
  tiles.set(camera.name, entry);
  return entry;
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
  showOverlay(field(tile, "overlay"), overlayText(camera));
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
    const pill = cell(sink.connected ? "connected" : "disconnected", "pill");
    pill.classList.add(sink.connected ? "up" : "down");
    tr.append(
      cell(sink.name),
      pill,
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
  const present = new Set([...cameras.map((camera) => camera.name), ...disabledCameras()]);
  for (const [name, entry] of tiles) {
    if (present.has(name)) continue;
    if (entry.objectUrl) URL.revokeObjectURL(entry.objectUrl);
    entry.element.remove();
    tiles.delete(name);
  }
}

export function renderOverview(state) {
  const live = new Set(state.cameras.map((camera) => camera.name));
  const disabled = disabledCameras().filter((name) => !live.has(name));
  layout(state.cameras.length + disabled.length);
  removeGoneTiles(state.cameras);
  state.cameras.forEach(renderTile);
  disabled.forEach(renderDisabledTile);
  renderModels(state.models);
  renderSinks(state.sinks);
  schedulePictures(state.live_view_interval_s);
}

export function refreshPictures() {
  if (document.hidden || !latestState()) return; // nobody watching: the server stops keeping images
  if (document.getElementById("overview").hidden) return; // another page: tiles not shown
  for (const [name, entry] of tiles) {
    if (entry.element.dataset.status !== "disabled") refreshPicture(name, entry);
  }
}

function schedulePictures(intervalS) {
  if (pictureTimer !== null) return;
  refreshPictures();
  pictureTimer = window.setInterval(refreshPictures, Math.max(250, intervalS * 1000));
}
