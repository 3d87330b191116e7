// The server's JSON API (docs: SERVE-API in the design notes): one place that knows the CSRF
// header, the error shape and how a download is saved.
let csrf = "";

export function setCsrf(token) { csrf = token || ""; }

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || "HTTP " + status);
    this.status = status;
    this.code = (body && body.code) || "http_" + status;
    this.body = body || {};
  }
}

async function check(response) {
  if (response.ok) return response;
  let body = null;
  try { body = await response.json(); } catch (e) { body = null; }
  throw new ApiError(response.status, body);
}

export async function getJSON(path, signal) {
  const response = await fetch(path, { headers: { Accept: "application/json" }, signal });
  return (await check(response)).json();
}

export async function send(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return check(response);
}

export async function postJSON(path, body) {
  return (await send("POST", path, body)).json();
}

// A POST whose answer is a file. The server issues a one-time address for it and the browser
// saves what that address sends as it arrives (a big zip held whole in the tab crashes it);
// the file's name is the one the server gives.
export async function download(path, body, fallbackName) {
  const { url } = await postJSON(path, { ...body, link: true });
  const a = document.createElement("a");
  a.href = url;
  a.download = fallbackName;
  document.body.appendChild(a);
  a.click();
  a.remove();
  return fallbackName;
}

export function query(params) {
  const parts = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === "") continue;
    parts.push(encodeURIComponent(key) + "=" + encodeURIComponent(value));
  }
  return parts.length ? "?" + parts.join("&") : "";
}
