// varsearch explorer: calls to the HTTP API shared by the search page and the study viewer.
// Every /v1 call goes through fetch (never EventSource), so a bearer token can ride along.
"use strict";

const TOKEN_KEY = "varsearch-token";

class ApiError extends Error {
  // status: the HTTP status; detail: FastAPI's detail (a string, or a list of {loc, msg} for 422)
  constructor(status, detail) {
    super(formatDetail(status, detail));
    this.status = status;
    this.detail = detail;
  }
}

function formatDetail(status, detail) {
  if (status === 401) return "This server needs a bearer token: enter it in the Token field.";
  if (Array.isArray(detail)) {
    return detail.map((e) => `${fieldName(e.loc)}: ${e.msg}`).join("\n");
  }
  return typeof detail === "string" ? detail : `HTTP ${status}`;
}

function fieldName(loc) {
  // ["body", "diversity", "b"] -> "diversity.b"
  return (loc || []).filter((part) => part !== "body").join(".") || "request";
}

function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

async function api(path, options = {}) {
  // The Response of a successful call; an ApiError carrying the server's message otherwise.
  const headers = { ...(options.headers || {}) };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(path, { ...options, headers });
  if (!response.ok) {
    let detail = null;
    try {
      detail = (await response.json()).detail;
    } catch {
      detail = `HTTP ${response.status} ${response.statusText}`;
    }
    throw new ApiError(response.status, detail);
  }
  return response;
}

async function apiJSON(path, options = {}) {
  return (await api(path, options)).json();
}

async function* sseEvents(response) {
  // Server-Sent Events read from a fetch body: yields {id, event, data} (data parsed as JSON).
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const event = { id: null, event: "message", data: "" };
      for (const line of block.split("\n")) {
        if (line.startsWith(":")) continue; // keep-alive comment
        const colon = line.indexOf(":");
        const key = line.slice(0, colon);
        const val = line.slice(colon + 1).replace(/^ /, "");
        if (key === "data") event.data += val;
        else if (key === "id") event.id = Number(val);
        else if (key === "event") event.event = val;
      }
      if (event.data) yield { ...event, data: JSON.parse(event.data) };
    }
  }
}

async function showImage(img, url) {
  // Plain src without a token; with one, fetch the PNG with the header and show it as a blob.
  if (!getToken()) {
    img.src = url;
    return;
  }
  const blob = await (await api(url)).blob();
  img.src = URL.createObjectURL(blob);
}

function el(tag, attrs = {}, ...children) {
  // A DOM element: el("td", {class: "text"}, "a", child); text is never parsed as HTML.
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value !== null && value !== undefined && value !== false) node.setAttribute(key, value);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

function fmt(value, digits = 3) {
  return value === null || value === undefined || Number.isNaN(value) ? "–" : Number(value).toFixed(digits);
}
