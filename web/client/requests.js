/**
 * Requests and their replies. Every request carries a `ref` of its own, and the service
 * answers a frame with a ref with one `{"reply": {ref, status, body | error}}` (docs/protocol.md,
 * "Replies and errors"), so several requests can be in flight at once (`maxInFlight`) and each
 * reply is matched to its request by ref, whatever order the replies come in.
 *
 * Order is kept where it matters, by lanes: requests of one lane go one at a time, in the order
 * they were made (the sends to one conversation, so that their seqs follow the order they were
 * typed in; a channel's join, leave and sends). Requests without a lane go as soon as a slot is
 * free.
 *
 * A request unanswered after `requestTimeout` is sent again, the same frame with the same ref
 * (a send keeps its clientMessageId: the service stores it once); after
 * `timeoutsBeforeReconnect` the connection is presumed dead. A refusal is decided by its code
 * and `retry` (client/errors.js `decide`): sent again later, after a reconnect, or refused.
 *
 * @module client/requests
 */

import { ClosedError, RefusalError, decide } from "./errors.js";
import { utf8Length } from "./util.js";

/** The value a request resolves with: the reply's `expect` key (its value, or, for a reply of
 * several keys such as getConversations', the whole reply), else the body as it came (text). */
export function replyValue(body, expect) {
  if (body && typeof body === "object" && !Array.isArray(body) && expect != null && expect in body) {
    return Object.keys(body).length === 1 ? body[expect] : body;
  }
  return body;
}

export class Requests {
  #options;
  #link;
  #queue = []; // waiting to be sent, in order
  #pending = new Set(); // sent, waiting for their reply
  #live = new Map(); // ref -> every request not yet settled (queued, pending, waiting to retry)
  #made = 0; // requests made: the order of requests, and their refs
  #holdUntil = 0; // rate limited: nothing is sent before then (ms since the epoch)
  #wake = null; // the timer that sends what waited for a retry delay or a hold
  #prefix;

  /**
   * `options`: requestTimeout, timeoutsBeforeReconnect, retryDelay, maxRetries, maxInFlight,
   * maxFrameBytes. `link`: isOpen(), write(text), drop(reason) (presume the connection dead),
   * refused(request, error) (every refusal the service sent, before the promise rejects),
   * expired() (the service says the token has expired), renewable() (a new token can be had:
   * getToken), random() (for the jitter of retries).
   */
  constructor(options, link) {
    this.#options = options;
    this.#link = link;
    // Refs of one client differ from another's (two clients on one page, one connection each).
    this.#prefix = Math.floor(link.random() * 36 ** 4).toString(36);
  }

  /** How many requests are sent and waiting for their reply. */
  get inFlight() {
    return this.#pending.size;
  }

  /**
   * A request (not yet queued): `frame` is what is sent (plus its ref), `expect` the reply's
   * key. Hooks the client sets: onAnswer(value) (instead of resolving at once), onError(error),
   * onTransmit() (at its first transmission on a connection), settle() (once it is done).
   */
  create(frame, expect, { lane = null, internal = false } = {}) {
    const order = ++this.#made;
    const ref = `${this.#prefix}-${order.toString(36)}`;
    return { order, ref, frame, text: JSON.stringify({ ...frame, ref }), expect, lane, internal, retries: 0, sends: 0, timeouts: 0, notBefore: 0, timer: null, done: false };
  }

  /** Queue an application's request; the promise settles with its answer. */
  call(request) {
    const promise = new Promise((resolve, reject) => Object.assign(request, { resolve, reject }));
    const size = utf8Length(request.text);
    if (size > this.#options.maxFrameBytes) {
      const text = `Not sent: ${size} bytes, and API Gateway closes the connection on a frame over ${this.#options.maxFrameBytes} bytes.`;
      this.finish(request, { error: new RefusalError(text, request.frame, { local: true, code: "too_large", status: 400 }) });
      return promise;
    }
    this.enqueue(request);
    return promise;
  }

  /** Queue a request: at the end, or (`first`) before everything waiting. */
  enqueue(request, { first = false } = {}) {
    if (first) this.prepend([request]);
    else if (!request.done) {
      this.#live.set(request.ref, request);
      this.#queue.push(request);
    }
    this.pump();
  }

  /** Put requests before everything waiting, in this order, without sending anything yet. */
  prepend(requests) {
    const fresh = requests.filter((request) => !request.done);
    for (const request of fresh) this.#live.set(request.ref, request);
    this.#queue = [...fresh, ...this.#queue.filter((request) => !fresh.includes(request))];
  }

