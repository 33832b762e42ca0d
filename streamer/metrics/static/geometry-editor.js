// The zone and line editor of the camera view. New shapes are stored in fractions of the frame
// (units: fraction), so they fit any resolution; shapes already configured go back unchanged.
// Saving sends both lists with PATCH. What is being drawn is its own.

import { api, cameraPath } from "./api.js";
import { field, fillList, showError } from "./dom.js";

// camera: the one being edited; zones and lines: its shapes; points: the shape being drawn
const editor = { camera: null, zones: [], lines: [], points: [], active: false };

function viewElement() {
  return document.getElementById("camera-view");
}

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

export async function openGeometryEditor(camera) {
  const view = viewElement();
  const answer = await api("GET", cameraPath(camera));
  if (!answer.ok) {
    showError(field(view, "control-error"), answer.error);
    return;
  }
  Object.assign(editor, {
    camera,
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

export function closeGeometryEditor() {
  editor.active = false;
  editor.points = [];
  editorBox().hidden = true;
  field(viewElement(), "draw").hidden = true;
}

async function saveGeometry() {
  const answer = await api("PATCH", cameraPath(editor.camera), {
    zones: editor.zones,
    lines: editor.lines,
  });
  if (!answer.ok) {
    showError(field(editorBox(), "geometry-error"), answer.error);
    return;
  }
  closeGeometryEditor();
}

export function setupGeometryEditor() {
  const view = viewElement();
  const box = editorBox();
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
