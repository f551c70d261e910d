/**
 * chatclient.js: the client of the serverless-websocket chat protocol (docs/protocol.md), an ES
 * module with no dependencies and no build step, over the modules in client/. Usage and
 * guarantees: docs/client.md.
 *
 * ```js
 * import { ChatClient } from "./chatclient.js";
 * const chat = new ChatClient({ url: "wss://abc.execute-api.us-east-1.amazonaws.com/dev", token, getToken });
 * chat.addEventListener("message", (event) => show(event.detail.conversation, event.detail.message));
 * await chat.connect();
 * await chat.join("general");
 * await chat.send({ channel: "general", content: "hi" });
 * ```
 *
 * What it does for the application:
 * - connects with the token as a WebSocket subprotocol (never in the URL), reconnects by itself
 *   after a drop, with exponential backoff and full jitter, asks `getToken` for a fresh token
 *   when the old one has expired or is no longer accepted, and stops when nothing helps
 *   (client/connection.js);
 * - sends every request with a `ref` and matches each reply to its request, several in flight
 *   at once, and decides on refusals by their code: sent again later, after a reconnect, or
 *   refused (client/requests.js);
 * - after every reconnect rejoins its channels and recovers each conversation it follows from
 *   its last contiguous `seq` (`getRecentMessages` + `after`, following the cursor to the end);
 * - delivers each conversation's messages once each, in `seq` order (a frame that jumps ahead
 *   waits for the gap to be filled, and the gap is fetched if it is not filled soon)
 *   (client/conversation.js);
 * - gives every send a `clientMessageId` and sends it again, with the same id, until it is
 *   acknowledged or refused; the sends to one conversation go one after the other, in order;
 * - sends `{"action": "heartbeat"}` only when nothing else was sent for `heartbeatInterval`
 *   (client/heartbeat.js);
 * - wraps the other requests: who is online (`presence`), renewing the token (`renewToken`,
 *   and by itself on the service's expiry notice when `getToken` is given), the user's direct
 *   conversations (`directConversations`), and passes on presence changes and the token expiry
 *   notice as events.
 *
 * @module chatclient
 */

import { Connection } from "./client/connection.js";
import { Conversation, ROOM, SequenceBuffer, channelConversation, conversationFor, conversationOf } from "./client/conversation.js";
import { ClosedError, RefusalError } from "./client/errors.js";
import { HEARTBEAT, Heartbeat } from "./client/heartbeat.js";
import { Requests } from "./client/requests.js";
import { newClientMessageId, parseObject, tokenClaims } from "./client/util.js";

export { ClosedError, RefusalError, SequenceBuffer, conversationFor, conversationOf, newClientMessageId, tokenClaims };
export { CODES, decide } from "./client/errors.js";
export { backoffDelay, socketArguments } from "./client/connection.js";

/** The options and their defaults (docs/client.md says why each has its value). */
export const DEFAULTS = Object.freeze({
  /** How many of a conversation's newest messages are delivered when the client starts
   * following it (connect for the room, join, a new direct conversation); 0: none, start at
   * the next message. At most 100 (the protocol's `limit`). */
  recentLimit: 20,
  /** Follow the room (every connection gets its messages; false: they are ignored). */
  room: true,
  /** Milliseconds to wait for the reply to a request before sending it again. */
  requestTimeout: 10_000,
  /** Unanswered sends of one request after which the connection is presumed dead (a
   * half-open TCP connection never reports an error): it is closed and opened again. */
  timeoutsBeforeReconnect: 2,
  /** Requests sent and waiting for their reply at once (each reply carries its request's ref). */
  maxInFlight: 8,
  /** Milliseconds between two `typing` frames of one conversation: the service forwards at most
   * one per 2 s per user and conversation, so more would be dropped anyway. */
  typingInterval: 2_000,
  /** Reconnect backoff: the first delay's ceiling, doubling each attempt up to the maximum;
   * the delay itself is drawn uniformly below the ceiling ("full jitter"). */
  reconnectDelay: 500,
  maxReconnectDelay: 30_000,
  /** A connection that stayed open this long resets the backoff. */
  stableAfter: 10_000,
  /** Reconnect attempts in a row that never opened (while the browser is online) after which
   * the token is presumed no longer accepted: getToken is asked for a fresh one, once; without
   * it (or if that does not help) the client stops and reports `refused`. */
  handshakeFailures: 5,
  /** `() => Promise<string>`: a fresh token, asked for on the service's expiry notice (then
   * renewToken with it) and before reconnecting when the token has expired or is refused. */
  getToken: null,
  /** Put the token in the URL (`?token=`) instead of offering it as a subprotocol: only for
   * an environment whose WebSocket cannot offer subprotocols (docs/client.md). */
  tokenInQuery: false,
  /** Milliseconds without any frame sent after which a heartbeat is sent (API Gateway closes
   * a connection after 10 minutes without a frame). */
  heartbeatInterval: 9 * 60_000,
  /** Milliseconds a jump in `seq` may wait for the missing frames before they are fetched
   * (frames of one conversation often arrive swapped; most gaps close by themselves). */
  gapWait: 1_000,
  /** Refusals with `retry: true` (a rate limit, a busy conversation, an AWS failure) and
   * deliveries reported incomplete or pending are sent again after this delay, doubling, at
   * most `maxRetries` times. */
  retryDelay: 1_000,
  maxRetries: 5,
  /** API Gateway closes the connection (1009) on a client frame over 32 KB. */
  maxFrameBytes: 32 * 1024,
  /** The WebSocket constructor (e.g. the `ws` package in Node before version 22). */
  WebSocket: globalThis.WebSocket,
});

