// Requests matched by ref: several in flight, replies in any order, lanes that keep sends in
// order, timeouts, and what a refusal's code and retry decide.
import assert from "node:assert/strict";
import { afterEach, test } from "node:test";

import { RefusalError, decide } from "../chatclient.js";
import { closeAll, connected, LIMIT, settle } from "./harness.js";

afterEach(closeAll);

const presencePage = (channel) => ({ presence: { channel, members: [], count: 0, after: null } });

test("several requests go at once, each with its own ref, and replies in another order reach their own", LIMIT, async () => {
  const { client, socket } = await connected();
  const a = client.presence("a");
  const b = client.history({ channel: "b", limit: 5 });
  const c = client.request({ action: "getConversations" }, "conversations");
  const [fa, fb, fc] = socket.frames();
  assert.deepEqual([fa.action, fb.action, fc.action], ["getPresence", "getRecentMessages", "getConversations"]);
  assert.equal(new Set([fa.ref, fb.ref, fc.ref]).size, 3);
  for (const frame of [fa, fb, fc]) assert.match(frame.ref, /^[A-Za-z0-9_-]{1,64}$/);

  socket.reply(fc, { conversations: [{ with: "bob", seq: 2, last: null }], before: null });
  socket.reply(fb, { history: { channel: "b", messages: [], before: null, after: null } });
  socket.reply(fa, presencePage("a"));

  assert.deepEqual(await c, { conversations: [{ with: "bob", seq: 2, last: null }], before: null });
  assert.deepEqual(await b, { channel: "b", messages: [], before: null, after: null });
  assert.deepEqual(await a, { channel: "a", members: [], count: 0 });
  client.close();
});

test("at most maxInFlight requests wait for replies; the next goes when one is answered", LIMIT, async () => {
  const { client, socket } = await connected({ maxInFlight: 2 });
  const pages = ["a", "b", "c"].map((channel) => client.presence(channel));
  assert.equal(socket.frames().length, 2);
  socket.reply(socket.frames()[1], presencePage("b"));
  assert.deepEqual(socket.frames().map((f) => f.channel), ["a", "b", "c"]);
  socket.reply(socket.frames()[0], presencePage("a"));
  socket.reply(socket.frames()[2], presencePage("c"));
  assert.deepEqual((await Promise.all(pages)).map((p) => p.channel), ["a", "b", "c"]);
  client.close();
});

test("sends to one conversation go one after the other; another conversation's do not wait", LIMIT, async () => {
  const { client, socket } = await connected();
  const first = client.send({ content: "one" });
  const second = client.send({ content: "two" });
  const direct = client.send({ to: "bob", content: "to bob" });
  assert.deepEqual(socket.frames().map((f) => f.content), ["one", "to bob"]);

  const [one] = socket.requests("sendMessage");
  socket.reply(one, { sent: { seq: 1, id: "x1", clientMessageId: one.clientMessageId, duplicate: false, delivery: "complete" } });
  assert.deepEqual(socket.frames().map((f) => f.content), ["one", "to bob", "two"]);
  const two = socket.requests("sendMessage")[1];
  socket.reply(two, { sent: { seq: 2, id: "x2", clientMessageId: two.clientMessageId, duplicate: false, delivery: "complete" } });
  const [dm] = socket.requests("sendDirectMessage");
  socket.reply(dm, { sent: { to: "bob", seq: 1, id: "d1", clientMessageId: dm.clientMessageId, duplicate: false, delivery: "complete", recipientOnline: true } });
  assert.deepEqual([(await first).seq, (await second).seq, (await direct).seq], [1, 2, 1]);
  client.close();
});

test("a refusal with retry: false rejects at once and is not sent again", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { client, socket, events } = await connected();
  const sending = client.send({ channel: "general", content: "hi" });
  const [frame] = socket.requests("sendMessage");
  socket.refuseRequest(frame, "not_member", { status: 403, text: 'Join channel "general" before sending to it.' });
  const error = await sending.catch((e) => e);
  assert.ok(error instanceof RefusalError);
  assert.deepEqual([error.code, error.status, error.retry, error.text], ["not_member", 403, false, 'Join channel "general" before sending to it.']);
  assert.deepEqual(events("refusal").map((r) => [r.code, r.request.action, r.internal]), [["not_member", "sendMessage", false]]);
  t.mock.timers.tick(120_000);
  assert.equal(socket.requests("sendMessage").length, 1);
  client.close();
});

