// The connection: the token as a subprotocol, reconnect backoff with full jitter, the end of
// reconnecting after handshakes that never open, and fresh tokens from getToken.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { backoffDelay } from "../chatclient.js";
import { closeAll, connected, LIMIT, makeClient, settle, token } from "./harness.js";

afterEach(() => {
  closeAll();
  delete globalThis.navigator;
});

function delays(events) {
  return events("status").filter((s) => s.delay != null).map((s) => [s.attempt, s.delay]);
}

test("the token is offered as a subprotocol beside serverless-websocket, never in the URL", LIMIT, async () => {
  const { client, socket } = await connected();
  assert.equal(socket.url, "wss://chat.example/dev");
  assert.deepEqual(socket.protocols, ["serverless-websocket", `bearer.${token()}`]);
  client.close();
});

test("tokenInQuery: the older ?token= for a WebSocket that cannot offer subprotocols", LIMIT, async () => {
  const { client, socket } = await connected({ tokenInQuery: true });
  assert.equal(socket.url, `wss://chat.example/dev?token=${token()}`);
  assert.equal(socket.protocols, undefined);
  client.close();
});

test("backoff: each delay is drawn below a ceiling that doubles up to the maximum", LIMIT, () => {
  const options = { reconnectDelay: 100, maxReconnectDelay: 1000 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((n) => backoffDelay(n, options, () => 1)), [100, 200, 400, 800, 1000, 1000]);
  assert.deepEqual([1, 2, 3].map((n) => backoffDelay(n, options, () => 0.5)), [50, 100, 200]);
  assert.equal(backoffDelay(4, options, () => 0), 0);
});

test("reconnects wait the drawn delay, grow while they fail, and start over after a stable connection", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: 1_000_000 });
  const { client, sockets, events } = makeClient({ reconnectDelay: 100, maxReconnectDelay: 10_000, stableAfter: 5_000, handshakeFailures: 10 });
  const draws = [0.5, 0.25, 1, 0.5, 0.5];
  t.mock.method(Math, "random", () => draws.shift() ?? 0.5);
  client.connect();
  sockets[0].open();
  sockets[0].drop();
  assert.deepEqual(delays(events), [[1, 50]]);
  t.mock.timers.tick(49);
  assert.equal(sockets.length, 1);
  t.mock.timers.tick(1);
  assert.equal(sockets.length, 2);
  sockets[1].refuse();
  assert.deepEqual(delays(events).at(-1), [2, 50]); // 0.25 x 200
  t.mock.timers.tick(50);
  sockets[2].refuse();
  assert.deepEqual(delays(events).at(-1), [3, 400]); // 1 x 400
  t.mock.timers.tick(400);
  sockets[3].open();
  t.mock.timers.tick(5_000); // stable
  sockets[3].drop();
  assert.deepEqual(delays(events).at(-1), [1, 50]); // started over: 0.5 x 100
  client.close();
});

test("the first handshake refused: reported as refused, never retried", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { client, sockets, events } = makeClient();
  const opening = client.connect();
  sockets[0].refuse();
  const error = await opening.catch((e) => e);
  assert.equal(error.name, "ClosedError");
  t.mock.timers.tick(600_000);
  assert.equal(sockets.length, 1);
  assert.deepEqual(events("status").at(-1), { state: "closed", refused: true, failures: 1, code: 1006, reason: "" });
});

test("handshakeFailures attempts in a row that never open end the reconnecting, with the count", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { client, sockets, events } = await connected({ reconnectDelay: 100, maxReconnectDelay: 100, handshakeFailures: 3 });
  const pending = client.presence("general").catch((e) => e);
  sockets[0].drop();
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    t.mock.timers.tick(100);
    assert.equal(sockets.length, attempt + 1);
    sockets[attempt].refuse();
  }
  t.mock.timers.tick(600_000);
  assert.equal(sockets.length, 4);
  const last = events("status").at(-1);
  assert.deepEqual([last.state, last.refused, last.failures], ["closed", true, 3]);
  assert.equal((await pending).name, "ClosedError");
  assert.equal(client.state, "closed");
});

test("attempts made while the browser says it is offline do not count", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { client, sockets, events } = await connected({ reconnectDelay: 100, maxReconnectDelay: 100, handshakeFailures: 2 });
  globalThis.navigator = { onLine: false };
  sockets[0].drop();
  for (let attempt = 1; attempt <= 6; attempt += 1) {
    t.mock.timers.tick(100);
    sockets[attempt].refuse();
  }
  assert.equal(events("status").at(-1).state, "reconnecting");
  globalThis.navigator.onLine = true;
  t.mock.timers.tick(100);
  sockets[7].open();
  assert.equal(client.state, "open");
  client.close();
});

test("getToken is asked once the handshakes keep failing, and the next attempts use its token", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const fresh = token("alice", { exp: Math.floor(Date.now() / 1000) + 7200 });
  let asked = 0;
  const getToken = async () => {
    asked += 1;
    return fresh;
  };
  const { client, sockets, events } = await connected({ reconnectDelay: 100, maxReconnectDelay: 100, handshakeFailures: 2, getToken });
  sockets[0].drop();
  t.mock.timers.tick(100);
  sockets[1].refuse();
  assert.equal(asked, 0);
  t.mock.timers.tick(100);
  sockets[2].refuse(); // the second in a row
  await settle();
  assert.equal(asked, 1);
  assert.equal(events("status").some((s) => s.renewing), true);
  t.mock.timers.tick(100);
  assert.deepEqual(sockets[3].protocols, ["serverless-websocket", `bearer.${fresh}`]);
  sockets[3].open();
  assert.equal(client.state, "open");
  client.close();
});

