// The chat page: plain JavaScript, no build step. It speaks the service's protocol (README,
// "Message protocol") over one WebSocket. Everything shown is set as text, never as HTML.
"use strict";

// API Gateway closes the connection (1009) on a client frame over 32 KB, and browsers send
// each message as one frame.
const MAX_FRAME_BYTES = 32 * 1024;
// Answers that mean "done"; any other plain-text answer is a refusal.
const ACKNOWLEDGEMENTS = [/^Message sent to all connections\.$/, /^Direct message delivered to /, / is not connected: the message was stored/];

const $ = (id) => document.getElementById(id);
let socket = null;
let historyCursor = null;
let historyWith = null;

function item(list, parts, className) {
  const li = document.createElement("li");
  if (className) li.className = className;
  for (const [text, partClass] of parts) {
    const span = document.createElement("span");
    if (partClass) span.className = partClass;
    span.textContent = text;
    li.append(span);
  }
  list.append(li);
  list.scrollTop = list.scrollHeight;
  return li;
}

function contentText(content) {
  return typeof content === "string" ? content : JSON.stringify(content);
}

function messageParts(message) {
  const time = message.sent_at ? new Date(message.sent_at).toLocaleTimeString() : "";
  const to = message.to ? ` → ${message.to}` : "";
  return [[time, "meta"], [`${message.sender ?? "anonymous"}${to}`, "sender"], [contentText(message.content), "content"]];
}

function notice(text, refused) {
  item($("feed"), [[text, null]], refused ? "notice refusal" : "notice");
}

function setStatus(text, up) {
  $("status").textContent = text;
  $("status").className = up ? "up" : "down";
  for (const id of ["send", "load-history", "disconnect"]) $(id).disabled = !up;
  $("connect").disabled = up;
  if (!up) $("older").disabled = true;
}

// The token's own claim, for display only: the server verifies it.
function tokenUser(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)).sub;
  } catch {
    return null;
  }
}

function connect(url, token) {
  if (socket) socket.close();
  const target = new URL(url);
  target.searchParams.set("token", token); // browsers cannot set headers on a WebSocket
  const user = tokenUser(token);
  setStatus(`Connecting to ${url} ...`, false);
  $("connect").disabled = true;
  let opened = false;
  const ws = new WebSocket(target);
  socket = ws;
  ws.onopen = () => {
    opened = true;
    setStatus(`Connected to ${url} as ${user ?? "(unknown user)"}.`, true);
  };
  ws.onmessage = (event) => receive(event.data);
  ws.onclose = (event) => {
    if (socket !== ws) return;
    socket = null;
    const reason = event.reason ? `: ${event.reason}` : "";
    setStatus(
      opened
        ? `Disconnected (code ${event.code}${reason}).`
        : "Could not connect: the token was refused (expired, or for another stack) or the URL is wrong.",
      false,
    );
  };
}

function receive(data) {
  let document = null;
  try {
    document = JSON.parse(data);
  } catch {
    // Plain text: the answer to one of our own requests.
  }
  if (document && Array.isArray(document.messages)) {
    for (const message of document.messages) item($("feed"), messageParts(message), message.to ? "dm" : "");
  } else if (document && document.history) {
    showHistory(document.history);
  } else {
    notice(String(data), !ACKNOWLEDGEMENTS.some((pattern) => pattern.test(String(data))));
  }
}

function showHistory(history) {
  // Each page is older than the one before: it goes on top.
  const list = $("history");
  const first = list.firstChild;
  for (const message of history.messages) {
    const li = item(list, messageParts(message), message.to ? "dm" : "");
    list.insertBefore(li, first);
  }
  if (!history.messages.length && !list.firstChild) item(list, [["No messages.", null]], "notice");
  historyCursor = history.before;
  $("older").disabled = !historyCursor;
}

function send(request) {
  const frame = JSON.stringify(request);
  const size = new TextEncoder().encode(frame).length;
  if (size > MAX_FRAME_BYTES) {
    notice(`Not sent: ${size} bytes, and API Gateway closes the connection on a frame over ${MAX_FRAME_BYTES} bytes.`, true);
    return false;
  }
  socket.send(frame);
  return true;
}

function requestHistory(before) {
  const request = { action: "getRecentMessages", limit: 20 };
  if (historyWith) request.with = historyWith;
  if (before) request.before = before;
  send(request);
}

$("connection").addEventListener("submit", (event) => {
  event.preventDefault();
  const url = $("url").value.trim();
  const token = $("token").value.trim();
  if (!url || !token) {
    setStatus("Give the WebSocket URL and a token.", false);
    return;
  }
  try {
    connect(url, token);
  } catch (error) {
    setStatus(`Could not connect: ${error.message}`, false);
  }
});

$("disconnect").addEventListener("click", () => socket && socket.close(1000, "bye"));

$("composer").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  const to = $("to").value.trim();
  if (!text || !socket) return;
  const request = to ? { action: "sendDirectMessage", to, content: text } : { action: "sendMessage", content: text };
  if (send(request)) $("text").value = "";
});

$("history-form").addEventListener("submit", (event) => {
  event.preventDefault();
  historyWith = $("history-with").value.trim() || null;
  $("history").replaceChildren();
  requestHistory(null);
});

$("older").addEventListener("click", () => historyCursor && requestHistory(historyCursor));

// make offline prints links with #url=...&token=...: the fragment never leaves the browser.
const given = new URLSearchParams(location.hash.slice(1));
if (given.get("url")) $("url").value = given.get("url");
if (given.get("token")) $("token").value = given.get("token");
if (given.get("url") && given.get("token")) connect(given.get("url"), given.get("token"));
// Once read, the token leaves the address bar and the history entry (it stays in the field).
if (given.has("token")) {
  given.delete("token");
  const rest = given.toString();
  history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
}
