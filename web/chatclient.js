/**
 * chatclient.js: the client of the serverless-websocket chat protocol (docs/protocol.md), in one
 * ES module with no dependencies and no build step. Usage and guarantees: docs/client.md.
 *
 * ```js
 * import { ChatClient } from "./chatclient.js";
 * const chat = new ChatClient({ url: "wss://abc.execute-api.us-east-1.amazonaws.com/dev", token });
 * chat.addEventListener("message", (event) => show(event.detail.conversation, event.detail.message));
 * await chat.connect();
 * await chat.join("general");
 * await chat.send({ channel: "general", content: "hi" });
 * ```
 *
 * What it does for the application:
 * - connects with `?token=` (browsers cannot set headers on a WebSocket), and reconnects by
 *   itself after a drop, with exponential backoff and full jitter;
 * - after every reconnect rejoins its channels and recovers each conversation it follows from
 *   its last contiguous `seq` (`getRecentMessages` + `after`, following the cursor to the end);
 * - delivers each conversation's messages once each, in `seq` order (a frame that jumps ahead
 *   waits for the gap to be filled, and the gap is fetched if it is not filled soon);
 * - gives every send a `clientMessageId` and sends it again, with the same id, until it is
 *   acknowledged or refused: after a timeout, after a reconnect, after a transient refusal;
 * - sends `{"action": "heartbeat"}` only when nothing else was sent for `heartbeatInterval`;
 * - wraps the other requests: who is online (`presence`), renewing the token (`renewToken`),
 *   the user's direct conversations (`directConversations`), and passes on presence changes
 *   and the token expiry notice as events; it never reconnects with a token the service
 *   called expired.
 *
 * @module chatclient
 */

/** The options and their defaults (docs/client.md says why each has its value). */
export const DEFAULTS = Object.freeze({
  /** How many of a conversation's newest messages are delivered when the client starts
   * following it (connect for the room, join, a new direct conversation); 0: none, start at
   * the next message. At most 100 (the protocol's `limit`). */
  recentLimit: 20,
  /** Follow the room (every connection gets its messages; false: they are ignored). */
  room: true,
  /** Milliseconds to wait for the answer to a request before sending it again. */
  requestTimeout: 10_000,
  /** Unanswered sends of one request after which the connection is presumed dead (a
   * half-open TCP connection never reports an error): it is closed and opened again. */
  timeoutsBeforeReconnect: 2,
  /** Reconnect backoff: the first delay's ceiling, doubling each attempt up to the maximum;
   * the delay itself is drawn uniformly below the ceiling ("full jitter"). */
  reconnectDelay: 500,
  maxReconnectDelay: 30_000,
  /** A connection that stayed open this long resets the backoff. */
  stableAfter: 10_000,
  /** Milliseconds without any frame sent after which a heartbeat is sent (API Gateway closes
   * a connection after 10 minutes without a frame). */
  heartbeatInterval: 9 * 60_000,
  /** Milliseconds a jump in `seq` may wait for the missing frames before they are fetched
   * (frames of one conversation often arrive swapped; most gaps close by themselves). */
  gapWait: 1_000,
  /** Transient refusals (rate limit, a busy conversation, an AWS failure) and deliveries
   * reported incomplete are retried after this delay, doubling, at most `maxRetries` times. */
  retryDelay: 1_000,
  maxRetries: 5,
  /** API Gateway closes the connection (1009) on a client frame over 32 KB. */
  maxFrameBytes: 32 * 1024,
  /** The WebSocket constructor (e.g. the `ws` package in Node before version 22). */
  WebSocket: globalThis.WebSocket,
});

/** Plain-text answers that mean "try again later": the request changed nothing. */
const TRANSIENT_REFUSALS = [
  /^Too many messages/, // 429: the sender's rate limit, or a conversation too busy to take a seq
  /could not be (sent|loaded)\.$/, // AWS failed before anything was stored
  /^Could not (join|leave) the channel\.$/,
];
/** 410: the service has no row for this connection (it is closing): reconnect, then retry. */
const UNREGISTERED = /^This connection is not registered/;
/** JSON replies to requests; any other key of a one-key object is a live frame. A reply of
 * several keys is known by one of these (getConversations': {"conversations": [...], "before"}). */
const REPLY_KEYS = new Set(["sent", "joined", "left", "history", "presence", "renewed", "conversations"]);
/** The service's answer to any frame after the token's exp, before it closes the connection. */
const EXPIRED = /^Your token has expired/;
const HEARTBEAT = JSON.stringify({ action: "heartbeat" });
/** When the browser says the network is back, reconnect within this many ms (spread, so that
 * the clients of a whole network coming back do not arrive at once). */
const ONLINE_JITTER_MS = 1_000;

/** A request the service refused: `text` is its plain-text answer. */
export class RefusalError extends Error {
  constructor(text, request, { local = false } = {}) {
    super(text);
    this.name = "RefusalError";
    this.text = text;
    this.request = request;
    /** True when the client refused it itself, before sending (a frame over 32 KB). */
    this.local = local;
  }
}

/** A request that was still pending when the client was closed (or could not connect). */
export class ClosedError extends Error {
  constructor(message = "The chat client is closed.") {
    super(message);
    this.name = "ClosedError";
  }
}