test("a fresh token that is refused as well: getToken is not asked in a loop; the client stops", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  let asked = 0;
  const getToken = async () => {
    asked += 1;
    return token("alice", { exp: Math.floor(Date.now() / 1000) + 7200 + asked });
  };
  const { sockets, events } = await connected({ reconnectDelay: 100, maxReconnectDelay: 100, handshakeFailures: 2, getToken });
  sockets[0].drop();
  for (let attempt = 1; attempt <= 4; attempt += 1) {
    t.mock.timers.tick(100);
    sockets[attempt].refuse();
    await settle();
  }
  t.mock.timers.tick(600_000);
  assert.equal(asked, 1);
  assert.equal(sockets.length, 5);
  assert.deepEqual([events("status").at(-1).state, events("status").at(-1).refused], ["closed", true]);
});

test("the service says the token expired: without getToken the client stops, reported as expired", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { sockets, events } = await connected();
  sockets[0].receive("Your token has expired: renew it or reconnect.");
  sockets[0].drop(1000, "");
  t.mock.timers.tick(600_000);
  assert.equal(sockets.length, 1);
  assert.deepEqual(events("status").at(-1), { state: "closed", expired: true, code: 1000, reason: "" });
  assert.deepEqual(events("refusal"), []); // a notice, not a refusal
});

test("the service says the token expired: with getToken the client reconnects with a fresh one", LIMIT, async () => {
  const fresh = token("alice", { exp: Math.floor(Date.now() / 1000) + 7200 });
  const { client, sockets } = await connected({ getToken: async () => fresh });
  const sending = client.send({ content: "after the renewal" });
  const [frame] = sockets[0].requests("sendMessage");
  sockets[0].refuseRequest(frame, "token_expired", { status: 401 });
  sockets[0].drop(1000, "");
  await settle();
  await new Promise((resolve) => setTimeout(resolve, 5)); // reconnecting at once: no backoff
  assert.equal(sockets.length, 2);
  assert.deepEqual(sockets[1].protocols, ["serverless-websocket", `bearer.${fresh}`]);
  sockets[1].open();
  const [again] = sockets[1].requests("sendMessage");
  assert.deepEqual(again, frame); // not lost: sent again with the new token
  sockets[1].reply(again, { sent: { seq: 1, id: "x", clientMessageId: frame.clientMessageId, duplicate: false, delivery: "complete" } });
  assert.equal((await sending).seq, 1);
  client.close();
});

test("a token whose exp has passed is renewed before reconnecting, not offered again", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"], now: Date.now() });
  const fresh = token("alice", { exp: Math.floor(Date.now() / 1000) + 7200 });
  const { sockets } = await connected({ getToken: async () => fresh });
  t.mock.timers.tick(3_600_000 + 1000); // past the first token's exp
  sockets[0].drop(1001, "");
  await settle();
  t.mock.timers.tick(0);
  assert.equal(sockets.length, 2);
  assert.deepEqual(sockets[1].protocols, ["serverless-websocket", `bearer.${fresh}`]);
});

test("on the expiry notice the client renews with getToken's token by itself", LIMIT, async () => {
  const fresh = token("alice", { exp: Math.floor(Date.now() / 1000) + 7200 });
  const { client, socket, events } = await connected({ getToken: async () => fresh });
  socket.receive({ tokenExpiring: { at: "2026-12-06T12:00:00.000Z" } });
  await settle();
  const [renew] = socket.requests("renewToken");
  assert.equal(renew.token, fresh);
  socket.reply(renew, { renewed: { expiresAt: "2026-12-06T14:00:00.000Z" } });
  await settle();
  assert.deepEqual(events("tokenExpiring"), [{ at: "2026-12-06T12:00:00.000Z", expiresAt: Date.parse("2026-12-06T12:00:00.000Z") }]);
  assert.deepEqual(events("renewal"), [{ expiresAt: "2026-12-06T14:00:00.000Z" }]);
  assert.equal(client.tokenExpiresAt, JSON.parse(Buffer.from(fresh.split(".")[1], "base64url")).exp * 1000);
  client.close();
});

test("the first handshake refused, with getToken: asked at once, and the client connects with its token", LIMIT, async () => {
  const fresh = token("alice", { exp: Math.floor(Date.now() / 1000) + 7200 });
  const { client, sockets, events } = makeClient({ getToken: async () => fresh });
  const opening = client.connect();
  sockets[0].refuse();
  await settle();
  await new Promise((resolve) => setTimeout(resolve, 5)); // no backoff before the first retry
  assert.equal(sockets.length, 2);
  assert.deepEqual(sockets[1].protocols, ["serverless-websocket", `bearer.${fresh}`]);
  sockets[1].open();
  assert.equal(await opening, client);
  assert.equal(events("status").some((s) => s.state === "closed"), false);
  client.close();
});
