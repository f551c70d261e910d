// The chat page: an ES module (no build step) on top of chatclient.js, which does the protocol
// (docs/client.md): reconnecting, recovery, order by seq, retried sends, the heartbeat. This
// file only shows things. Everything shown is set as text, never as HTML.
import { ChatClient, RefusalError, conversationFor, newClientMessageId, tokenClaims } from "./chatclient.js";

const PAGE_SIZE = 20; // messages per "Older" page
const NEAR_BOTTOM_PX = 40; // a reader this close to the end follows new messages
const ROOM_KEY = "room";
// Opening a direct conversation with new messages shows a few already seen above them...
const SEEN_CONTEXT = 5;
// ...unless there are more new ones than this: then the newest, and "Older" pages back.
const CATCH_UP_MAX = 100;
// Above this many users online the service sends no presence changes (docs/protocol.md).
const PRESENCE_EVENTS_MAX_USERS = 100;
// A user whose last connection went is listed with 0 connections for this grace, then either
// announced as gone or, if back in time, never mentioned again: the list is asked for again.
const PRESENCE_GRACE_MS = 15_000;
const PRESENCE_RECHECK_MS = PRESENCE_GRACE_MS + 2_000;

const $ = (id) => document.getElementById(id);
let client = null;
let connection = { url: "", user: null };
// What the page shows of each conversation: key -> {conversation, rows, firstSeq, exhausted,
// unread, historyStatus, headSeq (a DM's latest seq, from getConversations), activity (ms of its
// latest message), marked (newer messages than the page has shown)}
const views = new Map();
let currentKey = ROOM_KEY;
let waitingSends = 0;
// The client stopped because its handshakes were refused: the status offers Retry.
let retryOffered = false;
// Who is online, per channel opened: channel -> {members: Map(user -> connections), loading, pending, error}
const presence = new Map();
// Channels of the service's list being joined by the page (a new device, a reload).
const rejoining = new Set();
// Channels the reader left on this page: a list read before the leave still names them.
const leftHere = new Set();
// How long the page's ban button keeps a member out (the service takes 1 s to 366 days).
const BAN_SECONDS = 3600;
// getConversations' cursor for the next (older) page: undefined before the first, null at the end.
let olderConversations;
// The last seq the page showed of each direct conversation (other user -> seq), kept in
// localStorage per service URL and user, so that a reload still knows what is new.
let lastSeen = new Map();
// The token expiry notice: when the token expires (ms), and the timer counting down.
const expiry = { at: null, timer: null };
// Direct conversations the reader removed from the list: other user -> the latest seq then. A
// later message brings one back.
const removed = new Map();

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

/** Room first, then channels by name, then direct conversations, the most recent first. */
function orderedViews() {
  const rank = { room: 0, channel: 1, dm: 2 };
  return [...views.values()].sort((a, b) =>
    rank[a.conversation.type] - rank[b.conversation.type]
    || (a.conversation.type === "dm" ? (b.activity ?? 0) - (a.activity ?? 0) : 0)
    || titleOf(a.conversation).localeCompare(titleOf(b.conversation)));
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
  if (conversation.type === "dm" && view.online != null) {
    const dot = span(view.online ? "●" : "○", view.online ? "online-dot" : "offline-dot");
    dot.title = view.online ? `${conversation.with} is online` : `${conversation.with} is not connected`;
    open.append(dot);
  }
  if (view.unread) open.append(span(String(view.unread), "unread"));
  else if (view.marked) open.append(span("new", "new"));
  li.append(open);
  if (conversation.type === "channel") li.append(button("Leave", "leave", () => leaveChannel(conversation.channel)));
  if (conversation.type === "dm") {
    const remove = button("×", "remove", () => removeDirect(view));
    remove.title = `Remove @${conversation.with} from the list (a new message brings it back)`;
    remove.setAttribute("aria-label", remove.title);
    li.append(remove);
  }
  return li;
}

function showConversation(key) {
  if (!views.has(key)) return;
  currentKey = key;
  const view = currentView();
  view.unread = 0;
  view.marked = false;
  $("conversation-title").textContent = titleOf(view.conversation);
  renderConversations();
  renderFeed();
  renderHistoryPanel();
  if (view.conversation.type === "dm") {
    markSeen(view);
    if (active() && !client.conversations.some((c) => c.key === key)) followDirect(view);
  }
  markRead(view);
  renderTyping();
  if (view.conversation.type === "channel" && active()) loadPresence(view.conversation.channel);
  else renderPresence();
}

