// The camera view (#camera/NAME): large live view picture, figures, zone and line counts, state
// history, recent events and, when the state allows changes, the controls and the edit form. Which
// camera it shows, and its timers, are its own.

import { api, cameraPath } from "./api.js";
import { refreshCameraList } from "./camera-list.js";
import { field, fillList, formatLatency, formatNumber, setText, showError, showOverlay } from "./dom.js";
import { loadEvents } from "./events.js";
import { closeGeometryEditor, openGeometryEditor, setupGeometryEditor } from "./geometry-editor.js";
import { disabledCameras, latestState, mutationsAllowed } from "./store.js";
import { overlayText, pictureEntry, refreshPicture, renderCounts } from "./widgets.js";

const SETTINGS = Object.freeze({
  viewEventsLimit: 12,       // events in a camera view
  eventsIntervalMs: 5000,    // how often the events refresh
});

const cameraView = {
  name: null, entry: null, timer: null, eventsTimer: null, eventsShown: false, editing: null,
};

function viewElement() {
  return document.getElementById("camera-view");
}

function currentCamera() {
  const state = latestState();
  if (!state) return undefined;
  return state.cameras.find((camera) => camera.name === cameraView.name);
}

function viewStatus(camera) {
  if (camera) return camera.status;
  if (disabledCameras().includes(cameraView.name)) return "disabled";
  return latestState() ? "not running" : "connecting";
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
  const state = latestState();
  const floorS = state ? state.live_view_interval_s : 1;
  const camera = currentCamera();
  const frameS = camera && camera.processed_fps > 0 ? 1 / camera.processed_fps : floorS;
  return Math.max(floorS, frameS) * 1000;
}

async function viewSnapshotLoop() {
  const name = cameraView.name;
  if (name === null) return;
  if (!document.hidden && currentCamera()) await refreshPicture(name, cameraView.entry);
  if (cameraView.name !== name) return;
  cameraView.timer = window.setTimeout(viewSnapshotLoop, viewSnapshotIntervalMs());
}

async function refreshViewEvents() {
  const name = cameraView.name;
  if (name === null || !latestState()) return;
  const query = new URLSearchParams({ camera: name, limit: String(SETTINGS.viewEventsLimit) });
  const shown = await loadEvents(field(viewElement(), "events"), query.toString(),
    () => cameraView.name === name);
  if (shown && cameraView.name === name) cameraView.eventsShown = true;
}

export function openCameraView(name) {
  if (cameraView.name === name) return;
  closeCameraView();
  const view = viewElement();
  cameraView.name = name;
  cameraView.entry = pictureEntry(view);
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

// Whether a camera was shown (the overview's pictures then resume at once).
export function closeCameraView() {
  if (cameraView.name === null) return false;
  window.clearTimeout(cameraView.timer);
  window.clearInterval(cameraView.eventsTimer);
  if (cameraView.entry.objectUrl) URL.revokeObjectURL(cameraView.entry.objectUrl);
  Object.assign(cameraView, { name: null, entry: null, timer: null, eventsTimer: null });
  return true;
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

export function setupCameraView() {
  const view = viewElement();
  view.querySelector('[data-action="toggle"]').addEventListener("click", toggleCamera);
  view.querySelector('[data-action="remove"]').addEventListener("click", removeCamera);
  view.querySelector('[data-action="edit"]').addEventListener("click", openEditForm);
  view.querySelector('[data-action="geometry"]').addEventListener("click", () => {
    openGeometryEditor(cameraView.name);
  });
  const form = field(view, "edit-form");
  form.addEventListener("submit", submitEdit);
  view.querySelector('[data-action="cancel-edit"]').addEventListener("click", () => {
    form.hidden = true;
  });
  setupGeometryEditor();
}

export function renderCameraViewPage() {
  if (cameraView.name === null) return;
  renderCameraView();
  if (!cameraView.eventsShown) refreshViewEvents();
}
