/**
 * The connection: one WebSocket at a time, opened with the token as a subprotocol, reopened
 * after a drop with exponential backoff and full jitter, a new token asked for (getToken) when
 * the old one has expired or is no longer accepted, and an end to reconnecting when nothing
 * more can help.
 *
 * A browser cannot see why a handshake failed: a refused token (HTTP 403), a user's sixth
 * connection (429) and a service that is down all look the same, a close (1006) before any
 * open. So the client counts the attempts in a row that never opened: after
 * `handshakeFailures` of them it asks `getToken` (when given) for a fresh token, once; after
 * that, or without getToken, it stops and reports `refused` with the count. Attempts made
 * while the browser says it is offline (`navigator.onLine === false`) do not count: the
 * network is away, and the `online` event brings the client back within a second.
 *
 * @module client/connection
 */

import { ClosedError } from "./errors.js";

/** The subprotocol the service selects; the token rides beside it as `bearer.<JWT>`. */
export const SUBPROTOCOL = "serverless-websocket";
/** When the browser says the network is back, reconnect within this many ms (spread, so that
 * the clients of a whole network coming back do not arrive at once). */
export const ONLINE_JITTER_MS = 1_000;

/**
 * The wait before reconnect attempt `attempt` (1, 2, ...): drawn uniformly below a ceiling
 * that starts at `reconnectDelay` and doubles each attempt up to `maxReconnectDelay` ("full
 * jitter": clients dropped together do not come back together).
 */
export function backoffDelay(attempt, { reconnectDelay, maxReconnectDelay }, random = Math.random) {
  const ceiling = Math.min(maxReconnectDelay, reconnectDelay * 2 ** Math.max(0, attempt - 1));
  return Math.round(random() * ceiling);
}

/**
 * The WebSocket constructor's arguments: the URL and the subprotocols `serverless-websocket`
 * and `bearer.<token>` (the service selects the first), so the token is never in the URL,
 * which browsers print to the console on every failed attempt. `tokenInQuery`: the older way,
 * `?token=`, for an environment that cannot offer subprotocols.
 */
export function socketArguments(url, token, tokenInQuery = false) {
  if (tokenInQuery) {
    const withToken = new URL(url);
    withToken.searchParams.set("token", token);
    return [withToken.toString()];
  }
  return [String(url), [SUBPROTOCOL, `bearer.${token}`]];
}

/** Is the browser sure it is offline? (Node and old browsers do not say: not offline.) */
function offline() {
  return globalThis.navigator?.onLine === false;
}

export class Connection {
  #options;
  #handlers;
  #socket = null;
  #wantOpen = false; // between start() and stop() (or giving up)
  #everOpened = false; // since start()
  #attempt = 0; // reconnect attempts since the last stable connection
  #failures = 0; // attempts in a row that never opened (counted while online)
  #renewed = false; // getToken was asked since the last open: not again before one
  #expiredSaid = false; // the service said this token has expired: never reconnect with it
  #bannedSaid = null; // the service said this user is banned ({reason, until}): never reconnect
  #openedAt = 0;
  #timer = null;
  #generation = 0; // a getToken answer for an earlier start() is ignored
  #onOnline = () => this.#reconnectNow();

  /**
   * `options`: url, WebSocket, reconnectDelay, maxReconnectDelay, stableAfter,
   * handshakeFailures, getToken, tokenInQuery. `handlers`: token() (the current token),
   * setToken(token), tokenExpired() (its exp has passed), status(state, detail), open(reconnected),
   * frame(data), down() (the socket is gone), giveUp(error) (before the "closed" status).
   */
  constructor(options, handlers) {
    this.#options = options;
    this.#handlers = handlers;
  }

  get isOpen() {
    return this.#socket !== null && this.#socket.readyState === 1;
  }

  /** Between start() and stop(), or until the client gave up. */
  get wanted() {
    return this.#wantOpen;
  }

  /** The service said the token has expired: do not reconnect with it. */
  markExpired() {
    this.#expiredSaid = true;
  }

  /** The service said this user is banned from it: do not reconnect (no token helps). */
  markBanned(ban) {
    this.#bannedSaid = ban;
  }

  /** A new token: the service has said nothing against it yet. */
  tokenChanged() {
    this.#expiredSaid = false;
  }

