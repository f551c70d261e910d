// The chat page: an ES module (no build step) on top of chatclient.js, which does the protocol
// (docs/client.md): reconnecting, recovery, order by seq, retried sends, the heartbeat. This
// file only shows things. Everything shown is set as text, never as HTML.
import { ChatClient, RefusalError, conversationFor } from "./chatclient.js";

const PAGE_SIZE = 20; // messages per "Older" page
const NEAR_BOTTOM_PX = 40; // a reader this close to the end follows new messages
const ROOM_KEY = "room";

const $ = (id) => document.getElementById(id);
let client = null;
let connection = { url: "", user: null };
// What the page shows of each conversation: key -> {conversation, rows, firstSeq, exhausted, unread, historyStatus}
const views = new Map();
let currentKey = ROOM_KEY;
let waitingSends = 0;

// --- views of conversations -------------------------------------------------------------------

function ensureView(conversation) {
  if (!views.has(conversation.key)) {
    views.set(conversation.key, { conversation, rows: [], firstSeq: null, exhausted: false, unread: 0, historyStatus: "" });
    renderConversations();
  }
  return views.get(conversation.key);
}

function currentView() {
  return views.get(currentKey);
}

function titleOf(conversation) {
  if (conversation.type === "channel") return `#${conversation.channel}`;
  if (conversation.type === "dm") return `@${conversation.with}`;
  return "Room";
}

/** Room first, then channels, then direct conversations, each by name. */
function orderedViews() {
  const rank = { room: 0, channel: 1, dm: 2 };
  return [...views.values()].sort((a, b) =>
    rank[a.conversation.type] - rank[b.conversation.type] || titleOf(a.conversation).localeCompare(titleOf(b.conversation)));
}

function renderConversations() {
  $("conversations").replaceChildren(...orderedViews().map(conversationItem));
}

function conversationItem(view) {
  const { conversation } = view;
  const li = document.createElement("li");
  li.dataset.key = conversation.key;
  if (conversation.key === currentKey) li.className = "current";
  const open = button(titleOf(conversation), "open", () => showConversation(conversation.key));
  if (view.unread) open.append(span(String(view.unread), "unread"));
  li.append(open);
  if (conversation.type === "channel") li.append(button("Leave", "leave", () => leaveChannel(conversation.channel)));
  return li;
}

function showConversation(key) {
  if (!views.has(key)) return;
  currentKey = key;
  const view = currentView();
  view.unread = 0;
  $("conversation-title").textContent = titleOf(view.conversation);
  renderConversations();
  renderFeed();
  renderHistoryPanel();
}

function removeView(key) {
  views.delete(key);
  if (currentKey === key) showConversation(ROOM_KEY);
  else renderConversations();
}

// --- the feed ---------------------------------------------------------------------------------

function renderFeed() {
  const feed = $("feed");
  feed.replaceChildren(...currentView().rows.map(rowElement));
  feed.scrollTop = feed.scrollHeight;
}

function rowElement(row) {
  const li = document.createElement("li");
  if (row.kind === "notice") {
    li.className = row.refusal ? "notice refusal" : "notice";
    li.append(span(row.text, "text"));
    return li;
  }
  const { message, source } = row;
  li.className = ["message", message.to ? "dm" : "", message.sender === client?.user ? "mine" : ""].filter(Boolean).join(" ");
  li.dataset.seq = message.seq ?? "";
  li.dataset.source = source;
  const time = document.createElement("time");
  time.className = "meta";
  time.dateTime = message.sent_at ?? "";
  time.textContent = formatTime(message.sent_at);
  li.append(time, span(message.sender ?? "anonymous", "sender"), span(contentText(message.content), "content"));
  return li;
}