function removeView(key) {
  views.delete(key);
  if (currentKey === key) showConversation(ROOM_KEY);
  else renderConversations();
}

/** The reader removes a direct conversation from the list: no longer followed, and not listed
 * again by getConversations until it has a newer message. */
function removeDirect(view) {
  const other = view.conversation.with;
  removed.set(other, Math.max(view.headSeq ?? 0, ...view.rows.map((row) => row.message?.seq ?? 0)));
  if (active()) client.unfollow({ with: other });
  removeView(view.conversation.key);
}

// --- direct conversations: the list, what is new --------------------------------------------

/** The page's first look at a direct conversation: what is new since the reader last saw it
 * (with a few seen ones above), fetched with `after`; else its newest messages. */
function followDirect(view) {
  const other = view.conversation.with;
  const seen = lastSeen.get(other) ?? 0;
  const target = { with: other };
  if (seen > 0 && view.headSeq > seen && view.headSeq - seen <= CATCH_UP_MAX) target.after = Math.max(0, seen - SEEN_CONTEXT);
  client.follow(target).catch(() => {}); // a refusal shows in its history panel
}

/** getConversations, one page (most recent first): on connect and after each reconnect from
 * the top, then older pages on request. */
async function loadConversations(before = null) {
  const mine = client;
  try {
    const page = await client.directConversations(before === null ? {} : { before });
    if (mine !== client) return;
    page.conversations.forEach(listEntry);
    if (before !== null || olderConversations === undefined) olderConversations = page.before;
    renderConversations();
    setControls();
  } catch (error) {
    if (mine === client && error instanceof RefusalError) $("conversations-status").textContent = error.text;
  }
}

/** One entry of getConversations: a direct conversation, or a channel (joined here too: a new
 * device or a reload rejoins what the user follows) or the room; the service's unread count
 * wins over the page's own. */
function listEntry(entry) {
  if (entry.with == null) {
    const conversation = conversationFor(entry.channel != null ? { channel: entry.channel } : {});
    // A channel left here is not joined back from a list read before the leave reached the service.
    if (entry.channel != null && leftHere.has(entry.channel)) return;
    if (entry.channel != null && active() && !client.channels.includes(entry.channel) && !rejoining.has(entry.channel)) {
      // Once: the list is read again on every sync, and a join on its way is not in client.channels yet.
      rejoining.add(entry.channel);
      client.join(entry.channel).catch(() => {}).finally(() => rejoining.delete(entry.channel));
    }
    readState(ensureView(conversation), entry);
    return;
  }
  listDirect(entry);
  const view = views.get(conversationFor({ with: entry.with }).key);
  if (view) readState(view, entry);
}

function readState(view, { seq, readSeq, unread, online }) {
  view.headSeq = Math.max(view.headSeq ?? 0, seq ?? 0);
  if (Number.isInteger(readSeq)) view.readSeq = Math.max(view.readSeq ?? 0, readSeq);
  if (Number.isInteger(unread) && view.conversation.key !== currentKey) {
    view.unread = unread;
    view.marked = false;
  }
  if (typeof online === "boolean") view.online = online;
}

function listDirect({ with: other, seq, last }) {
  if (removed.has(other) && seq <= removed.get(other)) return; // removed, and nothing new since
  removed.delete(other);
  const conversation = conversationFor({ with: other });
  const view = ensureView(conversation);
  view.headSeq = Math.max(view.headSeq ?? 0, seq);
  const sentAt = Date.parse(last?.sent_at ?? "");
  if (!Number.isNaN(sentAt)) view.activity = Math.max(view.activity ?? 0, sentAt);
  // A seq seen above the conversation's latest was another conversation's between the same
  // users (a local stack starts empty each time, with the same user ids): forget it.
  if ((lastSeen.get(conversation.with) ?? 0) > seq) forgetSeen(conversation.with);
  const mine = last != null && last.sender === client.user; // written by us: seen
  if (conversation.key !== currentKey && seq > (lastSeen.get(conversation.with) ?? 0) && !mine) view.marked = true;
}

function lastSeenKey() {
  return `chat:last-seen:${connection.url}:${connection.user}`;
}