/**
 * Which conversation a message belongs to, as `{key, type, channel?, with?}`: the room, a
 * channel, or the direct conversation with the other user (`me` is this client's user id).
 */
export function conversationOf(message, me) {
  if (typeof message.channel === "string") return channelConversation(message.channel);
  if (typeof message.to === "string") {
    const other = normalizeId(message.sender) === normalizeId(me) ? message.to : message.sender;
    return directConversation(other);
  }
  return ROOM;
}

const ROOM = Object.freeze({ key: "room", type: "room" });

function channelConversation(channel) {
  return Object.freeze({ key: `channel:${channel}`, type: "channel", channel });
}

function directConversation(user) {
  const id = normalizeId(user);
  return Object.freeze({ key: `dm:${id}`, type: "dm", with: id });
}

/** A conversation from what an application names: `{channel}`, `{with}` (or `{to}`), or `{}`. */
export function conversationFor({ channel, with: other, to } = {}) {
  if (channel != null) return channelConversation(channel);
  if (other != null || to != null) return directConversation(other ?? to);
  return ROOM;
}

/** The service normalizes user ids to NFC; so does the client, to compare them. */
function normalizeId(id) {
  return typeof id === "string" ? id.normalize("NFC") : id;
}

/** The token's claims, read for display and expiry only (the service verifies the token). */
export function tokenClaims(token) {
  try {
    const payload = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    const bytes = Uint8Array.from(atob(payload), (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes));
    return claims && typeof claims === "object" ? claims : {};
  } catch {
    return {};
  }
}

/** A v4 UUID; crypto.randomUUID exists only in secure contexts (https, localhost). */
function newClientMessageId() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

function utf8Length(text) {
  return new TextEncoder().encode(text).length;
}

/**
 * One conversation's order: `last` is the highest seq delivered with nothing missing below it
 * (null until a baseline is known); frames that jump ahead wait in `buffer`. Exported for the
 * tests of its rules; applications use ChatClient.
 */
export class SequenceBuffer {
  constructor(deliver) {
    this.deliver = deliver; // (message, source) => void, called in seq order, once per seq
    this.last = null;
    this.buffer = new Map(); // seq -> {message, source}
    this.expected = 0; // a seq known to exist (from an acknowledgement) but not yet received
  }

  /** The highest seq received so far (delivered or waiting). */
  highWater() {
    return Math.max(this.last ?? 0, this.expected, ...this.buffer.keys());
  }

  /** A message arrived; false if it was already delivered or is already waiting. */
  accept(message, source) {
    const seq = message.seq;
    if ((this.last !== null && seq <= this.last) || this.buffer.has(seq)) return false;
    this.buffer.set(seq, { message, source });
    this.drain();
    return true;
  }

  /** Another seq is known to exist (the acknowledgement of our own send). */
  expect(seq) {
    this.expected = Math.max(this.expected, seq);
  }

  hasGap() {
    return this.last !== null && (this.buffer.size > 0 || this.expected > this.last);
  }

  /** Deliver what follows `last` without a hole. */
  drain() {
    if (this.last === null) return;
    while (this.buffer.has(this.last + 1)) {
      const { message, source } = this.buffer.get(this.last + 1);
      this.buffer.delete(++this.last);
      this.deliver(message, source);
    }
  }

  /** The first page sets `last`: just before its oldest message (frames older than that are
   * older than the window asked for: the application pages back to them), or, for an empty
   * page, at `covered` (but never past a frame already waiting). */
  #baseline(messages, covered) {
    if (messages.length) {
      this.last = Math.min(...messages.map((m) => m.seq)) - 1;
      for (const seq of [...this.buffer.keys()]) if (seq <= this.last) this.buffer.delete(seq);
    } else {
      this.last = Math.min(covered, ...[...this.buffer.keys()].map((seq) => seq - 1));
    }
  }

  /**
   * A page of history (oldest first) that, by the protocol, holds every retained message up to
   * `covered`: deliver in order up to there, passing over seqs that are not in it (expired,
   * never to be seen), then whatever follows without a hole. `start`: the first page, which
   * sets the baseline (the newest messages; older ones are the application's to page back to).
   */
  applyPage(messages, covered, source, { start = false } = {}) {
    if (start && this.last === null) this.#baseline(messages, covered);
    if (this.last === null) return;
    for (const message of messages) {
      // The stored copy replaces one made from our own acknowledgement (its sent_at is a guess).
      const waiting = this.buffer.get(message.seq);
      if (message.seq > this.last && (!waiting || waiting.source === "sent")) this.buffer.set(message.seq, { message, source });
    }
    for (const seq of [...this.buffer.keys()].sort((a, b) => a - b)) {
      if (seq > covered) break;
      const { message, source: from } = this.buffer.get(seq);
      this.buffer.delete(seq);
      this.last = seq;
      this.deliver(message, from);
    }
    this.last = Math.max(this.last, covered);
    this.drain();
  }
}

