// What the service pushes to a connection unasked about the user themselves: taken out of a
// channel by a ban ({"left": {channel, reason}}), banned from the service ({"banned": ...},
// just before the service closes the connection). docs/protocol.md, "Bans".
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { closeAll, connected, LIMIT, settle } from "./harness.js";

afterEach(closeAll);

async function joinedGeneral() {
  const made = await connected({ reconnectDelay: 0 });
  const joining = made.client.join("general");
  made.socket.reply(made.socket.requests("join")[0], { joined: { channel: "general", seq: 0 } });
  await joining;
  return made;
}

test("a pushed left ends following the channel, says why, and a reconnect does not rejoin it", LIMIT, async () => {
  const { client, sockets, socket, events } = await joinedGeneral();

  socket.receive({ left: { channel: "general", reason: "banned" } });

  assert.deepEqual(client.channels, []);
  assert.deepEqual(events("left"), [{ channel: "general", reason: "banned" }]);
  assert.deepEqual(events("conversation").at(-1), { conversation: { type: "channel", channel: "general", key: "channel:general" }, following: false });
  assert.deepEqual(events("frame"), []); // handled, not handed on as an unknown frame
  socket.drop();
  await new Promise((resolve) => setTimeout(resolve, 5));
  sockets[1].open();
  await settle();
  assert.deepEqual(sockets[1].requests("join"), []);
});

test("a bare left (a reply to someone's ref-less leave) changes nothing here", LIMIT, async () => {
  const { client, socket } = await joinedGeneral();
  socket.receive({ left: { channel: "general" } });
  assert.deepEqual(client.channels, ["general"]);
});

test("a pushed banned stops the client: no reconnect, the status says banned with the reason and until", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { sockets, socket, events } = await connected({ getToken: () => "another-token" });
  const ban = { reason: "spam", until: "2026-12-08T00:00:00.000Z" };

  socket.receive({ banned: ban });
  socket.drop(1000, "");
  t.mock.timers.tick(600_000);

  assert.equal(sockets.length, 1); // not again, not even with a fresh token: the user is banned
  assert.deepEqual(events("status").at(-1), { state: "closed", banned: ban, code: 1000, reason: "" });
  assert.deepEqual(events("banned"), [ban]);
  assert.deepEqual(events("frame"), []);
});

test("a banned frame of the wrong shape is handed on as a frame and stops nothing", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { sockets, socket, events } = await connected({ reconnectDelay: 0 });
  socket.receive({ banned: "yes" });
  socket.drop();
  t.mock.timers.tick(1_000);
  assert.equal(sockets.length, 2);
  assert.deepEqual(events("frame").map((f) => f.type), ["banned"]);
});

test("a pushed left for a channel this client does not follow (it left first) says nothing", LIMIT, async () => {
  const { client, socket, events } = await connected();
  socket.receive({ left: { channel: "elsewhere", reason: "banned" } });
  assert.deepEqual(events("left"), []);
  assert.deepEqual(client.channels, []);
});