/** The conversation fields of a request: `channel`, `with`, or neither (the room). */
function targetFields(target = {}) {
  if (target.channel != null) return { channel: target.channel };
  if (target.with != null) return { with: target.with };
  return {};
}

/** The service's notice to a connection whose token expired, just before it closes it (plain
 * text, not a reply: it carries no ref). */
const EXPIRED = /^Your token has expired/;
/** Replies without a ref: this client never sends a request without one, so such a document
 * is nobody's (a live frame is any other key). */
const REPLY_KEYS = new Set(["sent", "joined", "left", "history", "presence", "renewed", "conversations"]);

/**
 * A client of the chat service. Events (each a CustomEvent; the payload is `event.detail`):
 * - `status`: `{state, code?, reason?, attempt?, delay?, renewing?, refused?, failures?,
 *   expired?, banned?}`, where `state` is "connecting", "open", "reconnecting" or "closed";
 * - `message`: `{conversation, message, source}`, each conversation's messages in seq order,
 *   once each; `source` is "recent", "live", "recovery" or "sent";
 * - `refusal`: `{text, code, retry, request, internal}`, every refusal the service sent;
 * - `conversation`: `{conversation, following}`;
 * - `synced`: `{reconnected, ms, recovered}`;
 * - `presence`: `{channel, user, state}`;
 * - `tokenExpiring`: `{at, expiresAt}`;
 * - `renewal`: `{expiresAt}` or `{error}`, the outcome of a renewal the client made itself
 *   (getToken on the expiry notice);
 * - `read`: `{conversation, seq}`, the user's read position moved on another of their connections;
 * - `readReceipt`: `{conversation, user, seq}`, the other user of a DM has read up to `seq`;
 * - `typing`: `{conversation, user}`, someone is typing there (show it for 5 s after the last);
 * - `left`: `{channel, reason}`, a moderator took the user out of a channel it followed;
 * - `banned`: `{reason, until}`, the service banned the user: no reconnect until connect();
 * - `frame`: `{type, data, raw}`, a live frame this client does not know.
 */
export class ChatClient extends EventTarget {
  #options;
  #token;
  #user;
  #state = "idle";
  #connection;
  #requests;
  #heartbeat;
  #channels = new Set(); // channels to be in: rejoined after every reconnect
  #conversations = new Map(); // key -> Conversation
  #sync = null; // {startedAt, reconnected, waiting: Set<key>, recovered}
  #openWaiters = []; // connect() callers waiting for the open
  #typingSent = new Map(); // conversation key -> when its last typing frame went (ms)

