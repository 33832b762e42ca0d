// The add-camera form, offered when the state says the camera API accepts changes.

import { api } from "./api.js";
import { refreshCameraList } from "./camera-list.js";
import { field, showError } from "./dom.js";
import { mutationsAllowed } from "./store.js";

export function renderAddCamera() {
  const mutations = mutationsAllowed();
  document.getElementById("add-camera-open").hidden = !mutations;
  if (!mutations) document.getElementById("add-camera").hidden = true;
}

export function setupAddForm() {
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
