// What both camera pages draw (tiles and the camera view): the state overlay, zone and line chips,
// sparklines and the live view picture. No state of their own.

import { withToken } from "./api.js";
import { field, formatNumber } from "./dom.js";

const CHART_HEADROOM = 1.15; // sparkline scale above the highest point

export function overlayText(camera) {
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

export function renderCounts(box, analytics) {
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

export function drawSparkline(canvas, values, colour) {
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
  const top = Math.max(...points.map(([, v]) => v)) * CHART_HEADROOM || 1;
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

// One picture on the page and what was fetched into it.
export function pictureEntry(element) {
  return { element, objectUrl: null, loading: false, frameIndex: null };
}

export async function refreshPicture(name, entry) {
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