  /** Open, and keep open until stop(). */
  start() {
    if (this.#wantOpen) return;
    this.#wantOpen = true;
    this.#everOpened = false;
    this.#attempt = 0;
    this.#failures = 0;
    this.#renewed = false;
    this.#bannedSaid = null; // connecting again on purpose: the service decides
    this.#generation += 1;
    // A browser says when the network is back: no need to sit out the rest of the backoff.
    globalThis.addEventListener?.("online", this.#onOnline);
    this.#open();
  }

  /** Close on purpose: no reconnect. */
  stop(code, reason) {
    this.#wantOpen = false;
    this.#generation += 1;
    globalThis.removeEventListener?.("online", this.#onOnline);
    clearTimeout(this.#timer);
    this.#timer = null;
    const socket = this.#socket;
    if (socket && socket.readyState <= 1) {
      socket.close(code, reason); // its close reports "closed" with the code
    } else {
      this.#socket = null;
      this.#handlers.status("closed", { code, reason });
    }
  }

  send(text) {
    this.#socket.send(text);
  }

  /** The connection is presumed dead (no answer, or the service says it is closing). */
  drop(reason) {
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

  #open() {
    this.#timer = null;
    const args = socketArguments(this.#options.url, this.#handlers.token(), this.#options.tokenInQuery);
    this.#handlers.status(this.#everOpened ? "reconnecting" : "connecting", { attempt: this.#attempt });
    let socket;
    try {
      socket = new this.#options.WebSocket(...args);
    } catch (error) {
      // A token that cannot even be offered (not a valid subprotocol) is not a token.
      this.#giveUp({ refused: true, failures: this.#failures + 1, reason: error.message });
      return;
    }
    this.#socket = socket;
    let opened = false;
    socket.onopen = () => {
      opened = true;
      if (this.#socket === socket) this.#onOpen();
    };
    socket.onmessage = (event) => this.#socket === socket && this.#handlers.frame(event.data);
    socket.onclose = (event) => this.#socket === socket && this.#onClose(event.code, event.reason, opened);
  }

  #onOpen() {
    this.#openedAt = Date.now();
    const reconnected = this.#everOpened;
    this.#everOpened = true;
    this.#failures = 0;
    this.#renewed = false;
    this.#handlers.status("open", {});
    this.#handlers.open(reconnected);
  }

  #onClose(code, reason, opened) {
    this.#socket = null;
    this.#handlers.down();
    if (!this.#wantOpen) {
      this.#handlers.status("closed", { code, reason });
      return;
    }
    const away = !opened && offline();
    if (!opened && !away) this.#failures += 1;
    if (this.#bannedSaid) return this.#giveUp({ banned: this.#bannedSaid, code, reason });
    const expired = this.#expiredSaid || this.#handlers.tokenExpired();
    if (expired) return this.#renewOr({ expired: true, code, reason }, 0);
    if (!opened && !away && !this.#everOpened) {
      // The first handshake failed: a refused token or a wrong URL (a browser cannot tell).
      return this.#renewOr({ refused: true, failures: this.#failures, code, reason }, 0);
    }
    if (!opened && this.#failures >= this.#options.handshakeFailures) {
      return this.#renewOr({ refused: true, failures: this.#failures, code, reason }, this.#nextDelay(false));
    }
    this.#retry(code, reason, this.#nextDelay(opened));
  }

  #nextDelay(opened) {
    if (opened && Date.now() - this.#openedAt >= this.#options.stableAfter) this.#attempt = 0;
    this.#attempt += 1;
    return backoffDelay(this.#attempt, this.#options);
  }

  #retry(code, reason, delay) {
    this.#handlers.status("reconnecting", { code, reason, attempt: this.#attempt, delay });
    this.#timer = setTimeout(() => this.#open(), delay);
  }

  /** Ask getToken for a fresh token, once between two opens, then reconnect after `delay`;
   * without getToken (or asked already, or it fails), stop with `detail`. */
  async #renewOr(detail, delay) {
    const { getToken } = this.#options;
    if (typeof getToken !== "function" || this.#renewed) return this.#giveUp(detail);
    this.#renewed = true;
    const generation = this.#generation;
    this.#handlers.status("reconnecting", { code: detail.code, reason: detail.reason, attempt: this.#attempt, renewing: true });
    let token;
    try {
      token = await getToken();
    } catch (error) {
      if (generation === this.#generation) this.#giveUp({ ...detail, reason: `getToken failed: ${error?.message ?? error}` });
      return;
    }
    if (generation !== this.#generation || !this.#wantOpen) return;
    if (typeof token !== "string" || !token) return this.#giveUp({ ...detail, reason: "getToken gave no token" });
    this.#handlers.setToken(token);
    this.#failures = 0;
    if (this.#handlers.tokenExpired()) return this.#giveUp({ ...detail, expired: true, reason: "getToken gave an expired token" });
    this.#retry(detail.code, detail.reason, delay);
  }

  /** Waiting to reconnect, and the network is back: no need to sit out the rest of a backoff
   * that grew while the network was away. */
  #reconnectNow() {
    if (!this.#wantOpen || this.#socket || !this.#timer) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => this.#open(), Math.random() * ONLINE_JITTER_MS);
  }

  /** Stop for good: nothing more this client can do helps (a refused token, an expired one). */
  #giveUp(detail) {
    this.#wantOpen = false;
    this.#generation += 1;
    globalThis.removeEventListener?.("online", this.#onOnline);
    clearTimeout(this.#timer);
    this.#timer = null;
    this.#socket = null;
    const message = detail.banned
      ? "Banned from the service."
      : detail.expired
        ? "The token has expired."
        : detail.failures > 1
          ? `The connection was refused ${detail.failures} times in a row: the token is no longer accepted, or the service is unreachable.`
          : "The connection was refused.";
    this.#handlers.giveUp(new ClosedError(message));
    this.#handlers.status("closed", detail);
  }
}
