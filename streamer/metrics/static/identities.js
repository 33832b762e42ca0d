// Identities across cameras: the identities page (#identities: every identity with its tracks, and
// per camera pair the calibration and the links confirmed) and the camera view's identities. When
// the API accepts changes (state.api.mutations) each list offers the operator's corrections:
// confirm an identity, "not this person" for one of its tracks (reject), merge the selected
// identities, split the picked tracks off. The lists, their timers and selections are its own.
// An identity is shown as g<id>, the label the live view pictures carry.

import { api } from "./api.js";
import { field, formatNumber, setText, showError } from "./dom.js";
import { latestState, mutationsAllowed } from "./store.js";

const SETTINGS = Object.freeze({
  intervalMs: 3000,   // how often an open list is read again
  pageLimit: 100,     // identities on the identities page (newest first)
  viewLimit: 20,      // identities in a camera view
});

const lists = new Set(); // the open lists: {root, query, timer, selected, picked, key, onAnswer}

export function identitiesEnabled() {
  const state = latestState();
  return Boolean(state && state.identities_enabled);
}

function formatTime(seconds) {
  return new Date(seconds * 1000).toLocaleTimeString();
}

function trackKey(member) {
  return `${member.camera}#${member.track_id}`;
}

// -- building a list --------------------------------------------------------------------------

function buildList(root) {
  root.replaceChildren();
  const tools = document.createElement("div");
  tools.className = "identity-tools";
  tools.dataset.field = "identity-tools";
  const merge = document.createElement("button");
  merge.type = "button";
  merge.className = "button";
  merge.dataset.action = "merge";
  merge.textContent = "Merge selected";
  const hint = document.createElement("span");
  hint.className = "hint";
  hint.dataset.field = "merge-hint";
  tools.append(merge, hint);
  const error = document.createElement("p");
  error.className = "form-error";
  error.setAttribute("role", "alert");
  error.dataset.field = "identity-error";
  error.hidden = true;
  const cards = document.createElement("div");
  cards.className = "identity-cards";
  cards.dataset.field = "identity-cards";
  root.append(tools, error, cards);
}

export function openIdentityList(root, query, onAnswer = null) {
  closeIdentityList(root);
  buildList(root);
  const list = {
    root, query, onAnswer, timer: null, body: null, error: null,
    selected: new Set(), picked: new Map(), key: null,
  };
  lists.add(list);
  field(root, "identity-tools").querySelector('[data-action="merge"]')
    .addEventListener("click", () => mergeSelected(list));
  refreshList(list);
  list.timer = window.setInterval(() => refreshList(list), SETTINGS.intervalMs);
}

export function closeIdentityList(root) {
  for (const list of lists) {
    if (list.root !== root) continue;
    window.clearInterval(list.timer);
    lists.delete(list);
  }
}

async function refreshList(list) {
  const answer = await api("GET", `api/identities?${list.query}`);
  if (!lists.has(list)) return;
  list.body = answer.ok ? answer.body : null;
  list.error = answer.ok ? null : answer.error;
  redraw(list);
  if (answer.ok && list.onAnswer) list.onAnswer(answer.body);
}

function redraw(list) {
  renderList(list, list.body, list.error);
}

// Every open list reads the gallery again (after a decision: all of them may show it).
async function refreshAll() {
  await Promise.all([...lists].map(refreshList));
}

// -- drawing ----------------------------------------------------------------------------------

function renderList(list, body, error) {
  const mutations = mutationsAllowed();
  const identities = body ? body.identities : [];
  const key = JSON.stringify([error, mutations, identities, [...list.selected],
    [...list.picked].map(([id, tracks]) => [id, [...tracks]])]);
  if (key === list.key) return;
  list.key = key;
  const present = new Set(identities.map((identity) => identity.id));
  for (const id of [...list.selected]) if (!present.has(id)) list.selected.delete(id);
  for (const id of [...list.picked.keys()]) if (!present.has(id)) list.picked.delete(id);
  const cards = field(list.root, "identity-cards");
  if (error || !identities.length) {
    const p = document.createElement("p");
    p.className = "empty";
    p.textContent = error ? `identities unavailable: ${error}` : "no identities yet";
    cards.replaceChildren(p);
  } else {
    cards.replaceChildren(...identities.map((identity) => identityCard(list, identity, mutations)));
  }
  renderTools(list, mutations && identities.length > 1);
}

function renderTools(list, shown) {
  const tools = field(list.root, "identity-tools");
  tools.hidden = !shown;
  const count = list.selected.size;
  tools.querySelector('[data-action="merge"]').disabled = count < 2;
  setText(field(tools, "merge-hint"), count < 2
    ? "select two identities or more to merge them (one person)"
    : `${count} identities selected`);
}

