// What the unit tests of chatclient.js share: a fake WebSocket that records what the client
// sends and lets a test play the service (open, frames, replies, closes), and tokens.
// node --test loads it too (every .js file under a test/ folder), and finds no test in it.

import { ChatClient } from "../chatclient.js";

/** Every test's options: a test that waits for something that never comes fails after this,
 * rather than hanging the run. */
export const LIMIT = Object.freeze({ timeout: 10_000 });

const clients = new Set();

/** Close every client the last test made (a failed assertion skips the test's own close()),
 * so that no reconnect loop outlives its test. */
export function closeAll() {
  for (const client of clients) client.close();
  clients.clear();
}

/** A token the client can read (the service would check its signature; the client does not). */
export function token(sub = "alice", { exp = Math.floor(Date.now() / 1000) + 3600, ...claims } = {}) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "HS256", typ: "JWT" })}.${encode({ sub, exp, ...claims })}.signature`;
}

/** Lets every pending promise callback run (the client's and the test's). */
export async function settle() {
  for (let i = 0; i < 5; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

/** A WebSocket class whose instances the test drives; `sockets` lists them in order. */
export function fakeWebSocket() {
  const sockets = [];
  class FakeSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      sockets.push(this);
    }

    send(text) {
      if (this.readyState !== 1) throw new Error("InvalidStateError: not open");
      this.sent.push(text);
    }

    /** The client closes it: the close event follows, as in a browser, asynchronously. */
    close(code = 1000, reason = "") {
      if (this.readyState >= 2) return;
      this.closedWith = { code, reason };
      this.readyState = 2;
      queueMicrotask(() => this.#closed(code, reason));
    }

    // --- the test plays the service --------------------------------------------------------

    open() {
      this.readyState = 1;
      this.onopen?.({});
    }

    /** The handshake fails (a refused token looks like this to a browser: 1006, no open). */
    refuse() {
      this.#closed(1006, "");
    }

    /** The service (or the network) closes the connection. */
    drop(code = 1001, reason = "Going away") {
      this.#closed(code, reason);
    }

    #closed(code, reason) {
      if (this.readyState === 3) return;
      this.readyState = 3;
      this.onclose?.({ code, reason });
    }

    receive(document) {
      this.onmessage?.({ data: typeof document === "string" ? document : JSON.stringify(document) });
    }

    /** Every frame sent, parsed. */
    frames() {
      return this.sent.map((text) => JSON.parse(text));
    }

    /** The frames sent with this action. */
    requests(action) {
      return this.frames().filter((frame) => frame.action === action);
    }

    reply(frame, body) {
      this.receive({ reply: { ref: frame.ref, status: 200, body } });
    }

    refuseRequest(frame, code, { retry = false, status = 400, text = `refused: ${code}` } = {}) {
      this.receive({ reply: { ref: frame.ref, status, error: { code, text, retry } } });
    }

    /** Answer the room's first catch-up (its newest messages): empty, a room with no messages. */
    answerRoom() {
      for (const frame of this.requests("getRecentMessages").filter((f) => f.channel === undefined && f.with === undefined)) {
        this.reply(frame, { history: { with: null, messages: [], before: null, after: null } });
      }
    }
  }
  return { WebSocket: FakeSocket, sockets };
}

/**
 * A client on a fake socket, and the events it emitted (`events(type)`: their details).
 * `room: false` unless asked, so that a test sees only the frames it is about.
 */
export function makeClient(options = {}) {
  const fake = fakeWebSocket();
  const client = new ChatClient({ url: "wss://chat.example/dev", token: token(), room: false, ...options, WebSocket: fake.WebSocket });
  clients.add(client);
  const log = [];
  for (const type of ["status", "message", "refusal", "conversation", "synced", "presence", "tokenExpiring", "renewal", "frame", "left", "banned"]) {
    client.addEventListener(type, (event) => log.push({ type, detail: event.detail }));
  }
  const events = (type) => log.filter((e) => e.type === type).map((e) => e.detail);
  return { client, sockets: fake.sockets, events, log };
}

/** A client connected through its first fake socket. */
export async function connected(options = {}) {
  const made = makeClient(options);
  const opened = made.client.connect();
  made.sockets[0].open();
  await opened;
  return { ...made, socket: made.sockets[0] };
}

/** A live frame of messages. */
export function live(...messages) {
  return { messages };
}

export function channelMessage(channel, seq, content = `m${seq}`, sender = "bob") {
  return { channel, seq, content, sender, sent_at: "2026-12-06T00:00:00.000Z", id: `id${seq}` };
}