for (const [code, status] of [["conversation_busy", 429], ["unavailable", 500], ["some_new_code", 503]]) {
  test(`a refusal with retry: true (${code}) is sent again, the same frame, after the retry delay`, LIMIT, async (t) => {
    t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
    t.mock.method(Math, "random", () => 1); // the delay's jitter at its top: exactly retryDelay
    const { client, socket, events } = await connected({ retryDelay: 1000 });
    const sending = client.send({ channel: "general", content: "hi" });
    const [frame] = socket.requests("sendMessage");
    socket.refuseRequest(frame, code, { retry: true, status });
    t.mock.timers.tick(999);
    assert.equal(socket.requests("sendMessage").length, 1);
    t.mock.timers.tick(1);
    const again = socket.requests("sendMessage")[1];
    assert.deepEqual(again, frame); // same ref, same clientMessageId
    socket.reply(again, { sent: { channel: "general", seq: 4, id: "x", clientMessageId: frame.clientMessageId, duplicate: false, delivery: "complete" } });
    assert.equal((await sending).seq, 4);
    assert.deepEqual(events("refusal"), []); // a refusal that was retried away is nobody's business
    client.close();
  });
}

test("a retried refusal gives up after maxRetries, doubling the delay each time", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  t.mock.method(Math, "random", () => 1);
  const { client, socket } = await connected({ retryDelay: 100, maxRetries: 2 });
  const loading = client.history({ channel: "general" });
  socket.refuseRequest(socket.frames()[0], "unavailable", { retry: true, status: 500 });
  t.mock.timers.tick(100);
  socket.refuseRequest(socket.frames()[1], "unavailable", { retry: true, status: 500 });
  t.mock.timers.tick(199);
  assert.equal(socket.frames().length, 2);
  t.mock.timers.tick(1);
  socket.refuseRequest(socket.frames()[2], "unavailable", { retry: true, status: 500 });
  const error = await loading.catch((e) => e);
  assert.equal(error.code, "unavailable");
  assert.equal(socket.frames().length, 3);
  client.close();
});

test("rate_limited holds every request, not only the refused one", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  t.mock.method(Math, "random", () => 1);
  const { client, socket } = await connected({ retryDelay: 1000 });
  const first = client.presence("a");
  socket.refuseRequest(socket.frames()[0], "rate_limited", { retry: true, status: 429 });
  const second = client.presence("b");
  assert.equal(socket.frames().length, 1); // held
  t.mock.timers.tick(1000);
  assert.deepEqual(socket.frames().map((f) => f.channel), ["a", "a", "b"]);
  socket.reply(socket.frames()[1], presencePage("a"));
  socket.reply(socket.frames()[2], presencePage("b"));
  assert.deepEqual([(await first).channel, (await second).channel], ["a", "b"]);
  client.close();
});

test("not_registered: reconnect first, then the same request again", LIMIT, async () => {
  const { client, sockets, socket } = await connected({ reconnectDelay: 0 });
  const sending = client.send({ content: "hi" });
  const [frame] = socket.requests("sendMessage");
  socket.refuseRequest(frame, "not_registered", { retry: true, status: 410 });
  await settle();
  assert.equal(socket.closedWith.code, 4000);
  await new Promise((resolve) => setTimeout(resolve, 5)); // the backoff (0 ms)
  assert.equal(sockets.length, 2);
  sockets[1].open();
  const [again] = sockets[1].requests("sendMessage");
  assert.deepEqual(again, frame);
  sockets[1].reply(again, { sent: { seq: 1, id: "x", clientMessageId: frame.clientMessageId, duplicate: false, delivery: "complete" } });
  assert.equal((await sending).seq, 1);
  client.close();
});

test("delivery pending (or incomplete): stored, so the same frame goes again after the retry delay", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  t.mock.method(Math, "random", () => 1);
  const { client, socket } = await connected({ retryDelay: 500 });
  const sending = client.send({ content: "hi" });
  const [frame] = socket.requests("sendMessage");
  const sent = { seq: 9, id: "x", clientMessageId: frame.clientMessageId, duplicate: true };
  socket.reply(frame, { sent: { ...sent, delivery: "pending" } });
  t.mock.timers.tick(500);
  const second = socket.requests("sendMessage")[1];
  assert.deepEqual(second, frame);
  socket.reply(second, { sent: { ...sent, delivery: "incomplete" } });
  t.mock.timers.tick(1000);
  const third = socket.requests("sendMessage")[2];
  assert.deepEqual(third, frame);
  socket.reply(third, { sent: { ...sent, delivery: "complete" } });
  assert.equal((await sending).delivery, "complete");
  client.close();
});