function loadLastSeen() {
  try {
    const stored = JSON.parse(localStorage.getItem(lastSeenKey()) ?? "{}");
    return new Map(Object.entries(stored ?? {}).filter(([, seq]) => Number.isInteger(seq)));
  } catch {
    return new Map(); // storage disabled or unreadable: everything listed is new
  }
}

function saveLastSeen() {
  try {
    localStorage.setItem(lastSeenKey(), JSON.stringify(Object.fromEntries(lastSeen)));
  } catch {
    // storage disabled or full: the page still knows until it is closed
  }
}

/** The reader has this direct conversation in front of them: what it shows is seen. */
function markSeen(view, seq = Math.max(0, ...view.rows.map((row) => row.message?.seq ?? 0))) {
  const other = view.conversation.with;
  if (seq > (lastSeen.get(other) ?? 0)) {
    lastSeen.set(other, seq);
    saveLastSeen();
  }
}

function forgetSeen(other) {
  lastSeen.delete(other);
  saveLastSeen();
}

// --- read state, receipts, typing (kept by the service: every device agrees) ----------------

/** The reader has the conversation in front of them: everything it shows is read, on the
 * service (markRead), so the user's other devices and a DM's other user know. */
function markRead(view) {
  const seq = Math.max(0, ...view.rows.map((row) => row.message?.seq ?? 0));
  if (!active() || seq <= (view.readSeq ?? 0)) return;
  view.readSeq = seq;
  view.markedAt = Date.now();
  client.markRead(view.conversation.type === "room" ? {} : view.conversation, seq).catch(() => {});
}

// Messages arriving in the conversation shown are marked read together, at most this often:
// markRead has a stage-wide throttle of its own (docs/production.md, "The route throttles").
const MARK_READ_EVERY_MS = 3_000;

/** Messages arriving in the conversation shown are read: marked on the service a moment later,
 * together (the first soon, then at most every MARK_READ_EVERY_MS while they keep coming). */
function scheduleMarkRead(view) {
  if (view.readTimer) return;
  const wait = Date.now() - (view.markedAt ?? 0) > MARK_READ_EVERY_MS ? 300 : MARK_READ_EVERY_MS;
  view.readTimer = setTimeout(() => {
    view.readTimer = null;
    if (view.conversation.key === currentKey && document.visibilityState !== "hidden") markRead(view);
  }, wait);
}

/** Another device of the user read this far: not unread here either. */
function onRead(event) {
  if (event.target !== client) return;
  const view = views.get(event.detail.conversation.key);
  if (!view) return;
  view.readSeq = Math.max(view.readSeq ?? 0, event.detail.seq);
  const latest = Math.max(view.headSeq ?? 0, ...view.rows.map((row) => row.message?.seq ?? 0));
  view.unread = Math.max(0, Math.min(view.unread, latest - view.readSeq));
  if (view.unread === 0) view.marked = false;
  if (view.conversation.type === "dm") markSeen(view, event.detail.seq);
  renderConversations();
}

/** The other user of a direct conversation has read up to `seq`: "seen" under the last of
 * the reader's own messages up to there. */
function onReadReceipt(event) {
  if (event.target !== client) return;
  const view = views.get(event.detail.conversation.key);
  if (!view) return;
  view.theirRead = Math.max(view.theirRead ?? 0, event.detail.seq);
  if (view.conversation.key === currentKey) renderFeed();
}

/** The seq of the reader's own message that gets "seen": the last one the other user has read. */
function seenSeq(view) {
  if (view.conversation.type !== "dm" || !view.theirRead) return null;
  const mine = view.rows.filter((row) => row.kind === "message" && row.message.sender === client?.user && row.message.seq <= view.theirRead);
  return mine.length ? mine[mine.length - 1].message.seq : null;
}

const TYPING_SHOWN_MS = 5_000;

function onTyping(event) {
  if (event.target !== client) return;
  // Shown only in a conversation listed here: typing alone lists none (a channel just left here
  // can still get one from a member who typed before the leave reached the service).
  const view = views.get(event.detail.conversation.key);
  if (!view) return;
  view.typing = { user: event.detail.user, until: Date.now() + TYPING_SHOWN_MS };
  if (view.conversation.key === currentKey) renderTyping();
  setTimeout(renderTyping, TYPING_SHOWN_MS + 50);
}