  /**
   * @param {object} options `url` (ws:// or wss://, the stage URL) and `token` (a JWT) are
   *   required; every other option is in DEFAULTS.
   */
  constructor({ url, token, ...options }) {
    super();
    if (!url || !token) throw new TypeError("ChatClient needs a url and a token");
    this.#options = { ...DEFAULTS, ...options, url: String(url) };
    if (typeof this.#options.WebSocket !== "function") throw new TypeError("no WebSocket: pass options.WebSocket");
    this.#heartbeat = new Heartbeat(this.#options.heartbeatInterval, () => this.#state === "open" && this.#write(HEARTBEAT));
    this.#connection = new Connection(this.#options, {
      token: () => this.#token,
      setToken: (fresh) => this.setToken(fresh),
      tokenExpired: () => this.#tokenExpired(),
      status: (state, detail) => this.#setState(state, detail),
      open: (reconnected) => this.#onOpen(reconnected),
      frame: (data) => this.#onFrame(data),
      down: () => this.#onDown(),
      giveUp: (error) => this.#failPending(error),
    });
    this.#requests = new Requests(this.#options, {
      isOpen: () => this.#state === "open" && this.#connection.isOpen,
      write: (text) => this.#write(text),
      drop: (reason) => this.#connection.drop(reason),
      refused: (request, error) => this.#emit("refusal", { text: error.text, code: error.code, retry: error.retry, request: request?.frame ?? null, internal: request?.internal ?? false }),
      expired: () => this.#connection.markExpired(),
      renewable: () => typeof this.#options.getToken === "function",
      random: () => Math.random(),
    });
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
    this.#user = tokenClaims(this.#token).sub ?? null;
    this.#connection.tokenChanged();
  }

  /** When the current token expires (its `exp`, in ms since the epoch), or null. */
  get tokenExpiresAt() {
    const { exp } = tokenClaims(this.#token);
    return typeof exp === "number" ? exp * 1000 : null;
  }

  /**
   * Open the connection; from now on the client keeps it open until close(). Resolves when it
   * is open; rejects with ClosedError if it gives up before (a browser cannot tell a refused
   * token, HTTP 403, from a wrong URL: both are a close before the open).
   */
  connect() {
    const opened = new Promise((resolve, reject) => this.#openWaiters.push({ resolve, reject }));
    if (this.#state === "open") this.#settleOpenWaiters(null);
    if (this.#connection.wanted) return opened;
    if (this.#options.room) this.#follow(ROOM);
    this.#connection.start();
    return opened;
  }

  /** Close on purpose: no reconnect; every pending request rejects with ClosedError. */
  close(code = 1000, reason = "bye") {
    this.#clearTimers();
    this.#failPending(new ClosedError());
    this.#connection.stop(code, reason);
  }

  /** Join a channel: resolves with `{channel, seq}`; its messages follow as `message` events. */
  join(channel) {
    return this.#call(this.#joinRequest(channel, false));
  }

  /** Leave a channel (harmless when not in it): resolves with `{channel}`. */
  leave(channel) {
    this.#channels.delete(channel);
    this.#unfollow(channelConversation(channel).key);
    return this.#call(this.#requests.create({ action: "leave", channel }, "left", { lane: channelConversation(channel).key }));
  }

  /**
   * Follow a direct conversation (`{with: "bob"}`) or the room (`{}`) without waiting for a
   * message: its newest messages are delivered, and it is recovered after every reconnect.
   * With `after` (a seq: e.g. the last one the reader saw), every message after it is
   * delivered instead (`source: "recent"`). Resolves once they are delivered; rejects with
   * RefusalError if the service refuses.
   */
  follow(target = {}) {
    const descriptor = conversationFor(target);
    if (descriptor.type === "channel") return this.join(descriptor.channel);
    if (!this.#connection.wanted) return Promise.reject(new ClosedError("Not connected: call connect() first."));
    const conversation = this.#follow(descriptor, target.after);
    if (conversation.order.last !== null && !conversation.opening) return Promise.resolve(descriptor);
    return new Promise((resolve, reject) => {
      conversation.startWaiters.push({ resolve: () => resolve(descriptor), reject });
      this.#catchUp(conversation);
    });
  }

  /** Stop following a direct conversation (its messages are ignored until it is followed again,
   * or a new one arrives: a direct message from someone is followed by itself). */
  unfollow(target) {
    this.#unfollow(conversationFor(target).key);
  }

  /**
   * Send a message to a channel (`{channel, content}`), a user (`{to, content}`) or the room
   * (`{content}`), with a `clientMessageId` of its own (or the one given). Resolves with the
   * acknowledgement `{seq, id, clientMessageId, duplicate, delivery, channel? | to?,
   * recipientOnline?}` once the service stored it; rejects with RefusalError when refused
   * (also, before sending, a frame over maxFrameBytes). The sends to one conversation go one
   * after the other, in the order they were made.
   */
  send({ channel, to, content, clientMessageId = newClientMessageId() }) {
    const frame = to != null
      ? { action: "sendDirectMessage", to, content, clientMessageId }
      : { action: "sendMessage", ...(channel != null ? { channel } : {}), content, clientMessageId };
    const request = this.#requests.create(frame, "sent", { lane: conversationFor({ channel, to }).key });
    request.onAnswer = (sent) => this.#acknowledged(request, frame, sent);
    return this.#call(request);
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
    return this.#call(this.#requests.create(frame, "history"));
  }

  /**
   * Any other request, for actions this version does not wrap: resolves with the value of the
   * reply's `replyKey` (for a reply of several keys, the whole reply), rejects with
   * RefusalError. The reply is the one that carries this request's ref (`matches`, from the
   * time replies carried none, is no longer needed and is ignored).
   */
  request(frame, replyKey) {
    return this.#call(this.#requests.create(frame, replyKey));
  }

  /**
   * Who is online in a channel (the token must allow it; joining is not needed): every page of
   * `getPresence`, following `after` to the end. Resolves with `{channel, members: [{user,
   * connections}] (sorted by user id), count}`; a user whose last connection just went is
   * listed with 0 connections until the service announces the leave.
   */
  async presence(channel) {
    const members = [];
    let after = null;
    let page;
    do {
      const frame = { action: "getPresence", channel, ...(after != null ? { after } : {}) };
      page = await this.#call(this.#requests.create(frame, "presence"));
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
    const renewed = await this.#call(this.#requests.create({ action: "renewToken", token: String(token) }, "renewed"));
    this.setToken(token);
    return renewed;
  }

  /**
   * Move the user's read position in a conversation (`{channel}`, `{with}` or `{}`: the room)
   * forward to `seq`, on the service, for every device: resolves with `{seq, ...}` (the
   * position now, which may be further); the user's other connections get a `read` event and a
   * DM's other user a `readReceipt`.
   */
  markRead(target, seq) {
    const frame = { action: "markRead", ...targetFields(target), seq };
    return this.#call(this.#requests.create(frame, "read"));
  }

  /**
   * Tell a channel (`{channel}`, joined) or a DM (`{with}`) that the user is typing: call it on
   * every keystroke, it sends at most one frame per `typingInterval` per conversation (and
   * resolves null for the others). Resolves with `{forwarded}`.
   */
  typing(target) {
    const key = conversationFor(target).key;
    const now = Date.now();
    if (now - (this.#typingSent.get(key) ?? -Infinity) < this.#options.typingInterval) return Promise.resolve(null);
    this.#typingSent.set(key, now);
    return this.#call(this.#requests.create({ action: "typing", ...targetFields(target) }, "typing"));
  }

  /**
   * One page of this user's conversations on every device (direct conversations, and the
   * channels and room the user joined or marked read), most recent first: resolves with
   * `{conversations: [{with | channel | room, seq, readSeq, unread, last, online?}], before}`;
   * pass `before` back for older ones.
   */
  directConversations({ before, limit } = {}) {
    const frame = { action: "getConversations" };
    if (limit != null) frame.limit = limit;
    if (before != null) frame.before = before;
    return this.#call(this.#requests.create(frame, "conversations"));
  }

  // --- the connection ----------------------------------------------------------------------

  #onOpen(reconnected) {
    this.#settleOpenWaiters(null);
    this.#startSync(reconnected);
    this.#heartbeat.touch();
    this.#requests.pump();
  }

  /** The socket is gone: what was in flight goes again on the next connection. */
  #onDown() {
    this.#clearTimers();
    this.#requests.onDown();
    for (const conversation of this.#conversations.values()) conversation.fetching = false;
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
    this.#heartbeat.stop();
    for (const conversation of this.#conversations.values()) conversation.stopWatching();
  }

  #failPending(error) {
    this.#settleOpenWaiters(error);
    this.#requests.failAll(error);
    for (const conversation of this.#conversations.values()) {
      conversation.fetching = false;
      conversation.failWaiters(error);
    }
  }

  #write(text) {
    this.#connection.send(text);
    this.#heartbeat.touch();
  }

  /** Queue an application request; its promise settles with its answer. */
  #call(request) {
    if (!this.#connection.wanted) {
      const promise = new Promise((resolve, reject) => Object.assign(request, { resolve, reject }));
      this.#requests.finish(request, { error: new ClosedError("Not connected: call connect() first.") });
      return promise;
    }
    return this.#requests.call(request);
  }

  // --- frames from the service -------------------------------------------------------------

  #onFrame(data) {
    const document = parseObject(data);
    if (document === null) return this.#onText(String(data));
    if (document.reply && typeof document.reply === "object") return this.#requests.onReply(document.reply);
    if (Array.isArray(document.messages)) return this.#onMessages(document.messages);
    if (isGatewayError(document)) return this.#onText(String(document.message));
    const keys = Object.keys(document);
    const key = keys.length === 1 ? keys[0] : null;
    const value = key === null ? document : document[key];
    if (key === "left" && value && typeof value === "object" && typeof value.channel === "string" && typeof value.reason === "string") {
      return this.#removedFrom(value.channel, value.reason);
    }
    if (key === "banned" && value && typeof value === "object" && !Array.isArray(value)) {
      // The service closes the connection next, and refuses $connect while the ban lasts.
      const ban = { reason: value.reason ?? null, until: value.until ?? null };
      this.#connection.markBanned(ban);
      return this.#emit("banned", ban);
    }
    if (keys.some((k) => REPLY_KEYS.has(k))) return; // a reply without a ref: not to this client
    if (key === "presenceChange" && value && typeof value === "object") {
      return this.#emit("presence", { channel: value.channel, user: value.user, state: value.state });
    }
    if (key === "tokenExpiring" && value && typeof value === "object") return this.#onTokenExpiring(value);
    if (key === "read" && value && typeof value === "object" && Number.isInteger(value.seq)) {
      return this.#emit("read", { conversation: conversationFor(value.channel != null ? { channel: value.channel } : value.with != null ? { with: value.with } : {}), seq: value.seq });
    }
    if (key === "readReceipt" && value && typeof value === "object" && Number.isInteger(value.seq)) {
      return this.#emit("readReceipt", { conversation: conversationFor({ with: value.with }), user: value.with, seq: value.seq });
    }
    if (key === "typing" && value && typeof value === "object" && typeof value.user === "string" && (value.channel != null || value.with != null)) {
      return this.#emit("typing", { conversation: conversationFor(value.channel != null ? { channel: value.channel } : { with: value.with }), user: value.user });
    }
    this.#emit("frame", { type: key, data: value, raw: data });
  }

  /** Taken out of a channel (a moderator's ban): no longer in it, not rejoined after a
   * reconnect; `left` says which and why. */
  #removedFrom(channel, reason) {
    const key = channelConversation(channel).key;
    if (!this.#channels.has(channel) && !this.#conversations.has(key)) return; // left here first (a race)
    this.#channels.delete(channel);
    this.#unfollow(key);
    this.#emit("left", { channel, reason });
  }

  /** Plain text is never a reply (every request carries a ref): the expiry notice, or an
   * error of API Gateway's own (which carries no ref: the request it answers times out and
   * goes again). */
  #onText(text) {
    // The connection is about to be closed: do not come back with this token (the client's
    // clock may be behind the service's, and the $connect authorizer allows 30 s of leeway).
    if (EXPIRED.test(text)) return this.#connection.markExpired();
    this.#emit("refusal", { text, code: null, retry: false, request: null, internal: false });
  }

  #onTokenExpiring(value) {
    const parsed = Date.parse(value.at);
    const expiresAt = Number.isNaN(parsed) ? this.tokenExpiresAt : parsed;
    this.#emit("tokenExpiring", { at: value.at, expiresAt });
    const { getToken } = this.#options;
    if (typeof getToken !== "function") return;
    Promise.resolve()
      .then(() => getToken())
      .then((token) => this.renewToken(token))
      .then(({ expiresAt: renewedUntil }) => this.#emit("renewal", { expiresAt: renewedUntil }))
      .catch((error) => this.#emit("renewal", { error }));
  }

  #acknowledged(request, frame, sent) {
    if ((sent.delivery === "incomplete" || sent.delivery === "pending") && this.#requests.retryLater(request)) {
      // Stored, not yet delivered to everyone: the same frame again finishes the delivery.
      return;
    }
    this.#requests.finish(request, { value: sent });
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
    conversation = new Conversation(descriptor, (message, source) => {
      if (source === "recovery" && this.#sync) this.#sync.recovered += 1;
      this.#emit("message", { conversation: descriptor, message, source });
    }, { after });
    this.#conversations.set(descriptor.key, conversation);
    this.#emit("conversation", { conversation: descriptor, following: true });
    if (this.#state === "open" && descriptor.type !== "channel") this.#catchUp(conversation);
    return conversation;
  }

  #unfollow(key) {
    const conversation = this.#conversations.get(key);
    if (!conversation) return;
    conversation.stopWatching();
    this.#conversations.delete(key);
    this.#sync?.waiting.delete(key);
    this.#emit("conversation", { conversation: conversation.descriptor, following: false });
    this.#checkSynced();
  }

  #joinRequest(channel, internal) {
    const request = this.#requests.create({ action: "join", channel }, "joined", { lane: channelConversation(channel).key, internal });
    request.onAnswer = (joined) => {
      this.#channels.add(channel);
      const conversation = this.#follow(channelConversation(channel));
      conversation.joinSeq = Number(joined.seq) || 0;
      this.#catchUp(conversation, true); // queued first, so it goes right after this answer
      this.#requests.finish(request, { value: joined });
    };
    // A rejoin the service refuses (the token no longer allows the channel) ends following it;
    // one cut short by close() does not: connect() again rejoins.
    if (internal) request.onError = (error) => error instanceof RefusalError && this.#failedRejoin(channel);
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
    this.#sync = { startedAt: Date.now(), reconnected, waiting: new Set(conversations.map((c) => c.key)), recovered: 0 };
    // Queued first, before what the application asked meanwhile: recoveries, and before them
    // the rejoins (a channel's recovery follows its rejoin; a send to it shares its lane).
    const recoveries = conversations.filter((c) => c.descriptor.type !== "channel").map((c) => this.#catchUpRequest(c)).filter(Boolean);
    const rejoins = [...this.#channels].map((channel) => this.#joinRequest(channel, true));
    this.#requests.prepend([...rejoins, ...recoveries]);
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
    if (request) this.#requests.enqueue(request, { first });
  }

  /** The request #catchUp queues (marking the conversation as fetching), or null if none is
   * needed now. */
  #catchUpRequest(conversation) {
    if (conversation.fetching || this.#state !== "open") return null;
    const start = conversation.order.last === null;
    const frame = conversation.catchUpFrame(this.#options.recentLimit);
    if (frame === null) {
      this.#caughtUp(conversation);
      return null;
    }
    const request = this.#requests.create(frame, "history", { internal: true });
    // Everything received before the request left was stored before the service reads: the
    // reply covers it (docs/client.md, "How recovery knows it has everything").
    request.onTransmit = () => (request.highWater = conversation.order.highWater());
    request.onAnswer = (page) => {
      conversation.fetching = false;
      const more = conversation.applyCatchUp(page, { start, highWater: request.highWater });
      if (more) this.#catchUp(conversation, true); // the next page goes next
      else this.#caughtUp(conversation);
      this.#requests.finish(request, { value: page });
    };
    request.onError = (error) => {
      conversation.fetching = false;
      if (!(error instanceof RefusalError)) return;
      conversation.failWaiters(error);
      if ((start || conversation.opening) && conversation.descriptor.type === "dm") this.#unfollow(conversation.key);
      if (this.#sync?.waiting.delete(conversation.key)) this.#checkSynced();
    };
    conversation.fetching = true;
    return request;
  }

  #caughtUp(conversation) {
    conversation.caughtUp();
    this.#watchGap(conversation);
    if (this.#sync?.waiting.delete(conversation.key)) this.#checkSynced();
  }

  /** A jump in seq: wait gapWait for the missing frames, then fetch what is still missing. */
  #watchGap(conversation) {
    conversation.watchGap(this.#options.gapWait, () => this.#catchUp(conversation));
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

/** API Gateway's own error frame, e.g. {"message": "Internal server error", "connectionId": ..., "requestId": ...}. */
function isGatewayError(document) {
  return typeof document.message === "string" && ("requestId" in document || "connectionId" in document);
}
