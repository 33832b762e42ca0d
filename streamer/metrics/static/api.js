// Calls to the service: the token from the page's address goes with each (EventSource and <img>
// cannot send headers, so URLs carry it as ?token=).

const token = new URLSearchParams(window.location.search).get("token");

export function withToken(path) {
  if (!token) return path;
  return `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
}

function authHeaders(json) {
  const headers = {};
  if (token) headers.Authorization = `Bearer ${token}`;
  if (json) headers["Content-Type"] = "application/json";
  return headers;
}

export async function api(method, path, body) {
  // JSON in and out: {ok, status, body, error}; error is the API's one-line message.
  let response;
  try {
    response = await fetch(path, {
      method,
      cache: "no-store",
      headers: authHeaders(body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    return { ok: false, status: 0, body: null, error: "the service did not answer (network error)" };
  }
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch (error) {
    parsed = null;
  }
  const message = response.ok
    ? null
    : (parsed && parsed.error) || text.trim() || `HTTP ${response.status}`;
  return { ok: response.ok, status: response.status, body: parsed, error: message };
}

export function cameraPath(name) {
  return `api/cameras/${encodeURIComponent(name)}`;
}
