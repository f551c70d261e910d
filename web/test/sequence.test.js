// The order of each conversation's messages: SequenceBuffer's rules alone, then through the
// client: frames out of order, twice, and a gap that is fetched with `after`.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { SequenceBuffer } from "../chatclient.js";
import { channelMessage, closeAll, connected, LIMIT, live, settle } from "./harness.js";

afterEach(closeAll);

function buffer() {
  const delivered = [];
  const order = new SequenceBuffer((message, source) => delivered.push([message.seq, source]));
  return { order, delivered };
}

test("frames that jump ahead wait until the gap is filled, then go in seq order", LIMIT, () => {
  const { order, delivered } = buffer();
  order.last = 0;
  order.accept({ seq: 3 }, "live");
  order.accept({ seq: 2 }, "live");
  assert.deepEqual(delivered, []);
  assert.equal(order.hasGap(), true);
  order.accept({ seq: 1 }, "live");
  assert.deepEqual(delivered, [[1, "live"], [2, "live"], [3, "live"]]);
  assert.equal(order.hasGap(), false);
});

test("a seq already delivered or already waiting is dropped", LIMIT, () => {
  const { order, delivered } = buffer();
  order.last = 0;
  assert.equal(order.accept({ seq: 1 }, "live"), true);
  assert.equal(order.accept({ seq: 1 }, "recovery"), false);
  assert.equal(order.accept({ seq: 3 }, "live"), true);
  assert.equal(order.accept({ seq: 3 }, "live"), false);
  order.accept({ seq: 2 }, "live");
  assert.deepEqual(delivered.map(([seq]) => seq), [1, 2, 3]);
});

test("a page covering a seq it does not hold passes over it (expired), never waiting forever", LIMIT, () => {
  const { order, delivered } = buffer();
  order.last = 0;
  order.accept({ seq: 5 }, "live");
  order.applyPage([{ seq: 1 }, { seq: 2 }, { seq: 4 }], 4, "recovery");
  assert.deepEqual(delivered, [[1, "recovery"], [2, "recovery"], [4, "recovery"], [5, "live"]]);
  assert.equal(order.last, 5);
});

test("the first page sets the baseline just before its oldest message", LIMIT, () => {
  const { order, delivered } = buffer();
  order.accept({ seq: 7 }, "live"); // before the first page: waits
  order.applyPage([{ seq: 5 }, { seq: 6 }], 6, "recent", { start: true });
  assert.deepEqual(delivered, [[5, "recent"], [6, "recent"], [7, "live"]]);
});

test("through the client: swapped and repeated live frames are delivered once each, in order", LIMIT, async () => {
  const { client, socket, events } = await connected({ gapWait: 60_000 });
  const joining = client.join("general");
  socket.reply(socket.requests("join")[0], { joined: { channel: "general", seq: 0 } });
  await joining;
  socket.reply(socket.requests("getRecentMessages")[0], { history: { channel: "general", messages: [], before: null, after: null } });

  socket.receive(live(channelMessage("general", 2)));
  socket.receive(live(channelMessage("general", 1)));
  socket.receive(live(channelMessage("general", 2)));
  socket.receive(live(channelMessage("general", 3), channelMessage("general", 1)));

  const delivered = events("message").map((e) => [e.message.seq, e.source]);
  assert.deepEqual(delivered, [[1, "live"], [2, "live"], [3, "live"]]);
  assert.equal(socket.requests("getRecentMessages").length, 1); // the gap closed by itself
  client.close();
});

test("through the client: a gap still open after gapWait is fetched with after, and filled", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { client, socket, events } = await connected({ gapWait: 300 });
  const joining = client.join("general");
  socket.reply(socket.requests("join")[0], { joined: { channel: "general", seq: 0 } });
  await joining;
  socket.reply(socket.requests("getRecentMessages")[0], { history: { channel: "general", messages: [], before: null, after: null } });

  socket.receive(live(channelMessage("general", 1)));
  socket.receive(live(channelMessage("general", 3))); // 2 was lost
  t.mock.timers.tick(299);
  assert.equal(socket.requests("getRecentMessages").length, 1);
  t.mock.timers.tick(1);
  const fetch = socket.requests("getRecentMessages")[1];
  assert.deepEqual({ ...fetch, ref: undefined }, { action: "getRecentMessages", channel: "general", limit: 100, after: 1, ref: undefined });

  socket.reply(fetch, { history: { channel: "general", messages: [channelMessage("general", 2), channelMessage("general", 3)], before: 1, after: null } });
  await settle();
  assert.deepEqual(events("message").map((e) => [e.message.seq, e.source]), [[1, "live"], [2, "recovery"], [3, "live"]]);
  client.close();
});