/**
 * A client of the chat service. Events (each a CustomEvent; the payload is `event.detail`):
 * - `status`: `{state, code?, reason?, attempt?, delay?, refused?, expired?}`, where `state` is
 *   "connecting", "open", "reconnecting" or "closed";
 * - `message`: `{conversation, message, source}`, each conversation's messages in seq order,
 *   once each; `source` is "recent" (the newest ones when following starts), "live",
 *   "recovery" (fetched after a reconnect or to fill a gap) or "sent" (this connection's own
 *   direct message, which the service sends to the sender's other connections only);
 * - `refusal`: `{text, request, internal}`, every plain-text refusal (`internal`: of a request
 *   the client made itself, such as a rejoin after a reconnect; `request`: null when it came
 *   unasked);
 * - `conversation`: `{conversation, following}`, the client started or stopped following one
 *   (a direct message from someone new; a channel that could not be rejoined);
 * - `synced`: `{reconnected, ms, recovered}`, every followed conversation is caught up after
 *   connecting (`recovered`: messages delivered by recovery);
 * - `presence`: `{channel, user, state}`, a user entered ("enter") or left ("leave") a channel
 *   this connection is in (the service's presenceChange; once per user, not per tab);
 * - `tokenExpiring`: `{at, expiresAt}`, the service's notice that the token expires soon
 *   (`at` as sent, ISO 8601; `expiresAt` in ms): call renewToken with a fresh one before then;
 * - `frame`: `{type, data, raw}`, a live frame this client does not know (whatever the service
 *   adds next): `type` is its one key.
 */
export class ChatClient extends EventTarget {
  #options;
  #token;
  #user;
  #state = "idle";
  #socket = null;
  #wantOpen = false; // between connect() and close()
  #everOpened = false; // since connect(): a handshake failing before any open is a refusal
  #attempt = 0;
  #openedAt = 0;
  #openWaiters = [];
  #timers = { reconnect: null, heartbeat: null, request: null, drain: null, hold: null };
  #queue = [];
  #inflight = null;
  #owed = 0; // answers still on their way for frames sent again after a timeout
  #channels = new Set(); // channels to be in: rejoined after every reconnect
  #conversations = new Map(); // key -> {descriptor, order: SequenceBuffer, fetching, gapTimer, joinSeq}
  #pendingSends = new Map(); // clientMessageId -> request, until acknowledged or refused
  #sync = null; // {startedAt, reconnected, waiting: Set<key>, recovered}
  #expiredSaid = false; // the service said this token has expired: never reconnect with it
  #onOnline = () => this.#reconnectNow();