function renderTyping() {
  const typing = currentView()?.typing;
  $("typing").textContent = typing && typing.until > Date.now() ? `${typing.user} is typing ...` : "";
}

/** While the reader types into a channel or a DM, the others see it (the client sends at most
 * one frame every 2 s; the room has no typing). */
function onTextInput() {
  const view = currentView();
  if (!active() || !view || view.conversation.type === "room" || $("text").value === "") return;
  client.typing(view.conversation).catch(() => {});
}

// --- who is online in the channel shown --------------------------------------------------------

/** getPresence (every page) for a channel being opened; presence changes that arrive meanwhile
 * are applied after the answer. */
async function loadPresence(channel) {
  clearTimeout(presence.get(channel)?.recheck);
  const known = { members: new Map(), loading: true, pending: [], error: "", recheck: null };
  presence.set(channel, known);
  renderPresence();
  try {
    const answer = await client.presence(channel);
    if (presence.get(channel) !== known) return;
    for (const { user, connections } of answer.members) known.members.set(user, connections);
    for (const change of known.pending.splice(0)) applyPresence(known, change);
    // Someone in the grace either leaves (an event says so) or is back (nothing says so): ask
    // again once the grace is over, so that nobody stays "leaving" for good.
    if ([...known.members.values()].includes(0)) {
      known.recheck = setTimeout(() => {
        const shown = currentView().conversation;
        if (presence.get(channel) === known && active() && shown.type === "channel" && shown.channel === channel) loadPresence(channel);
      }, PRESENCE_RECHECK_MS);
    }
  } catch (error) {
    if (presence.get(channel) === known) known.error = error.text ?? error.message;
  } finally {
    known.loading = false;
    if (presence.get(channel) === known) renderPresence();
  }
}

function applyPresence(known, { user, state }) {
  if (state === "enter") known.members.set(user, Math.max(1, known.members.get(user) ?? 0));
  else if (state === "leave") known.members.delete(user);
}

function renderPresence() {
  const { conversation } = currentView();
  const known = conversation.type === "channel" ? presence.get(conversation.channel) : null;
  $("online-where").textContent = conversation.type === "channel" ? `in #${conversation.channel}` : "";
  // Those in the grace (0 connections) are listed as leaving, not counted as online.
  const online = known ? [...known.members.values()].filter((connections) => connections > 0).length : 0;
  $("online-count").textContent = known && !known.loading && !known.error ? String(online) : "";
  const users = known && !known.loading ? [...known.members.keys()].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)) : [];
  $("online").replaceChildren(...users.map((user) => onlineItem(user, known.members.get(user))));
  const status = $("online-status");
  status.className = known?.error ? "hint refusal" : "hint";
  if (conversation.type !== "channel") {
    status.textContent = "Shown for channels: everyone connected gets the room's messages, and a direct conversation has two people.";
  } else if (!known || known.loading) {
    status.textContent = "Loading ...";
  } else if (known.error) {
    status.textContent = known.error;
  } else if (known.members.size > PRESENCE_EVENTS_MAX_USERS) {
    status.textContent = `Over ${PRESENCE_EVENTS_MAX_USERS} users online: the service sends no changes then, so this is the list as of opening the channel.`;
  } else {
    status.textContent = "";
  }
}

function onlineItem(user, connections) {
  const li = document.createElement("li");
  li.dataset.user = user;
  li.append(span(user, "user"));
  if (user === client?.user) li.append(span(" (you)", "hint"));
  if (connections === 0) {
    li.className = "leaving";
    li.title = "Their last connection just closed: they leave unless they are back within 15 s.";
    li.append(span(" leaving", "leaving-note"));
  }
  const conversation = currentView()?.conversation;
  if (user !== client?.user && conversation?.type === "channel" && moderates(conversation)) {
    li.append(button("ban", "ban", () => banMember(user, conversation.channel)));
  }
  return li;
}

/** A moderator bans a member from the channel shown, for an hour, with the reason typed (none:
 * cancelled). The service takes them out (they leave the list by presence) or says why not. */
async function banMember(user, channel) {
  const reason = window.prompt(`Ban ${user} from #${channel} for an hour. Reason:`, "");
  if (reason == null) return;
  const view = currentView();
  const frame = { action: "ban", user, channel, seconds: BAN_SECONDS, ...(reason.trim() ? { reason: reason.trim() } : {}) };
  try {
    await client.request(frame, "ban");
    appendRow(view.conversation.key, { kind: "notice", text: `${user} is banned from #${channel} for an hour.` });
  } catch (error) {
    appendRow(view.conversation.key, { kind: "notice", text: error.text ?? error.message, refusal: true });
  }
}

