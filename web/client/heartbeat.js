/**
 * The heartbeat: `{"action": "heartbeat"}` only after `interval` ms without any frame sent (API
 * Gateway closes a connection after 10 minutes without a frame). The service never answers it,
 * and it carries no `ref`, so it can go at any time, even while requests wait for replies.
 *
 * @module client/heartbeat
 */

export const HEARTBEAT = JSON.stringify({ action: "heartbeat" });

export class Heartbeat {
  #interval;
  #beat;
  #timer = null;

  /** `beat()` sends the heartbeat (and, like every frame sent, calls `touch()`). */
  constructor(interval, beat) {
    this.#interval = interval;
    this.#beat = beat;
  }

  /** A frame was sent: the next heartbeat is due `interval` from now. */
  touch() {
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#beat();
    }, this.#interval);
  }

  stop() {
    clearTimeout(this.#timer);
    this.#timer = null;
  }
}