  /**
   * @param {object} options `url` (ws:// or wss://, the stage URL) and `token` (a JWT) are
   *   required; every other option is in DEFAULTS.
   */
  constructor({ url, token, ...options }) {
    super();
    if (!url || !token) throw new TypeError("ChatClient needs a url and a token");
    this.#options = { ...DEFAULTS, ...options, url: String(url) };
    if (typeof this.#options.WebSocket !== "function") throw new TypeError("no WebSocket: pass options.WebSocket");
    this.setToken(token);
  }

  /** "idle", "connecting", "open", "reconnecting" or "closed". */
  get state() {
    return this.#state;
  }

  /** The user id in the token (`sub`), for display: the service checks it, not the client. */
  get user() {
    return this.#user;
  }

  /** The conversations followed now (the room, joined channels, direct conversations seen). */
  get conversations() {
    return [...this.#conversations.values()].map((c) => c.descriptor);
  }

  /** The channels this client is in (or will rejoin on the next connection). */
  get channels() {
    return [...this.#channels];
  }

  /** Use another token from the next connection on (e.g. a renewed one). */
  setToken(token) {
    this.#token = String(token);
    this.#user = normalizeId(tokenClaims(this.#token).sub) ?? null;
    this.#expiredSaid = false;
  }

  /** When the current token expires (its `exp`, in ms since the epoch), or null. */
  get tokenExpiresAt() {
    const { exp } = tokenClaims(this.#token);
    return typeof exp === "number" ? exp * 1000 : null;
  }

  /**
   * Open the connection; from now on the client keeps it open until close(). Resolves when it
   * is open; rejects with ClosedError if the first handshake fails (a browser cannot tell a
   * refused token, HTTP 403, from a wrong URL: both are a close before the open).
   */
  connect() {
    const opened = new Promise((resolve, reject) => this.#openWaiters.push({ resolve, reject }));
    if (this.#state === "open") this.#settleOpenWaiters(null);
    if (this.#wantOpen) return opened;
    this.#wantOpen = true;
    this.#everOpened = false;
    this.#attempt = 0;
    // A browser says when the network is back: no need to sit out the rest of the backoff.
    globalThis.addEventListener?.("online", this.#onOnline);
    if (this.#options.room) this.#follow(ROOM);
    this.#open();
    return opened;
  }

  /** Close on purpose: no reconnect; every pending request rejects with ClosedError. */
  close(code = 1000, reason = "bye") {
    this.#wantOpen = false;
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#clearTimers();
    this.#failPending(new ClosedError());
    const socket = this.#socket;
    if (socket && socket.readyState <= 1) {
      socket.close(code, reason); // onclose reports "closed" with the code
    } else {
      this.#socket = null;
      this.#setState("closed", { code, reason });
    }
  }

  /** Join a channel: resolves with `{channel, seq}`; its messages follow as `message` events. */
  join(channel) {
    return this.#call(this.#joinRequest(channel, false));
  }

  /** Leave a channel (harmless when not in it): resolves with `{channel}`. */
  leave(channel) {
    this.#channels.delete(channel);
    this.#unfollow(channelConversation(channel).key);
    return this.#call(this.#request({ action: "leave", channel }, "left", (left) => left.channel === channel));
  }

  /**
   * Follow a direct conversation (`{with: "bob"}`) or the room (`{}`) without waiting for a
   * message: its newest messages are delivered, and it is recovered after every reconnect.
   * With `after` (a seq: e.g. the last one the reader saw), every message after it is
   * delivered instead (`source: "recent"`), fetched with `getRecentMessages` + `after`.
   * Resolves once they are delivered; rejects with RefusalError if the service refuses.
   */
  follow(target = {}) {
    const descriptor = conversationFor(target);
    if (descriptor.type === "channel") return this.join(descriptor.channel);
    if (!this.#wantOpen) return Promise.reject(new ClosedError("Not connected: call connect() first."));
    const conversation = this.#follow(descriptor, target.after);
    if (conversation.order.last !== null && !conversation.opening) return Promise.resolve(descriptor);
    return new Promise((resolve, reject) => {
      conversation.startWaiters.push({ resolve: () => resolve(descriptor), reject });
      this.#catchUp(conversation);
    });
  }

  /** Stop following a direct conversation (its messages are ignored until it is followed again). */
  unfollow(target) {
    this.#unfollow(conversationFor(target).key);
  }

  /**
   * Send a message to a channel (`{channel, content}`), a user (`{to, content}`) or the room
   * (`{content}`). Resolves with the acknowledgement `{seq, id, clientMessageId, duplicate,
   * delivery, channel? | to?, recipientOnline?}` once the service stored it; rejects with
   * RefusalError when refused (also, before sending, a frame over maxFrameBytes).
   */
  send({ channel, to, content }) {
    const clientMessageId = newClientMessageId();
    const frame = to != null
      ? { action: "sendDirectMessage", to, content, clientMessageId }
      : { action: "sendMessage", ...(channel != null ? { channel } : {}), content, clientMessageId };
    const request = this.#request(frame, "sent", (sent) => sent.clientMessageId === clientMessageId);
    request.onAnswer = (sent) => this.#acknowledged(request, frame, sent);
    request.settle = () => this.#pendingSends.delete(clientMessageId);
    const promise = this.#call(request);
    if (!request.done) this.#pendingSends.set(clientMessageId, request);
    return promise;
  }

  /**
   * One page of a conversation's history: `{channel}`, `{with}` or `{}` (the room), with
   * `before` (older than that seq), `after` (newer) and `limit` (1-100). Resolves with the
   * reply `{messages, before, after, channel? | with?}` (messages oldest first); it does not
   * emit `message` events (pages are for scrolling back).
   */
  history({ channel, with: other, before, after, limit } = {}) {
    const frame = { action: "getRecentMessages" };
    if (channel != null) frame.channel = channel;
    if (other != null) frame.with = other;
    if (limit != null) frame.limit = limit;
    if (before != null) frame.before = before;
    if (after != null) frame.after = after;
    return this.#call(this.#request(frame, "history", (page) => sameConversation(page, channel, other)));
  }

  /**
   * Any other request, for actions this version does not wrap (e.g. `getConversations`):
   * resolves with the value of the reply's `replyKey` when it arrives (and `matches(value)`,
   * if given, accepts it), rejects with RefusalError on a plain-text refusal.
   */
  request(frame, replyKey, matches = () => true) {
    return this.#call(this.#request(frame, replyKey, matches));
  }

  /**
   * Who is online in a channel (the token must allow it; joining is not needed): every page of
   * `getPresence`, following `after` to the end. Resolves with `{channel, members: [{user,
   * connections}] (sorted by user id), count}`; a user whose last connection just went is
   * listed with 0 connections until the service announces the leave. Keep it current with
   * `presence` events (sent to the channel's members only, and not above 100 users online).
   */
  async presence(channel) {
    const members = [];
    let after = null;
    let page;
    do {
      const frame = { action: "getPresence", channel, ...(after != null ? { after } : {}) };
      page = await this.#call(this.#request(frame, "presence", (reply) => reply.channel === channel));
      members.push(...page.members);
      after = page.after;
    } while (after != null);
    return { channel, members, count: page.count };
  }

  /**
   * Extend this connection with a fresh token (same user, same `channels` claim, later `exp`):
   * resolves with `{expiresAt}` (ISO 8601), and the token is used for every later connection
   * too; rejects with RefusalError (the service's reason) and changes nothing.
   */
  async renewToken(token) {
    const renewed = await this.#call(this.#request({ action: "renewToken", token: String(token) }, "renewed", () => true));
    this.setToken(token);
    return renewed;
  }

  /**
   * One page of this user's direct conversations, most recent first: resolves with
   * `{conversations: [{with, seq, last}], before}`; pass `before` back for older ones (null:
   * there are none). `seq` is each conversation's latest: compare it with the last one seen,
   * and `follow({with, after})` to read what is new.
   */
  directConversations({ before, limit } = {}) {
    const frame = { action: "getConversations" };
    if (limit != null) frame.limit = limit;
    if (before != null) frame.before = before;
    return this.#call(this.#request(frame, "conversations", (reply) => Array.isArray(reply.conversations)));
  }

  // --- the connection ----------------------------------------------------------------------

  #open() {
    const url = new URL(this.#options.url);
    url.searchParams.set("token", this.#token); // browsers cannot set headers on a WebSocket
    this.#setState(this.#everOpened ? "reconnecting" : "connecting", { attempt: this.#attempt });
    let socket;
    try {
      socket = new this.#options.WebSocket(url.toString());
    } catch (error) {
      this.#giveUp({ refused: true, reason: error.message });
      return;
    }
    this.#socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      if (this.#socket === socket) this.#onOpen();
    };
    socket.onmessage = (event) => this.#socket === socket && this.#onFrame(event.data);
    socket.onclose = (event) => this.#socket === socket && this.#onClose(event.code, event.reason, opened);
  }

  #onOpen() {
    this.#openedAt = Date.now();
    const reconnected = this.#everOpened;
    this.#everOpened = true;
    this.#owed = 0;
    this.#setState("open");
    this.#settleOpenWaiters(null);
    this.#startSync(reconnected);
    this.#armHeartbeat();
    this.#pump();
  }

  #onClose(code, reason, opened) {
    this.#socket = null;
    this.#clearTimers();
    this.#requeueAfterDrop();
    if (!this.#wantOpen) {
      this.#setState("closed", { code, reason });
      return;
    }
    if (!opened && !this.#everOpened) {
      this.#giveUp({ refused: true, code, reason });
      return;
    }
    if (this.#expiredSaid || this.#tokenExpired()) {
      this.#giveUp({ expired: true, code, reason });
      return;
    }
    if (opened && Date.now() - this.#openedAt >= this.#options.stableAfter) this.#attempt = 0;
    const ceiling = Math.min(this.#options.maxReconnectDelay, this.#options.reconnectDelay * 2 ** this.#attempt);
    const delay = Math.round(Math.random() * ceiling); // full jitter
    this.#attempt += 1;
    this.#setState("reconnecting", { code, reason, attempt: this.#attempt, delay });
    this.#timers.reconnect = setTimeout(() => this.#open(), delay);
  }

  /** Waiting to reconnect, and the network is back: no need to sit out the rest of a backoff
   * that grew while the network was away. */
  #reconnectNow() {
    if (this.#state !== "reconnecting" || !this.#timers.reconnect) return;
    clearTimeout(this.#timers.reconnect);
    this.#timers.reconnect = setTimeout(() => this.#open(), Math.random() * ONLINE_JITTER_MS);
  }

  /** The connection is presumed dead (no answer, or the service says it is closing). */
  #drop(reason) {
    const socket = this.#socket;
    if (!socket) return;
    this.#socket = null; // its late events are ignored from now on
    try {
      socket.close(4000, reason);
    } catch {
      // already closing
    }
    this.#onClose(4000, reason, true);
  }

  /** Stop for good: the connection was refused, or the token has expired. */
  #giveUp(detail) {
    this.#wantOpen = false;
    globalThis.removeEventListener?.("online", this.#onOnline);
    this.#socket = null;
    const error = new ClosedError(detail.expired ? "The token has expired." : "The connection was refused.");
    this.#failPending(error);
    this.#setState("closed", detail);
  }

  #tokenExpired() {
    const { exp } = tokenClaims(this.#token);
    return typeof exp === "number" && exp * 1000 <= Date.now();
  }

  #setState(state, detail = {}) {
    this.#state = state;
    this.#emit("status", { state, ...detail });
  }

  #settleOpenWaiters(error) {
    for (const waiter of this.#openWaiters.splice(0)) error ? waiter.reject(error) : waiter.resolve(this);
  }

  #clearTimers() {
    for (const name of Object.keys(this.#timers)) {
      clearTimeout(this.#timers[name]);
      this.#timers[name] = null;
    }
    for (const conversation of this.#conversations.values()) {
      clearTimeout(conversation.gapTimer);
      conversation.gapTimer = null;
    }
  }

  #failPending(error) {
    this.#settleOpenWaiters(error);
    const requests = [...this.#queue, ...(this.#inflight ? [this.#inflight] : []), ...this.#pendingSends.values()];
    this.#queue = [];
    this.#inflight = null;
    for (const request of new Set(requests)) this.#finish(request, { error });
    for (const conversation of this.#conversations.values()) {
      conversation.fetching = false;
      for (const waiter of conversation.startWaiters.splice(0)) waiter.reject(error);
    }
  }

  // --- heartbeat ---------------------------------------------------------------------------

  /** Called at every frame sent: the heartbeat goes only after heartbeatInterval of silence. */
  #armHeartbeat() {
    clearTimeout(this.#timers.heartbeat);
    this.#timers.heartbeat = setTimeout(() => this.#beat(), this.#options.heartbeatInterval);
  }

  #beat() {
    if (this.#state !== "open") return;
    // Something is about to be sent anyway; and a heartbeat is never sent while a request waits
    // for its answer, so that an unexpected reply to it could not be taken for that answer.
    if (this.#inflight || this.#queue.length) return this.#armHeartbeat();
    this.#write(HEARTBEAT);
  }

  #write(text) {
    this.#socket.send(text);
    this.#armHeartbeat();
  }

  // --- requests: one in flight at a time, so that a plain-text answer is known to be its ---

  #request(frame, expect, matches) {
    return { frame, text: JSON.stringify(frame), expect, matches, internal: false, retries: 0, sends: 0, timeouts: 0, done: false };
  }

  /** Queue an application request; its promise settles with its answer. */
  #call(request) {
    const promise = new Promise((resolve, reject) => Object.assign(request, { resolve, reject }));
    if (!this.#wantOpen) {
      this.#finish(request, { error: new ClosedError("Not connected: call connect() first.") });
      return promise;
    }
    const size = utf8Length(request.text);
    if (size > this.#options.maxFrameBytes) {
      const text = `Not sent: ${size} bytes, and API Gateway closes the connection on a frame over ${this.#options.maxFrameBytes} bytes.`;
      this.#finish(request, { error: new RefusalError(text, request.frame, { local: true }) });
      return promise;
    }
    this.#queue.push(request);
    this.#pump();
    return promise;
  }

  #pump() {
    if (this.#state !== "open" || !this.#socket || this.#inflight || this.#owed > 0 || this.#timers.hold) return;
    while (this.#queue.length && this.#queue[0].done) this.#queue.shift();
    const request = this.#queue.shift();
    if (!request) return;
    this.#inflight = request;
    request.timeouts = 0;
    request.sends = 0;
    this.#transmit(request);
  }

  #transmit(request) {
    if (request.onTransmit && request.sends === 0) request.onTransmit();
    request.sends += 1;
    this.#write(request.text);
    clearTimeout(this.#timers.request);
    this.#timers.request = setTimeout(() => this.#onTimeout(request), this.#options.requestTimeout);
  }

  /** No answer in time: send the same frame again (a send keeps its clientMessageId, so the
   * service stores it once); after timeoutsBeforeReconnect, presume the connection dead. */
  #onTimeout(request) {
    if (this.#inflight !== request) return;
    request.timeouts += 1;
    if (request.timeouts >= this.#options.timeoutsBeforeReconnect) return this.#drop("no answer");
    this.#transmit(request);
  }

  /** The in-flight request got its answer (or gave up): the next one may go, once the answers
   * still owed for its earlier sends have arrived (or requestTimeout has passed). */
  #release(request) {
    clearTimeout(this.#timers.request);
    this.#timers.request = null;
    if (this.#inflight === request) {
      this.#inflight = null;
      this.#owed += Math.max(0, request.sends - 1);
      if (this.#owed > 0) {
        clearTimeout(this.#timers.drain);
        this.#timers.drain = setTimeout(() => {
          this.#timers.drain = null;
          this.#owed = 0;
          this.#pump();
        }, this.#options.requestTimeout);
      }
    }
  }

  #finish(request, { value, error }) {
    if (request.done) return;
    request.done = true;
    this.#release(request);
    request.settle?.();
    if (error) request.onError?.(error);
    if (error) request.reject?.(error);
    else request.resolve?.(value);
    this.#pump();
  }

  /** A transient refusal, or a delivery reported incomplete: the same frame again, later. */
  #retryLater(request, text) {
    if (request.retries >= this.#options.maxRetries) return this.#refuse(request, text);
    request.retries += 1;
    this.#release(request);
    this.#queue.unshift(request);
    const delay = this.#options.retryDelay * 2 ** (request.retries - 1) * (0.5 + Math.random() / 2);
    // Everything waits: a rate limit counts every frame, and sends keep their order.
    this.#timers.hold = setTimeout(() => {
      this.#timers.hold = null;
      this.#pump();
    }, delay);
  }

  #refuse(request, text) {
    this.#emit("refusal", { text, request: request.frame, internal: request.internal });
    this.#finish(request, { error: new RefusalError(text, request.frame) });
  }

  /** After a drop: what was in flight goes first again; the client's own catch-up requests
   * are dropped (the next connection makes them anew). */
  #requeueAfterDrop() {
    const inflight = this.#inflight;
    this.#inflight = null;
    this.#owed = 0;
    if (inflight && !inflight.done) this.#queue.unshift(inflight);
    this.#queue = this.#queue.filter((request) => !request.internal && !request.done);
    for (const conversation of this.#conversations.values()) conversation.fetching = false;
  }

  // --- frames from the service -------------------------------------------------------------

  #onFrame(data) {
    const document = parseObject(data);
    if (document === null) return this.#onText(String(data));
    if (Array.isArray(document.messages)) return this.#onMessages(document.messages);
    if (isGatewayError(document)) return this.#onText(String(document.message), true);
    const keys = Object.keys(document);
    const inflight = this.#inflight;
    const key = keys.length === 1 ? keys[0] : keys.find((k) => REPLY_KEYS.has(k) || k === inflight?.expect) ?? null;
    const value = key === null || keys.length > 1 ? document : document[key];
    if (inflight && key === inflight.expect && value && inflight.matches(value)) return this.#onAnswer(inflight, value);
    if (key === "sent" && this.#pendingSends.has(value?.clientMessageId)) {
      // A send waiting to be sent again, answered by an earlier copy: that answer was owed.
      if (this.#owed > 0) this.#onLateAnswer();
      return this.#onAnswer(this.#pendingSends.get(value.clientMessageId), value);
    }
    if (REPLY_KEYS.has(key) || (inflight && key === inflight.expect)) return this.#onLateAnswer();
    if (key === "presenceChange" && value && typeof value === "object") {
      return this.#emit("presence", { channel: value.channel, user: normalizeId(value.user), state: value.state });
    }
    if (key === "tokenExpiring" && value && typeof value === "object") {
      const expiresAt = Date.parse(value.at);
      return this.#emit("tokenExpiring", { at: value.at, expiresAt: Number.isNaN(expiresAt) ? this.tokenExpiresAt : expiresAt });
    }
    this.#emit("frame", { type: key, data: value, raw: data });
  }

  #onAnswer(request, value) {
    this.#queue = this.#queue.filter((queued) => queued !== request);
    if (request.onAnswer) request.onAnswer(value);
    else this.#finish(request, { value });
  }

  /** A reply nobody waits for: the second answer to a frame sent twice. Dropped. */
  #onLateAnswer() {
    if (this.#owed > 0 && --this.#owed === 0) {
      clearTimeout(this.#timers.drain);
      this.#timers.drain = null;
      this.#pump();
    }
  }

  /** Plain text is the answer to the request in flight: a refusal (every success is JSON,
   * since every send carries a clientMessageId). `gateway`: API Gateway's own error. */
  #onText(text, gateway = false) {
    // The connection is about to be closed: do not come back with this token (the client's
    // clock may be behind the service's, and the $connect authorizer allows 30 s of leeway).
    if (EXPIRED.test(text)) this.#expiredSaid = true;
    const request = this.#inflight;
    if (!request) {
      if (this.#owed > 0) return this.#onLateAnswer();
      return this.#emit("refusal", { text, request: null, internal: false });
    }
    if (UNREGISTERED.test(text)) return this.#drop("connection not registered");
    if (gateway || TRANSIENT_REFUSALS.some((pattern) => pattern.test(text))) return this.#retryLater(request, text);
    this.#refuse(request, text);
  }

  #acknowledged(request, frame, sent) {
    if (sent.delivery === "incomplete" && request.retries < this.#options.maxRetries) {
      // Stored, not yet delivered to everyone: the same frame again finishes the delivery.
      return this.#retryLater(request, "delivery incomplete");
    }
    this.#finish(request, { value: sent });
    if (frame.action === "sendDirectMessage") {
      // The service sends a direct message to the sender's OTHER connections only.
      const message = { to: sent.to ?? frame.to, seq: sent.seq, content: frame.content, sender: this.#user, sent_at: new Date().toISOString(), id: sent.id, clientMessageId: sent.clientMessageId };
      this.#receive(message, "sent");
    } else {
      const conversation = this.#conversations.get(conversationFor(frame).key);
      if (conversation && typeof sent.seq === "number") {
        conversation.order.expect(sent.seq);
        this.#watchGap(conversation);
      }
    }
  }

  #onMessages(messages) {
    for (const message of messages) {
      if (message && typeof message === "object") this.#receive(message, "live");
    }
  }

  #receive(message, source) {
    if (typeof message.seq !== "number") {
      // Anonymous room messages carry no seq (the tutorial's shape, {"content"}): nothing to order them by.
      if (this.#options.room) this.#emit("message", { conversation: ROOM, message, source });
      return;
    }
    const descriptor = conversationOf(message, this.#user);
    let conversation = this.#conversations.get(descriptor.key);
    if (!conversation && descriptor.type === "dm") conversation = this.#follow(descriptor);
    if (!conversation) return; // a channel left, or the room when not followed
    if (conversation.order.last === null && !conversation.fetching && this.#options.recentLimit === 0) {
      conversation.order.last = message.seq - 1; // no recent messages wanted: start here
    }
    conversation.order.accept(message, source);
    this.#watchGap(conversation);
  }

  // --- conversations: following, catching up, filling gaps ---------------------------------

  /** Start following (`after`: from that seq on, rather than from the newest messages). */
  #follow(descriptor, after = null) {
    let conversation = this.#conversations.get(descriptor.key);
    if (conversation) return conversation;
    conversation = { descriptor, fetching: false, gapTimer: null, joinSeq: 0, startWaiters: [], opening: false };
    conversation.order = new SequenceBuffer((message, source) => {
      if (source === "recovery" && this.#sync) this.#sync.recovered += 1;
      this.#emit("message", { conversation: descriptor, message, source });
    });
    if (Number.isInteger(after) && after >= 0 && descriptor.type !== "channel") {
      conversation.order.last = after;
      conversation.opening = true; // what it fetches first is "recent", not recovered
    }
    this.#conversations.set(descriptor.key, conversation);
    this.#emit("conversation", { conversation: descriptor, following: true });
    if (this.#state === "open" && descriptor.type !== "channel") this.#catchUp(conversation);
    return conversation;
  }

  #unfollow(key) {
    const conversation = this.#conversations.get(key);
    if (!conversation) return;
    clearTimeout(conversation.gapTimer);
    this.#conversations.delete(key);
    this.#sync?.waiting.delete(key);
    this.#emit("conversation", { conversation: conversation.descriptor, following: false });
    this.#checkSynced();
  }

  #joinRequest(channel, internal) {
    const request = this.#request({ action: "join", channel }, "joined", (joined) => joined.channel === channel);
    request.internal = internal;
    request.onAnswer = (joined) => {
      this.#channels.add(channel);
      const conversation = this.#follow(channelConversation(channel));
      conversation.joinSeq = Number(joined.seq) || 0;
      this.#catchUp(conversation, true); // queued first, so it goes right after this answer
      this.#finish(request, { value: joined });
    };
    if (internal) request.onError = () => this.#failedRejoin(channel);
    return request;
  }

  /** A channel that cannot be rejoined (the token no longer allows it) is no longer followed. */
  #failedRejoin(channel) {
    this.#channels.delete(channel);
    this.#unfollow(channelConversation(channel).key);
  }

  /** After an open: rejoin every channel, then recover every conversation followed. */
  #startSync(reconnected) {
    const conversations = [...this.#conversations.values()];
    this.#sync = { startedAt: Date.now(), reconnected, waiting: new Set(conversations.map((c) => c.descriptor.key)), recovered: 0 };
    // Queued first, before what the application asked meanwhile: recoveries, and before them
    // the rejoins (a channel's recovery follows its rejoin, and a send to it needs it).
    const rejoins = [...this.#channels].map((channel) => this.#joinRequest(channel, true));
    const recoveries = conversations.filter((c) => c.descriptor.type !== "channel").map((c) => this.#catchUpRequest(c));
    this.#queue.unshift(...rejoins, ...recoveries.filter(Boolean));
    this.#checkSynced();
  }

  #checkSynced() {
    const sync = this.#sync;
    if (!sync || sync.waiting.size) return;
    this.#sync = null;
    this.#emit("synced", { reconnected: sync.reconnected, ms: Date.now() - sync.startedAt, recovered: sync.recovered });
  }

  /**
   * Fetch what the conversation is missing: its newest messages when it has no baseline yet,
   * else everything after `last`, following the `after` cursor until it is null.
   */
  #catchUp(conversation, first = false) {
    const request = this.#catchUpRequest(conversation);
    if (!request) return;
    if (first) this.#queue.unshift(request);
    else this.#queue.push(request);
    this.#pump();
  }

  /** The request #catchUp queues (marking the conversation as fetching), or null if none is
   * needed now. */
  #catchUpRequest(conversation) {
    if (conversation.fetching || this.#state !== "open") return null;
    const { order, descriptor } = conversation;
    const start = order.last === null;
    if (start && this.#options.recentLimit === 0) {
      if (descriptor.type === "channel") order.applyPage([], conversation.joinSeq, "recovery", { start: true });
      this.#caughtUp(conversation);
      return null;
    }
    const frame = { action: "getRecentMessages", ...target(descriptor), limit: start ? this.#options.recentLimit : 100 };
    if (!start) frame.after = order.last;
    const request = this.#request(frame, "history", (page) => sameConversation(page, descriptor.channel, descriptor.with));
    request.internal = true;
    // Everything received before the request left was stored before the service reads: the
    // reply covers it (docs/client.md, "How recovery knows it has everything").
    request.onTransmit = () => (request.highWater = order.highWater());
    request.onAnswer = (page) => {
      conversation.fetching = false;
      const newest = page.messages.reduce((max, m) => Math.max(max, m.seq), 0);
      const covered = page.after ?? Math.max(newest, request.highWater ?? 0, start ? conversation.joinSeq : 0, order.last ?? 0);
      order.applyPage(page.messages, covered, start || conversation.opening ? "recent" : "recovery", { start });
      if (page.after != null) this.#catchUp(conversation, true); // the next page goes next
      else this.#caughtUp(conversation);
      this.#finish(request, { value: page });
    };
    request.onError = (error) => {
      conversation.fetching = false;
      if (!(error instanceof RefusalError)) return;
      for (const waiter of conversation.startWaiters.splice(0)) waiter.reject(error);
      if ((start || conversation.opening) && descriptor.type === "dm") this.#unfollow(descriptor.key);
      if (this.#sync?.waiting.delete(descriptor.key)) this.#checkSynced();
    };
    conversation.fetching = true;
    return request;
  }

  #caughtUp(conversation) {
    conversation.opening = false;
    for (const waiter of conversation.startWaiters.splice(0)) waiter.resolve();
    this.#watchGap(conversation);
    if (this.#sync?.waiting.delete(conversation.descriptor.key)) this.#checkSynced();
  }

  /** A jump in seq: wait gapWait for the missing frames, then fetch what is still missing. */
  #watchGap(conversation) {
    if (conversation.gapTimer || conversation.fetching || !conversation.order.hasGap()) return;
    conversation.gapTimer = setTimeout(() => {
      conversation.gapTimer = null;
      if (conversation.order.hasGap()) this.#catchUp(conversation);
    }, this.#options.gapWait);
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** The fields of a request that name a conversation. */
function target(descriptor) {
  if (descriptor.type === "channel") return { channel: descriptor.channel };
  if (descriptor.type === "dm") return { with: descriptor.with };
  return {};
}

/** Does a history reply belong to the conversation asked for? */
function sameConversation(page, channel, other) {
  if (!page || !Array.isArray(page.messages)) return false;
  if (channel != null) return page.channel === channel;
  if (other != null) return typeof page.with === "string" && normalizeId(page.with) === normalizeId(other);
  return page.channel === undefined && page.with === null;
}

/** A JSON object, or null for plain text (and for JSON that is not an object). */
function parseObject(data) {
  if (typeof data !== "string") return null;
  try {
    const value = JSON.parse(data);
    return value && typeof value === "object" && !Array.isArray(value) ? value : null;
  } catch {
    return null;
  }
}

/** API Gateway's own error frame, e.g. {"message": "Internal server error", "connectionId": ..., "requestId": ...}. */
function isGatewayError(document) {
  return typeof document.message === "string" && ("requestId" in document || "connectionId" in document);
}