// --- the token expiry notice -----------------------------------------------------------------

function showExpiry(at) {
  expiry.at = at;
  $("expiry").hidden = false;
  $("renew-status").textContent = "";
  clearInterval(expiry.timer);
  expiry.timer = setInterval(renderExpiry, 1000);
  renderExpiry();
}

function hideExpiry() {
  clearInterval(expiry.timer);
  expiry.timer = null;
  $("expiry").hidden = true;
  $("renew-status").textContent = "";
}

function renderExpiry() {
  const when = expiry.at ? ` (at ${new Date(expiry.at).toLocaleTimeString()})` : "";
  if (client?.state === "closed") {
    clearInterval(expiry.timer);
    $("expiry-text").textContent = `Your token has expired${when} and the service closed the connection. Paste a new token and press Renew to connect again.`;
    return;
  }
  const left = Math.max(0, Math.round((expiry.at - Date.now()) / 1000));
  $("expiry-text").textContent = left > 0
    ? `Your token expires in ${left >= 60 ? `${Math.floor(left / 60)} min ` : ""}${left % 60} s${when}. Paste a new token and press Renew to stay connected.`
    : `Your token has expired${when}: the service is closing the connection. Paste a new token and press Renew.`;
}

async function renewToken() {
  const token = $("renew-token").value.trim();
  if (!token || !client) return;
  const mine = client;
  const note = (text, refused = false) => {
    $("renew-status").textContent = text;
    $("renew-status").className = refused ? "hint refusal" : "hint";
  };
  if (client.state === "closed") {
    // The service closed the connection at expiry: connect again, same page, with the new token.
    const user = tokenClaims(token).sub;
    if (typeof user !== "string" || user !== client.user) {
      return note(`That token is not ${client.user}'s: open its own link (or Connect with it above) instead.`, true);
    }
    client.setToken(token);
    $("token").value = token;
    $("renew-token").value = "";
    hideExpiry();
    client.connect().catch(() => {}); // the status line says why
    return;
  }
  note("Renewing ...");
  try {
    const { expiresAt } = await client.renewToken(token);
    if (mine !== client) return;
    $("token").value = token;
    $("renew-token").value = "";
    hideExpiry();
    $("token-note").textContent = `Token renewed: this connection is good until ${formatTime(expiresAt)}.`;
  } catch (error) {
    if (mine === client) note(error.text ?? error.message, true);
  }
}

// --- the feed ---------------------------------------------------------------------------------

function renderFeed() {
  const feed = $("feed");
  feed.replaceChildren(...currentView().rows.map(rowElement));
  feed.scrollTop = feed.scrollHeight;
}

function rowElement(row) {
  const li = document.createElement("li");
  if (row.kind === "pending") {
    // A message typed, not yet acknowledged: shown as such until the service has it.
    li.className = "pending";
    li.dataset.clientMessageId = row.clientMessageId;
    const state = client?.state === "open" ? "sending ..." : "waiting for the connection ...";
    li.append(span(state, "meta"), span(client?.user ?? "", "sender"), span(contentText(row.content), "pending-content"));
    return li;
  }
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
  li.append(time, span(message.sender ?? "anonymous", "sender"));
  if (message.deleted) {
    li.append(span("message deleted", "deleted"));
    return li;
  }
  li.append(span(contentText(message.content), "content"));
  if (message.editedAt) li.append(span("(edited)", "edited"));
  if (message.seq != null && message.seq === seenSeq(currentView())) li.append(span("seen", "seen"));
  const mine = message.sender != null && message.sender === client?.user;
  const conversation = currentView()?.conversation;
  if (typeof message.seq === "number" && (mine || (conversation && moderates(conversation)))) {
    const actions = document.createElement("span");
    actions.className = "actions";
    if (mine) actions.append(button("edit", "edit", () => editMessage(message)));
    actions.append(button("delete", "delete", () => changeMessage({ action: "deleteMessage", seq: message.seq }, "deleted")));
    li.append(actions);
  }
  return li;
}