function identityCard(list, identity, mutations) {
  const template = document.getElementById("identity-template");
  const card = template.content.firstElementChild.cloneNode(true);
  card.dataset.id = String(identity.id);
  card.dataset.confirmed = String(identity.confirmed);
  setText(field(card, "gid"), `g${identity.id}`);
  field(card, "confirmed").hidden = !identity.confirmed;
  const tracks = identity.members.length;
  const span = identity.first_seen === null
    ? ""
    : ` · ${formatTime(identity.first_seen)}–${formatTime(identity.last_seen)}`;
  setText(field(card, "summary"),
    `${identity.cameras.join(", ")} · ${formatNumber(tracks)} track${tracks === 1 ? "" : "s"}${span}`);

  const select = card.querySelector('[data-action="select"]');
  select.closest("label").hidden = !mutations;
  select.checked = list.selected.has(identity.id);
  select.addEventListener("change", () => {
    if (select.checked) list.selected.add(identity.id);
    else list.selected.delete(identity.id);
    redraw(list);
  });
  const confirm = card.querySelector('[data-action="confirm"]');
  confirm.hidden = !mutations || identity.confirmed;
  confirm.addEventListener("click", () => decide(list, confirm, "POST",
    `api/identities/${identity.id}/confirm`, {}));

  const picked = list.picked.get(identity.id) || new Set();
  const split = card.querySelector('[data-action="split"]');
  split.hidden = !mutations || picked.size === 0 || picked.size >= tracks;
  setText(split, `Split off ${picked.size} track${picked.size === 1 ? "" : "s"}`);
  split.addEventListener("click", () => {
    const chosen = identity.members.filter((member) => picked.has(trackKey(member)));
    decide(list, split, "POST", "api/identities/split", {
      id: identity.id,
      tracks: chosen.map((member) => ({ camera: member.camera, track_id: member.track_id })),
    }, () => list.picked.delete(identity.id));
  });

  const members = field(card, "members");
  members.replaceChildren(...identity.members.map((member) =>
    memberItem(list, identity, member, mutations && tracks > 1, picked)));
  return card;
}

function memberItem(list, identity, member, correctable, picked) {
  const item = document.createElement("li");
  item.dataset.camera = member.camera;
  item.dataset.track = String(member.track_id);
  const label = document.createElement("label");
  const pick = document.createElement("input");
  pick.type = "checkbox";
  pick.dataset.action = "pick";
  pick.setAttribute("aria-label", `pick ${member.camera} #${member.track_id} to split it off`);
  pick.hidden = !correctable;
  pick.checked = picked.has(trackKey(member));
  pick.addEventListener("change", () => {
    const tracks = list.picked.get(identity.id) || new Set();
    if (pick.checked) tracks.add(trackKey(member));
    else tracks.delete(trackKey(member));
    list.picked.set(identity.id, tracks);
    redraw(list);
  });
  const where = document.createElement("b");
  where.textContent = member.camera;
  label.append(pick, where, document.createTextNode(` #${member.track_id}`));
  const when = document.createElement("time");
  when.textContent = `${formatTime(member.first_seen)}–${formatTime(member.last_seen)}`;
  item.append(label, " ", when);
  if (member.active) {
    const live = document.createElement("span");
    live.className = "pill up";
    live.textContent = "on camera";
    item.append(" ", live);
  }
  if (correctable) {
    const reject = document.createElement("button");
    reject.type = "button";
    reject.className = "button small danger";
    reject.dataset.action = "reject";
    reject.textContent = "Not this person";
    reject.title = `${member.camera} #${member.track_id} is somebody else: it leaves g${identity.id} for good`;
    reject.addEventListener("click", () => decide(list, reject, "POST",
      `api/identities/${identity.id}/reject`, { camera: member.camera, track_id: member.track_id }));
    item.append(" ", reject);
  }
  return item;
}

// -- deciding ---------------------------------------------------------------------------------

async function decide(list, button, method, path, body, done = null) {
  button.disabled = true;
  const answer = await api(method, path, body);
  button.disabled = false;
  showError(field(list.root, "identity-error"), answer.ok ? null : answer.error);
  if (answer.ok && answer.body && answer.body.saved === false) {
    showError(field(list.root, "identity-error"),
      "decided, but not saved: it lasts until the service stops (see the service's log)");
  }
  if (answer.ok && done) done();
  list.key = null;
  await refreshAll();
}

function mergeSelected(list) {
  const button = field(list.root, "identity-tools").querySelector('[data-action="merge"]');
  const ids = [...list.selected];
  decide(list, button, "POST", "api/identities/merge", { ids }, () => list.selected.clear());
}

// -- the identities page ----------------------------------------------------------------------

function cell(text, className) {
  const td = document.createElement("td");
  if (className) td.className = className;
  td.textContent = text;
  return td;
}

function renderPairs(body) {
  const rows = body.pairs.map((pair) => {
    const tr = document.createElement("tr");
    tr.dataset.pair = pair.cameras.join("|");
    tr.append(
      cell(pair.cameras[0] === pair.cameras[1] ? pair.cameras[0] : pair.cameras.join(" ↔ ")),
      cell(formatNumber(pair.threshold, 2), "num"),
      cell(pair.source),
      cell(formatNumber(pair.negatives), "num"),
      cell(formatNumber(pair.confirmed), "num"),
      cell(formatNumber(pair.transits), "num"),
    );
    tr.children[4].dataset.field = "confirmed";
    return tr;
  });
  if (!rows.length) {
    const tr = document.createElement("tr");
    tr.appendChild(cell("nothing learned yet", "empty"));
    rows.push(tr);
  }
  document.querySelector("#identity-pairs tbody").replaceChildren(...rows);
  setText(document.getElementById("identity-total"), `${formatNumber(body.total)} identities held`);
}

export function openIdentitiesPage() {
  const root = document.getElementById("identity-list");
  if ([...lists].some((list) => list.root === root)) return;
  openIdentityList(root, `limit=${SETTINGS.pageLimit}`, renderPairs);
}

export function closeIdentitiesPage() {
  closeIdentityList(document.getElementById("identity-list"));
}

export function cameraIdentitiesQuery(camera) {
  return new URLSearchParams({ camera, limit: String(SETTINGS.viewLimit) }).toString();
}

export function renderIdentitiesPage() {
  document.getElementById("identities-link").hidden = !identitiesEnabled();
}
