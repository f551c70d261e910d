/**
 * Conversations: which one a message belongs to, the order of its messages (SequenceBuffer),
 * and catching up with `getRecentMessages` + `after` (Conversation). User ids are compared as
 * they are: the service never maps one id onto another, it refuses ids that are not already in
 * their canonical form (docs/protocol.md, "Rules for every action").
 *
 * @module client/conversation
 */

export const ROOM = Object.freeze({ key: "room", type: "room" });

export function channelConversation(channel) {
  return Object.freeze({ key: `channel:${channel}`, type: "channel", channel });
}

export function directConversation(user) {
  return Object.freeze({ key: `dm:${user}`, type: "dm", with: user });
}

/**
 * Which conversation a message belongs to, as `{key, type, channel?, with?}`: the room, a
 * channel, or the direct conversation with the other user (`me` is this client's user id).
 */
export function conversationOf(message, me) {
  if (typeof message.channel === "string") return channelConversation(message.channel);
  if (typeof message.to === "string") return directConversation(message.sender === me ? message.to : message.sender);
  return ROOM;
}

/** A conversation from what an application names: `{channel}`, `{with}` (or `{to}`), or `{}`. */
export function conversationFor({ channel, with: other, to } = {}) {
  if (channel != null) return channelConversation(channel);
  if (other != null || to != null) return directConversation(other ?? to);
  return ROOM;
}

/** The fields of a request that name a conversation. */
export function targetOf(descriptor) {
  if (descriptor.type === "channel") return { channel: descriptor.channel };
  if (descriptor.type === "dm") return { with: descriptor.with };
  return {};
}

/**
 * One conversation's order: `last` is the highest seq delivered with nothing missing below it
 * (null until a baseline is known); frames that jump ahead wait in `buffer`.
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
 * A followed conversation: its order, whether a catch-up request is out (`fetching`), the gap
 * timer, the seq its channel had when joined, and the callers of follow() waiting for its first
 * page. The client sends its requests; this class says what to ask and what a reply means.
 */
export class Conversation {
  /** `after`: start from that seq (deliver everything after it, as "recent") instead of from
   * the newest messages. */
  constructor(descriptor, deliver, { after = null } = {}) {
    this.descriptor = descriptor;
    this.order = new SequenceBuffer(deliver);
    this.fetching = false;
    this.gapTimer = null;
    this.joinSeq = 0;
    this.startWaiters = [];
    this.opening = false; // what it fetches first is "recent", not recovered
    if (Number.isInteger(after) && after >= 0 && descriptor.type !== "channel") {
      this.order.last = after;
      this.opening = true;
    }
  }

  get key() {
    return this.descriptor.key;
  }

  /**
   * The `getRecentMessages` frame that fetches what the conversation is missing: its newest
   * `recentLimit` messages when it has no baseline yet, else the oldest 100 after `last`. Null
   * when there is nothing to ask: no baseline and no recent messages wanted (then it starts at
   * the next message; a channel starts after the seq it had when joined).
   */
  catchUpFrame(recentLimit) {
    const start = this.order.last === null;
    if (start && recentLimit === 0) {
      if (this.descriptor.type === "channel") this.order.applyPage([], this.joinSeq, "recovery", { start: true });
      return null;
    }
    const frame = { action: "getRecentMessages", ...targetOf(this.descriptor), limit: start ? recentLimit : 100 };
    if (!start) frame.after = this.order.last;
    return frame;
  }

  /**
   * A catch-up reply: deliver it. `highWater`: the highest seq received when the request left
   * (everything received by then was stored before the service read: the page covers it).
   * True when more pages follow (its `after` cursor), to be fetched next.
   */
  applyCatchUp(page, { start, highWater = 0 }) {
    const newest = page.messages.reduce((max, m) => Math.max(max, m.seq), 0);
    const covered = page.after ?? Math.max(newest, highWater, start ? this.joinSeq : 0, this.order.last ?? 0);
    this.order.applyPage(page.messages, covered, start || this.opening ? "recent" : "recovery", { start });
    return page.after != null;
  }

  /** Caught up: follow() callers waiting for the first page are answered. */
  caughtUp() {
    this.opening = false;
    for (const waiter of this.startWaiters.splice(0)) waiter.resolve();
  }

  /** The first page could not be had: follow() callers waiting for it are refused. */
  failWaiters(error) {
    for (const waiter of this.startWaiters.splice(0)) waiter.reject(error);
  }

  /** A jump in seq: wait `wait` ms for the missing frames, then `fetch()` if still missing. */
  watchGap(wait, fetch) {
    if (this.gapTimer || this.fetching || !this.order.hasGap()) return;
    this.gapTimer = setTimeout(() => {
      this.gapTimer = null;
      if (this.order.hasGap()) fetch();
    }, wait);
  }

  stopWatching() {
    clearTimeout(this.gapTimer);
    this.gapTimer = null;
  }
}
