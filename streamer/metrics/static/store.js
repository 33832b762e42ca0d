// The one state the pages share, on purpose: the latest /api/state (a ServiceState, see
// streamer/metrics/state.schema.json) and the configured cameras that are switched off. Pages read
// it here and hear of every change through subscribe(); nothing else is shared between them.

let state = null;
let disabled = []; // names of configured cameras that are switched off (from /api/cameras)
const listeners = [];

export function latestState() {
  return state;
}

export function disabledCameras() {
  return disabled;
}

// Whether the page offers camera controls: the camera API accepts changes.
export function mutationsAllowed() {
  return Boolean(state && state.api && state.api.mutations);
}

export function subscribe(listener) {
  listeners.push(listener);
}

export function publish(next) {
  state = next;
  notify();
}

export function setDisabledCameras(names) {
  disabled = names;
  notify();
}

// Everyone draws the latest state again (the window was resized, a page was shown).
export function notify() {
  if (state === null) return;
  for (const listener of listeners) listener(state);
}