test("no reply in time: the same frame again; a second timeout presumes the connection dead", LIMIT, async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout", "Date"] });
  const { client, socket } = await connected({ requestTimeout: 1000, timeoutsBeforeReconnect: 2 });
  const loading = client.presence("a");
  t.mock.timers.tick(1000);
  assert.equal(socket.frames().length, 2);
  assert.deepEqual(socket.frames()[1], socket.frames()[0]);
  // The late reply to the first copy answers; the reply to the second is nobody's.
  socket.reply(socket.frames()[0], presencePage("a"));
  socket.reply(socket.frames()[1], { presence: { channel: "other", members: [], count: 0, after: null } });
  assert.equal((await loading).channel, "a");
  const unanswered = client.presence("b").catch((error) => error);
  t.mock.timers.tick(1000);
  assert.equal(socket.frames().length, 4);
  assert.equal(socket.closedWith, null);
  t.mock.timers.tick(1000);
  await settle();
  assert.equal(socket.closedWith?.code, 4000);
  client.close();
  assert.equal((await unanswered).name, "ClosedError");
});

test("decide: by code and retry, never by text", LIMIT, () => {
  assert.equal(decide({ code: "rate_limited", retry: true }), "wait");
  assert.equal(decide({ code: "conversation_busy", retry: true }), "retry");
  assert.equal(decide({ code: "unavailable", retry: true }), "retry");
  assert.equal(decide({ code: "not_registered", retry: true }), "reconnect");
  assert.equal(decide({ code: "token_expired", retry: false }), "expired");
  for (const code of ["bad_request", "unknown_action", "too_large", "too_many_channels", "forbidden", "not_member", "internal", "too_many_connections"]) {
    assert.equal(decide({ code, retry: false }), "refuse", code);
  }
  assert.equal(decide({ code: "something_new", retry: true }), "retry");
  assert.equal(decide({ code: "something_new", retry: false }), "refuse");
});

test("after a reconnect a channel's rejoin goes first, and a send to it waits for the rejoin's reply", LIMIT, async () => {
  const { client, sockets, socket } = await connected({ reconnectDelay: 0 });
  const joining = client.join("general");
  socket.reply(socket.requests("join")[0], { joined: { channel: "general", seq: 0 } });
  await joining;
  socket.reply(socket.requests("getRecentMessages")[0], { history: { channel: "general", messages: [], before: null, after: null } });
  socket.drop();
  const sending = client.send({ channel: "general", content: "while away" });
  await new Promise((resolve) => setTimeout(resolve, 5));
  const second = sockets[1];
  second.open();
  assert.deepEqual(second.frames().map((f) => f.action), ["join"]); // the send waits in the channel's lane
  second.reply(second.requests("join")[0], { joined: { channel: "general", seq: 0 } });
  assert.deepEqual(second.frames().map((f) => f.action), ["join", "getRecentMessages", "sendMessage"]);
  const [frame] = second.requests("sendMessage");
  second.reply(frame, { sent: { channel: "general", seq: 1, id: "x", clientMessageId: frame.clientMessageId, duplicate: false, delivery: "complete" } });
  assert.equal((await sending).seq, 1);
  client.close();
});

test("a rejoin the service refuses ends following the channel; one cut short by close() does not", LIMIT, async () => {
  for (const [ending, stillIn] of [["refused", false], ["closed", true]]) {
    const { client, sockets, socket, events } = await connected({ reconnectDelay: 0 });
    const joining = client.join("general");
    socket.reply(socket.requests("join")[0], { joined: { channel: "general", seq: 0 } });
    await joining;
    socket.drop();
    await new Promise((resolve) => setTimeout(resolve, 5));
    sockets[1].open();
    const [rejoin] = sockets[1].requests("join");
    if (ending === "refused") sockets[1].refuseRequest(rejoin, "forbidden", { status: 403, text: 'Your token does not allow channel "general".' });
    else client.close();
    assert.deepEqual(client.channels, stillIn ? ["general"] : [], ending);
    assert.equal(events("conversation").some((c) => !c.following), !stillIn, ending);
    client.close();
  }
});