/** Today's messages show their time; older ones their date too. */
function formatTime(iso) {
  const date = new Date(iso ?? "");
  if (Number.isNaN(date.getTime())) return "";
  if (date.toDateString() === new Date().toDateString()) return date.toLocaleTimeString();
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function contentText(content) {
  return typeof content === "string" ? content : JSON.stringify(content);
}

/** A row at the end of a conversation; the feed follows it if the reader was at the end. */
function appendRow(key, row) {
  const view = views.get(key);
  if (!view) return;
  view.rows.push(row);
  if (key !== currentKey) return;
  const feed = $("feed");
  const atEnd = feed.scrollHeight - feed.scrollTop - feed.clientHeight < NEAR_BOTTOM_PX;
  feed.append(rowElement(row));
  if (atEnd) feed.scrollTop = feed.scrollHeight;
}

function addNotice(key, text, refusal) {
  appendRow(key, { kind: "notice", text, refusal });
}

// --- history ------------------------------------------------------------------------------

function renderHistoryPanel() {
  const view = currentView();
  $("history-status").textContent = view.historyStatus;
  $("history-status").className = view.historyRefused ? "hint refusal" : "hint";
  $("older").disabled = !active() || view.loadingOlder || view.exhausted || !(view.firstSeq > 1);
}

function setHistoryStatus(key, text, refused) {
  const view = views.get(key);
  if (!view) return;
  Object.assign(view, { historyStatus: text, historyRefused: refused });
  if (key === currentKey) renderHistoryPanel();
}

function historyTarget(conversation) {
  if (conversation.type === "channel") return { channel: conversation.channel };
  if (conversation.type === "dm") return { with: conversation.with };
  return {};
}

async function loadOlder() {
  const view = currentView();
  const key = view.conversation.key;
  view.loadingOlder = true;
  setHistoryStatus(key, "Loading older messages ...", false);
  try {
    const page = await client.history({ ...historyTarget(view.conversation), before: view.firstSeq, limit: PAGE_SIZE });
    const older = page.messages.filter((message) => message.seq < view.firstSeq).map((message) => ({ kind: "message", message, source: "older" }));
    view.rows.unshift(...older);
    if (older.length) view.firstSeq = older[0].message.seq;
    view.exhausted = page.before === null;
    setHistoryStatus(key, view.exhausted ? "No older messages." : "", false);
    if (key === currentKey) {
      renderFeed();
      $("feed").scrollTop = 0; // the older messages are the ones the reader asked to see
    }
  } catch (error) {
    setHistoryStatus(key, error.text ?? error.message, true);
  } finally {
    view.loadingOlder = false;
    if (key === currentKey) renderHistoryPanel();
  }
}

// --- events from the client -----------------------------------------------------------------

function onMessage(event) {
  if (event.target !== client) return;
  const { conversation, message, source } = event.detail;
  const view = ensureView(conversation);
  if (typeof message.seq === "number" && (view.firstSeq === null || message.seq < view.firstSeq)) view.firstSeq = message.seq;
  appendRow(conversation.key, { kind: "message", message, source });
  if (conversation.key === currentKey) renderHistoryPanel();
  else if (source !== "recent") {
    view.unread += 1;
    renderConversations();
  }
}

function onConversation(event) {
  if (event.target !== client) return;
  const { conversation, following } = event.detail;
  if (following) ensureView(conversation);
  // A direct conversation the service refused to open stays, with the refusal in its history panel.
  else if (conversation.type === "channel") removeView(conversation.key);
}

/** Refusals of the page's own calls are shown where they were made (their promise rejects);
 * these are the client's own requests (rejoins, recovery) and answers that came unasked. */
function onRefusal(event) {
  if (event.target !== client) return;
  const { text, request, internal } = event.detail;
  if (request && !internal) return;
  if (request?.action === "getRecentMessages") {
    setHistoryStatus(conversationFor(request).key, text, true);
  } else if (request?.action === "join") {
    $("conversations-status").textContent = `#${request.channel}: ${text}`;
  } else {
    addNotice(currentKey, text, true);
  }
}

function onStatus(event) {
  if (event.target !== client) return;
  const { state, code, reason, attempt, delay, refused, expired } = event.detail;
  const closeText = code ? ` (code ${code}${reason ? `: ${reason}` : ""})` : "";
  if (state === "connecting") setStatus(`Connecting to ${connection.url} ...`, "waiting");
  else if (state === "open") setStatus(`Connected to ${connection.url} as ${connection.user ?? "(unknown user)"}.`, "up");
  else if (state === "reconnecting" && delay != null) setStatus(`Connection lost${closeText}. Reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt}) ...`, "waiting");
  else if (state === "reconnecting") setStatus(`Reconnecting to ${connection.url} (attempt ${attempt}) ...`, "waiting");
  else if (refused) setStatus("Could not connect: the token was refused (expired, or for another stack) or the URL is wrong.", "down");
  else if (expired) setStatus("Disconnected: the token has expired. Open a new link (make token FOR=...).", "down");
  else setStatus(`Disconnected${closeText}.`, "down");
  setControls();
}

function onSynced(event) {
  if (event.target !== client || !event.detail.reconnected) return;
  const { recovered, ms } = event.detail;
  setStatus(`Connected to ${connection.url} as ${connection.user ?? "(unknown user)"}. Caught up after reconnecting: ${recovered} missed message${recovered === 1 ? "" : "s"} recovered in ${ms} ms.`, "up");
}

function setStatus(text, kind) {
  $("status").textContent = text;
  $("status").className = kind;
}

/** Usable while the client exists and has not given up (it queues while reconnecting). */
function active() {
  return client !== null && client.state !== "closed";
}

function setControls() {
  for (const id of ["send", "join", "open-dm", "disconnect"]) $(id).disabled = !active();
  renderHistoryPanel();
}

// --- what the user does -----------------------------------------------------------------------

function connect(url, token) {
  disconnect();
  views.clear();
  $("conversations-status").textContent = "";
  try {
    client = new ChatClient({ url, token });
  } catch (error) {
    setStatus(`Could not connect: ${error.message}`, "down");
    return;
  }
  connection = { url, user: client.user };
  for (const [type, listener] of Object.entries({ status: onStatus, message: onMessage, refusal: onRefusal, conversation: onConversation, synced: onSynced })) {
    client.addEventListener(type, listener);
  }
  ensureView(conversationFor({}));
  showConversation(ROOM_KEY);
  client.connect().catch(() => {}); // the status line says why
}

function disconnect() {
  if (client && client.state !== "closed") client.close(1000, "bye");
}

function sendText() {
  const text = $("text").value;
  if (!text || !active()) return;
  const view = currentView();
  const target = view.conversation.type === "dm" ? { to: view.conversation.with } : historyTarget(view.conversation);
  $("text").value = "";
  setWaitingSends(+1);
  client.send({ ...target, content: text })
    .catch((error) => {
      if (error.local && !$("text").value) $("text").value = text; // refused before sending: keep it
      addNotice(view.conversation.key, error instanceof RefusalError ? error.text : `Not sent: ${error.message}`, true);
    })
    .finally(() => setWaitingSends(-1));
}

function setWaitingSends(change) {
  waitingSends += change;
  $("outbox").textContent = waitingSends ? `${waitingSends} message${waitingSends === 1 ? "" : "s"} waiting for the service to acknowledge ...` : "";
}

async function joinChannel(channel) {
  $("conversations-status").textContent = "";
  try {
    const joined = await client.join(channel);
    showConversation(conversationFor({ channel: joined.channel }).key);
  } catch (error) {
    $("conversations-status").textContent = error.text ?? error.message;
  }
}

async function leaveChannel(channel) {
  $("conversations-status").textContent = "";
  removeView(conversationFor({ channel }).key);
  try {
    await client.leave(channel);
  } catch (error) {
    $("conversations-status").textContent = error.text ?? error.message;
  }
}

function openDirect(user) {
  const conversation = conversationFor({ with: user });
  ensureView(conversation);
  showConversation(conversation.key);
  client.follow({ with: user }).catch(() => {}); // a refusal shows in its history panel
}

// --- helpers --------------------------------------------------------------------------------

function span(text, className) {
  const element = document.createElement("span");
  element.className = className;
  element.textContent = text;
  return element;
}

function button(text, className, onClick) {
  const element = document.createElement("button");
  element.type = "button";
  element.className = className;
  element.textContent = text;
  element.addEventListener("click", onClick);
  return element;
}

function onSubmit(formId, handler) {
  $(formId).addEventListener("submit", (event) => {
    event.preventDefault();
    handler();
  });
}

onSubmit("connection", () => {
  const url = $("url").value.trim();
  const token = $("token").value.trim();
  if (!url || !token) setStatus("Give the WebSocket URL and a token.", "down");
  else connect(url, token);
});
onSubmit("composer", sendText);
onSubmit("join-form", () => {
  const channel = $("channel-name").value.trim();
  if (channel && active()) {
    $("channel-name").value = "";
    joinChannel(channel);
  }
});
onSubmit("dm-form", () => {
  const user = $("dm-with").value.trim();
  if (user && active()) {
    $("dm-with").value = "";
    openDirect(user);
  }
});
$("disconnect").addEventListener("click", disconnect);
$("older").addEventListener("click", loadOlder);

/** `make offline` prints links with #url=...&token=...: the fragment never leaves the browser.
 * Once read, the token leaves the address bar and the history entry (issue 18); a new link
 * pasted into an open tab takes effect (hashchange). */
function readFragment() {
  const given = new URLSearchParams(location.hash.slice(1));
  const url = given.get("url");
  const token = given.get("token");
  if (url) $("url").value = url;
  if (token) $("token").value = token;
  if (given.has("token")) {
    given.delete("token");
    const rest = given.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  }
  if (url && token) connect(url, token);
}

addEventListener("hashchange", readFragment);
ensureView(conversationFor({}));
showConversation(ROOM_KEY);
readFragment();