/** Does this page's token moderate the conversation? (Its `moderates` claim, the `channels`
 * claim's syntax; "*" for the room too; nobody moderates a DM.) The service decides again. */
function moderates(conversation) {
  let patterns = [];
  try {
    const payload = $("token").value.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const claim = JSON.parse(atob(payload)).moderates;
    if (Array.isArray(claim)) patterns = claim.filter((p) => typeof p === "string");
  } catch {
    return false;
  }
  if (conversation.type === "dm") return false;
  if (conversation.type !== "channel") return patterns.includes("*");
  return patterns.some((p) => p === conversation.channel || (p.endsWith("*") && conversation.channel.startsWith(p.slice(0, -1))));
}

function editMessage(message) {
  const text = window.prompt("Edit your message", contentText(message.content));
  if (text != null && text !== "") changeMessage({ action: "editMessage", seq: message.seq, content: text }, "edited");
}

/** An edit or a delete of a message in the conversation shown: the change comes back as the
 * conversation's next seq, like a message (onMessage applies it); a refusal is shown. */
async function changeMessage(frame, replyKey) {
  const view = currentView();
  try {
    await client.request({ ...frame, ...historyTarget(view.conversation) }, replyKey);
  } catch (error) {
    appendRow(view.conversation.key, { kind: "notice", text: error.text ?? error.message, refusal: true });
  }
}

/** An edit or a delete (a change: chat/changes.py) applied to the message it changes, in place;
 * a message not loaded here shows its current state whenever it is loaded. */
