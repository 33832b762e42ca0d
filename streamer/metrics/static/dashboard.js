// Live dashboard, the entry module: the header (summary, connection), the pages by address
// (#: the overview, #camera/NAME: the camera view, #events: the event pictures, #identities: who
// is who across cameras, with the operator's corrections) and the live state
// from server-sent events (/api/live) into the store, which every page follows. Plain DOM and
// canvas, ES modules without a build step: the machines are offline. Controls and the add form
// appear only when the state says the camera API accepts changes (state.api.mutations).

import { withToken } from "./api.js";
import { renderAddCamera, setupAddForm } from "./add-camera.js";
import { followCameraList } from "./camera-list.js";
import {
  closeCameraView, openCameraView, renderCameraViewPage, setupCameraView,
} from "./camera-view.js";
import { formatDuration, formatNumber, setText } from "./dom.js";
import { closeEventsPage, openEventsPage, renderEventsPage, setupEventsPage } from "./events.js";
import { closeIdentitiesPage, openIdentitiesPage, renderIdentitiesPage } from "./identities.js";
import { refreshPictures, renderOverview } from "./overview.js";
import { notify, publish, subscribe } from "./store.js";

const RECONNECT_DELAY_MS = 3000; // after the event stream closed for good (e.g. server restarted)

function renderSummary(state) {
  const online = state.cameras.filter((camera) => camera.status === "streaming").length;
  const fps = state.cameras.reduce((sum, camera) => sum + camera.processed_fps, 0);
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

function render(state) {
  renderOverview(state);
  renderSummary(state);
  renderAddCamera();
  followCameraList();
  renderCameraViewPage();
  renderEventsPage(state);
  renderIdentitiesPage();
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
    publish(JSON.parse(event.data));
  };
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      setConnection("lost", "disconnected");
      window.setTimeout(connect, RECONNECT_DELAY_MS);
    } else {
      setConnection("connecting", "reconnecting…");
    }
  };
}

function route() {
  const hash = decodeURIComponent(window.location.hash.slice(1));
  const page = hash.startsWith("camera/") ? "camera"
    : ["events", "identities"].includes(hash) ? hash : "overview";
  document.getElementById("overview").hidden = page !== "overview";
  document.getElementById("camera-view").hidden = page !== "camera";
  document.getElementById("events-page").hidden = page !== "events";
  document.getElementById("identities-page").hidden = page !== "identities";
  for (const link of document.querySelectorAll(".nav-link")) {
    link.classList.toggle("current", link.dataset.page === page);
  }
  if (page === "camera") openCameraView(hash.slice("camera/".length));
  else if (closeCameraView()) refreshPictures(); // the tiles' pictures resume at once
  if (page === "events") openEventsPage();
  else closeEventsPage();
  if (page === "identities") openIdentitiesPage();
  else closeIdentitiesPage();
  if (page === "overview") notify(); // tiles were not laid out while hidden
}

subscribe(render);
window.addEventListener("resize", notify);
window.addEventListener("hashchange", route);
document.addEventListener("visibilitychange", refreshPictures);
setupEventsPage();
setupAddForm();
setupCameraView();
route();
connect();