  /** Send what may go now: up to maxInFlight in flight, one at a time per lane, nothing while
   * rate limited, nothing before its retry delay. */
  pump() {
    if (!this.#link.isOpen()) return;
    const now = Date.now();
    if (this.#holdUntil > now) return this.#wakeAt(this.#holdUntil);
    const busy = new Set([...this.#pending].map((request) => request.lane).filter(Boolean));
    let wake = Infinity;
    for (const request of [...this.#queue]) {
      if (this.#pending.size >= this.#options.maxInFlight) break;
      if (request.done) {
        this.#unqueue(request);
        continue;
      }
      if (request.lane !== null && busy.has(request.lane)) continue;
      if (request.lane !== null) busy.add(request.lane); // later ones of its lane wait for it
      if (request.notBefore > now) {
        wake = Math.min(wake, request.notBefore);
        continue;
      }
      this.#unqueue(request);
      request.timeouts = 0;
      request.sends = 0;
      this.#pending.add(request);
      this.#transmit(request);
    }
    if (wake < Infinity) this.#wakeAt(wake);
  }

  #wakeAt(at) {
    clearTimeout(this.#wake);
    this.#wake = setTimeout(() => {
      this.#wake = null;
      this.pump();
    }, Math.max(0, at - Date.now()));
  }

  #unqueue(request) {
    const index = this.#queue.indexOf(request);
    if (index >= 0) this.#queue.splice(index, 1);
  }

  #transmit(request) {
    if (request.onTransmit && request.sends === 0) request.onTransmit();
    request.sends += 1;
    this.#link.write(request.text);
    clearTimeout(request.timer);
    request.timer = setTimeout(() => this.#onTimeout(request), this.#options.requestTimeout);
  }

  /** No reply in time: the same frame again (same ref); after timeoutsBeforeReconnect, the
   * connection is presumed dead (a half-open TCP connection never reports an error). */
  #onTimeout(request) {
    if (!this.#pending.has(request)) return;
    request.timeouts += 1;
    if (request.timeouts >= this.#options.timeoutsBeforeReconnect) return this.#link.drop("no answer");
    this.#transmit(request);
  }

  /** `{"reply": {ref, status, body | error}}` from the service. */
  onReply(reply) {
    const request = typeof reply.ref === "string" ? this.#live.get(reply.ref) : undefined;
    if (!request || request.done) {
      // A second reply to a frame sent twice, or one for a request given up: nobody waits.
      // A refusal of our ref itself ("ref": null) would be a bug of this client: tell it.
      if (reply.ref == null && reply.error) this.#link.refused(null, this.#refusal(reply, null));
      return;
    }
    if (reply.error) {
      // A refusal of an earlier copy of a request that is to go again anyway changes nothing.
      if (this.#pending.has(request)) this.#onRefused(request, reply);
      return;
    }
    this.#release(request);
    const value = replyValue(reply.body, request.expect);
    if (request.onAnswer) request.onAnswer(value);
    else this.finish(request, { value });
  }

  #refusal(reply, request) {
    const { code = null, text = "", retry = false } = reply.error ?? {};
    return new RefusalError(String(text), request?.frame ?? null, { code, status: reply.status ?? null, retry: retry === true });
  }

  #onRefused(request, reply) {
    const error = this.#refusal(reply, request);
    switch (decide(error)) {
      case "reconnect": // the service has no row for this connection: reconnect, then again
        if (request.retries >= this.#options.maxRetries) return this.refuse(request, error);
        request.retries += 1;
        this.#release(request);
        this.#queue.unshift(request);
        return this.#link.drop("connection not registered");
      case "expired": // the connection is being closed; with a new token the request can go again
        this.#link.expired();
        if (!this.#link.renewable() || request.retries >= this.#options.maxRetries) return this.refuse(request, error);
        request.retries += 1;
        this.#release(request);
        this.#queue.unshift(request);
        return;
      case "wait":
        return this.retryLater(request, error, { everything: true });
      case "retry":
        return this.retryLater(request, error);
      default:
        return this.refuse(request, error);
    }
  }

  /**
   * Send the same frame again after retryDelay x 2^(retries - 1) (x0.5-1), at most maxRetries
   * times, then `error` (if given) is the answer. `everything`: every request waits (a rate
   * limit counts every frame). The request keeps its place in its lane.
   */
  retryLater(request, error, { everything = false } = {}) {
    if (request.retries >= this.#options.maxRetries) {
      return error ? this.refuse(request, error) : false;
    }
    request.retries += 1;
    const delay = this.#options.retryDelay * 2 ** (request.retries - 1) * (0.5 + this.#link.random() / 2);
    request.notBefore = Date.now() + delay;
    if (everything) this.#holdUntil = Math.max(this.#holdUntil, request.notBefore);
    this.#release(request);
    this.#requeue([request]);
    this.pump();
    return true;
  }

  refuse(request, error) {
    this.#link.refused(request, error);
    this.finish(request, { error });
  }

  /** Settle a request: resolve with `value` or reject with `error`; then the next may go. */
  finish(request, { value, error }) {
    if (request.done) return;
    request.done = true;
    this.#release(request);
    this.#unqueue(request);
    this.#live.delete(request.ref);
    request.settle?.();
    if (error) request.onError?.(error);
    if (error) request.reject?.(error);
    else request.resolve?.(value);
    this.pump();
  }

  /** Out of flight (answered, or going again later). */
  #release(request) {
    clearTimeout(request.timer);
    request.timer = null;
    this.#pending.delete(request);
  }

  /** Back in the queue, before what came after them, in the order they were made. */
  #requeue(requests) {
    const back = requests.filter((request) => !request.done && !this.#queue.includes(request));
    this.#queue = [...back.sort((a, b) => a.order - b.order), ...this.#queue];
  }

  /**
   * The connection is gone: what was in flight goes again first, in its order; the client's
   * own requests (rejoins, catch-ups) are dropped, as the next connection makes them anew.
   */
  onDown() {
    const inflight = [...this.#pending];
    for (const request of inflight) this.#release(request);
    this.#requeue(inflight);
    for (const request of this.#queue.filter((r) => r.internal)) {
      request.done = true;
      this.#live.delete(request.ref);
    }
    this.#queue = this.#queue.filter((request) => !request.done);
    clearTimeout(this.#wake);
    this.#wake = null;
  }

  /** Every request not yet answered rejects with `error` (the client is closed). */
  failAll(error = new ClosedError()) {
    const requests = [...this.#live.values(), ...this.#pending, ...this.#queue];
    this.#queue = [];
    this.#pending.clear();
    clearTimeout(this.#wake);
    this.#wake = null;
    this.#holdUntil = 0;
    for (const request of new Set(requests)) this.finish(request, { error });
  }
}