function applyChange(key, change) {
  const view = views.get(key);
  const row = view?.rows.find((r) => r.kind === "message" && r.message.seq === change.target);
  if (!row || (change.action === "edit" && change.deleted)) return; // an edit of a message deleted since
  if (change.action === "edit") {
    row.message = { ...row.message, content: change.content, editedAt: change.sent_at };
  } else {
    const { content: _gone, ...rest } = row.message;
    row.message = { ...rest, deleted: true, deletedBy: change.sender };
  }
  if (key !== currentKey) return;
  const shown = [...$("feed").children].find((li) => li.dataset.seq === String(change.target));
  if (shown) shown.replaceWith(rowElement(row));
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

/** The pending row of a message typed (by its clientMessageId) goes: the message is shown (or
 * was refused). */
function removePending(key, clientMessageId) {
  const view = views.get(key);
  if (!view || clientMessageId == null) return;
  const index = view.rows.findIndex((row) => row.kind === "pending" && row.clientMessageId === clientMessageId);
  if (index < 0) return;
  view.rows.splice(index, 1);
  if (key === currentKey) {
    for (const li of $("feed").querySelectorAll("li.pending")) if (li.dataset.clientMessageId === clientMessageId) li.remove();
  }
}

/** The state shown on pending rows follows the connection. */
function renderPending() {
  const state = client?.state === "open" ? "sending ..." : "waiting for the connection ...";
  for (const meta of $("feed").querySelectorAll("li.pending .meta")) meta.textContent = state;
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
    // Older edits and deletes are already in the messages they changed (history shows each
    // message as it is now): only messages become rows.
    const fetched = page.messages.filter((message) => message.seq < view.firstSeq);
    const older = fetched.filter((message) => !message.action).map((message) => ({ kind: "message", message, source: "older" }));
    view.rows.unshift(...older);
    if (fetched.length) view.firstSeq = fetched[0].seq;
    view.exhausted = page.before === null;
    setHistoryStatus(key, view.exhausted ? "No older messages." : "", false);
    if (key === currentKey) {
      // Keep the reader's place: the row at the top of the feed stays where it is, and the
      // older messages go above it, where scrolling up finds them.
      const feed = $("feed");
      const top = feed.getBoundingClientRect().top;
      const rows = [...feed.children];
      const anchor = rows.findIndex((li) => li.getBoundingClientRect().bottom > top);
      const offset = anchor >= 0 ? rows[anchor].getBoundingClientRect().top - top : 0;
      renderFeed();
      const same = anchor >= 0 ? feed.children[anchor + older.length] : null;
      if (same) feed.scrollTop += same.getBoundingClientRect().top - feed.getBoundingClientRect().top - offset;
      else feed.scrollTop = 0;
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
  if (message.sender === client.user) removePending(conversation.key, message.clientMessageId);
  const change = message.action === "edit" || message.action === "delete";
  if (change) applyChange(conversation.key, message);
  else appendRow(conversation.key, { kind: "message", message, source });
  const sentAt = Date.parse(message.sent_at ?? "");
  const moved = conversation.type === "dm" && sentAt > (view.activity ?? 0);
  if (moved) view.activity = sentAt;
  view.headSeq = Math.max(view.headSeq ?? 0, message.seq ?? 0);
  if (message.sender != null && message.sender === view.typing?.user) view.typing = null; // they sent it
  if (conversation.key === currentKey) {
    renderHistoryPanel();
    renderTyping();
    if (conversation.type === "dm") markSeen(view, message.seq);
    scheduleMarkRead(view);
    if (moved) renderConversations();
  } else if (source !== "recent" && message.sender !== client.user && !change) {
    view.unread += 1; // (one's own message acknowledged after switching away is not unread)
    renderConversations();
  } else if (moved) {
    renderConversations();
  }
}

function onPresence(event) {
  if (event.target !== client) return;
  const known = presence.get(event.detail.channel);
  if (!known) return; // a channel not opened: its list is asked for when it is
  if (known.loading) known.pending.push(event.detail);
  else applyPresence(known, event.detail);
  renderPresence();
}

function onTokenExpiring(event) {
  if (event.target !== client) return;
  showExpiry(event.detail.expiresAt);
}

function onConversation(event) {
  if (event.target !== client) return;
  const { conversation, following } = event.detail;
  if (following && conversation.type === "dm") removed.delete(conversation.with); // a new message
  if (following) ensureView(conversation);
  // A direct conversation the service refused to open stays, with the refusal in its history panel.
  else if (conversation.type === "channel") removeView(conversation.key);
}

/** A moderator took the user out of a channel: its view is gone (onConversation), and a list
 * read before the ban does not join it back. */
function onLeft(event) {
  if (event.target !== client) return;
  const { channel, reason } = event.detail;
  leftHere.add(channel);
  presence.delete(channel);
  $("conversations-status").textContent = `You were taken out of #${channel}${reason === "banned" ? ": a moderator banned you from it" : ` (${reason})`}.`;
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
  const { state, code, reason, attempt, delay, refused, failures, expired, banned } = event.detail;
  const closeText = code ? ` (code ${code}${reason ? `: ${reason}` : ""})` : "";
  retryOffered = state === "closed" && Boolean(refused) && !expired;
  if (state === "connecting") setStatus(`Connecting to ${connection.url} ...`, "waiting");
  else if (state === "open") setStatus(`Connected to ${connection.url} as ${connection.user ?? "(unknown user)"}.`, "up");
  else if (state === "reconnecting" && delay != null) setStatus(`Connection lost${closeText}. Reconnecting in ${(delay / 1000).toFixed(1)} s (attempt ${attempt}) ...`, "waiting");
  else if (state === "reconnecting") setStatus(`Reconnecting to ${connection.url} (attempt ${attempt}) ...`, "waiting");
  else if (banned) {
    const until = banned.until ? ` until ${banned.until}` : " until a moderator lifts the ban";
    setStatus(`Banned from this service${until}${banned.reason ? `: ${banned.reason}` : ""}. The page does not reconnect.`, "down");
  } else if (refused && failures > 1) {
    // A browser cannot see why a handshake failed: after a few in a row, say both.
    setStatus(`Stopped reconnecting: ${failures} attempts in a row were refused. The token is no longer accepted (for example, the service restarted with a new secret) or the service is unreachable. Paste a new token above and press Connect, or press Retry.`, "down");
  } else if (refused) setStatus("Could not connect: the token was refused (expired, or for another stack) or the URL is wrong. Paste a new token above and press Connect, or press Retry.", "down");
  else if (expired) setStatus("Disconnected: the token has expired. Paste a new token into the notice below and press Renew, or open a new link (make token FOR=...).", "down");
  else setStatus(`Disconnected${closeText}.`, "down");
  if (expired) showExpiry(client.tokenExpiresAt);
  else if (state === "closed") hideExpiry();
  renderPending();
  setControls();
}

/** Every followed conversation is caught up after an open: list the direct conversations
 * (someone may have started one meanwhile), and ask again who is online (presence changes
 * were missed while the connection was down). */
function onSynced(event) {
  if (event.target !== client) return;
  loadConversations();
  presence.clear();
  const { conversation } = currentView();
  if (conversation.type === "channel") loadPresence(conversation.channel);
  if (!event.detail.reconnected) return;
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
  // Connected (or connecting): Connect would only reconnect; Disconnect first to change.
  $("connect").disabled = client !== null && (client.state === "open" || client.state === "connecting");
  $("retry").hidden = !(client !== null && client.state === "closed" && retryOffered);
  $("renew").disabled = client === null;
  $("more-conversations").hidden = !olderConversations || !active();
  renderHistoryPanel();
}

// --- what the user does -----------------------------------------------------------------------

function connect(url, token) {
  disconnect();
  retryOffered = false;
  removed.clear();
  views.clear();
  presence.clear();
  leftHere.clear(); // a new connection (a ban over, another user): the service decides again
  olderConversations = undefined;
  hideExpiry();
  $("token-note").textContent = "";
  $("conversations-status").textContent = "";
  try {
    client = new ChatClient({ url, token });
  } catch (error) {
    setStatus(`Could not connect: ${error.message}`, "down");
    return;
  }
  connection = { url, user: client.user };
  lastSeen = loadLastSeen();
  const listeners = {
    status: onStatus, message: onMessage, refusal: onRefusal, conversation: onConversation, synced: onSynced,
    presence: onPresence, tokenExpiring: onTokenExpiring, read: onRead, readReceipt: onReadReceipt, typing: onTyping,
    left: onLeft,
  };
  for (const [type, listener] of Object.entries(listeners)) {
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
  const clientMessageId = newClientMessageId();
  const key = view.conversation.key;
  appendRow(key, { kind: "pending", clientMessageId, content: text });
  client.send({ ...target, content: text, clientMessageId })
    .catch((error) => {
      removePending(key, clientMessageId);
      if (error.local && !$("text").value) $("text").value = text; // refused before sending: keep it
      addNotice(key, error instanceof RefusalError ? error.text : `Not sent: ${error.message}`, true);
    })
    .finally(() => setWaitingSends(-1));
}

function setWaitingSends(change) {
  waitingSends += change;
  $("outbox").textContent = waitingSends ? `${waitingSends} message${waitingSends === 1 ? "" : "s"} waiting for the service to acknowledge ...` : "";
}

async function joinChannel(channel) {
  $("conversations-status").textContent = "";
  leftHere.delete(channel);
  try {
    const joined = await client.join(channel);
    showConversation(conversationFor({ channel: joined.channel }).key);
  } catch (error) {
    $("conversations-status").textContent = error.text ?? error.message;
  }
}

async function leaveChannel(channel) {
  $("conversations-status").textContent = "";
  leftHere.add(channel);
  presence.delete(channel);
  removeView(conversationFor({ channel }).key);
  try {
    await client.leave(channel);
  } catch (error) {
    $("conversations-status").textContent = error.text ?? error.message;
  }
}

/** A direct conversation the reader names: listed only once the service accepts the id (a
 * one-message history read answers bad_request for anything that is not a user id, and for
 * yourself); one already listed just opens. */
async function openDirect(user) {
  const conversation = conversationFor({ with: user });
  const status = $("conversations-status");
  if (views.has(conversation.key)) return showConversation(conversation.key);
  if (user === client.user) {
    status.textContent = "That is yourself: a direct conversation is with another user.";
    return;
  }
  const mine = client;
  status.textContent = `Checking ${user} ...`;
  try {
    await client.history({ with: user, limit: 1 });
  } catch (error) {
    if (mine === client) status.textContent = error instanceof RefusalError ? error.text : `Could not check ${user}: ${error.message}`;
    return;
  }
  if (mine !== client) return;
  status.textContent = "";
  removed.delete(user);
  ensureView(conversation);
  showConversation(conversation.key); // follows it, if the client does not yet
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
$("text").addEventListener("input", onTextInput);
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
    $("conversations-status").textContent = "";
    openDirect(user);
  }
});
onSubmit("renew-form", renewToken);
$("disconnect").addEventListener("click", disconnect);
$("retry").addEventListener("click", () => {
  if (client && client.state === "closed") client.connect().catch(() => {}); // the status line says why
});
$("older").addEventListener("click", loadOlder);
$("more-conversations").addEventListener("click", () => {
  if (olderConversations && active()) loadConversations(olderConversations);
});

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
