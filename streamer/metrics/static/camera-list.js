// The configured cameras that are switched off: they have no figures in the state, so the pages
// learn of them from /api/cameras, polled while the page may change cameras.

import { api } from "./api.js";
import { mutationsAllowed, setDisabledCameras } from "./store.js";

const INTERVAL_MS = 5000; // how often /api/cameras is read again

let timer = null;

export async function refreshCameraList() {
  const answer = await api("GET", "api/cameras");
  if (!answer.ok || !answer.body) return;
  setDisabledCameras(answer.body.cameras.filter((c) => c.state === "disabled").map((c) => c.name));
}

export function followCameraList() {
  if (!mutationsAllowed() || timer !== null) return;
  refreshCameraList();
  timer = window.setInterval(refreshCameraList, INTERVAL_MS);
}
