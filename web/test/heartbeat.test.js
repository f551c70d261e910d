// The heartbeat: only after heartbeatInterval without any frame sent, without a ref.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { closeAll, connected, LIMIT } from "./harness.js";

afterEach(closeAll);

test("a heartbeat goes after the interval of silence, and any frame sent puts it off", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { client, socket } = await connected({ heartbeatInterval: 1000 });
  t.mock.timers.tick(999);
  assert.deepEqual(socket.frames(), []);
  t.mock.timers.tick(1);
  assert.deepEqual(socket.frames(), [{ action: "heartbeat" }]); // no ref: it is never answered
  t.mock.timers.tick(600);
  client.presence("general").catch(() => {});
  t.mock.timers.tick(600); // 1,200 ms after the last heartbeat, 600 after the request
  assert.equal(socket.frames().length, 2);
  t.mock.timers.tick(400);
  assert.deepEqual(socket.frames().at(-1), { action: "heartbeat" });
  client.close();
});

test("no heartbeat while the connection is down", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { socket, sockets } = await connected({ heartbeatInterval: 1000, reconnectDelay: 60_000, maxReconnectDelay: 60_000 });
  t.mock.method(Math, "random", () => 1); // the reconnect waits the whole 60 s
  socket.drop();
  t.mock.timers.tick(5000);
  assert.deepEqual(socket.frames(), []);
  assert.equal(sockets.length, 1);
});
