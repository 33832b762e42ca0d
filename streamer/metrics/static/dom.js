// Formatting and small DOM helpers every page uses; no state.

export function formatNumber(value, digits = 0) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  return Number(value).toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

export function formatLatency(ms) {
  if (ms === null || ms === undefined) return "–";
  return formatNumber(ms, ms < 10 ? 1 : 0);
}

export function formatDuration(seconds) {
  const s = Math.floor(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${s % 60}s`;
  return `${s}s`;
}

export function field(root, name) {
  return root.querySelector(`[data-field="${name}"]`);
}

export function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

export function cssColour(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

export function showError(element, message) {
  element.hidden = !message;
  setText(element, message || "");
}

export function showOverlay(overlay, message) {
  overlay.classList.toggle("shown", message !== null);
  if (!message) return;
  const [headline, detail] = message;
  overlay.replaceChildren(document.createTextNode(headline));
  if (detail) {
    const small = document.createElement("small");
    small.textContent = detail;
    overlay.appendChild(small);
  }
}

// The list's items, or one greyed line saying why there are none.
export function fillList(list, items, emptyText) {
  if (!items.length) {
    const item = document.createElement("li");
    item.className = "empty";
    item.textContent = emptyText;
    items.push(item);
  }
  list.replaceChildren(...items);
}
