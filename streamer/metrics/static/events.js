// Event lists with their pictures: the events page (#events, with filters) and the camera view's
// recent events. Its refresh timer is its own.

import { api, withToken } from "./api.js";
import { field, formatDuration, setText } from "./dom.js";
import { disabledCameras, latestState } from "./store.js";

const SETTINGS = Object.freeze({
  eventsLimit: 60,           // events on the events page
  eventsIntervalMs: 5000,    // how often open event lists refresh
});

const EVENTS_NEED_SNAPSHOTS =
  "Event history needs snapshots.enabled: true in the config (it keeps the events and their pictures).";

let eventsTimer = null;

// What the list says about an event: the server's summary (made by the event's type) when the
// answer carries one, else the page's own words per type. The only place that picks.
function eventText(event) {
  if (typeof event.summary === "string" && event.summary) return event.summary;
  return textByType(event);
}

// Words for servers that send no summary yet; goes once every event type brings its own.
function textByType(event) {
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
      thumb.alt = `${eventText(event)}, track ${event.track_id}`;
      link.href = withToken(`api/snapshots/${encodeURIComponent(event.snapshot_id)}-frame.jpg`);
      link.title = "the whole frame";
    } else {
      figure.classList.add("no-picture");
      link.replaceChildren(document.createTextNode("no picture"));
    }
    setText(field(figure, "what"), eventText(event));
    setText(field(figure, "where"), `${event.camera} · #${event.track_id}`);
    const when = field(figure, "when");
    const date = new Date(event.capture_ts * 1000);
    when.dateTime = date.toISOString();
    setText(when, date.toLocaleTimeString());
    return figure;
  });
  box.replaceChildren(...figures);
}

export async function loadEvents(box, query, current) {
  // `current()` tells whether the answer is still wanted (the filters or the view may change).
  const state = latestState();
  if (state && !state.events_enabled) {
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

export function openEventsPage() {
  if (eventsTimer !== null) return;
  refreshEventsPage();
  eventsTimer = window.setInterval(refreshEventsPage, SETTINGS.eventsIntervalMs);
}

export function closeEventsPage() {
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
  const cameras = [...state.cameras.map((camera) => camera.name), ...disabledCameras()];
  fillSelect(form.elements.camera, [...new Set(cameras)].sort());
  fillSelect(form.elements.zone, [...zones].sort());
  fillSelect(form.elements.line, [...lines].sort());
}

export function renderEventsPage(state) {
  document.getElementById("events-link").hidden = !state.events_enabled;
  updateEventFilters(state);
}

export function setupEventsPage() {
  document.getElementById("event-filters").addEventListener("change", refreshEventsPage);
}
