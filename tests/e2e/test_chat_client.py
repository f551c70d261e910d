"""web/chatclient.js itself, in a real browser (Debian's headless Chromium) against the local
stack: each guarantee docs/client.md gives, with options chosen by the test (a short heartbeat,
a short request timeout, a fast backoff) and faults from tests/support/websocket_faults.js."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

from scripts.browser import ChatPage
from tests.support.browser_support import connection_ids, joined_client, management, set_offline
from tests.support.helpers import fresh
from tests.support.wsclient import Client

SEND_INTERVAL = 0.25  # under the per-connection rate limit of 5 a second
EVENT_TYPES = ["status", "message", "refusal", "frame", "synced", "conversation", "presence", "tokenExpiring"]

START = """
const [url, token, options, done] = arguments;
import("/chatclient.js").then(async ({ ChatClient }) => {
  const chat = (window.chat = new ChatClient({ url, token, ...options }));
  window.events = [];
  for (const type of %s) {
    chat.addEventListener(type, (event) =>
      window.events.push({ type, at: performance.now(), detail: JSON.parse(JSON.stringify(event.detail)) }));
  }
  try {
    await chat.connect();
    done({ ok: true });
  } catch (error) {
    done({ error: `${error.name}: ${error.message}` });
  }
});
""" % json.dumps(EVENT_TYPES)


class BrowserClient:
    """A ChatClient made by a test in a page of the local stack (the page itself stays idle)."""

    def __init__(self, page: ChatPage, local_stack: Any, user: str, token: str | None = None, **options: Any) -> None:
        self.page, self.driver, self.user = page, page.driver, user
        self.driver.set_script_timeout(60)
        self.started = self.driver.execute_async_script(START, local_stack.websocket_url, token or local_stack.token(user), options)

    def call(self, body: str, *args: Any) -> Any:
        """Run `body` (an async function body; `chat` is the client, `args` the arguments) and
        return what it returns, or {"error": ...} if it throws."""
        script = (
            "const done = arguments[arguments.length - 1]; const args = [...arguments].slice(0, -1);"
            f"(async (chat, args) => {{ {body} }})(window.chat, args)"
            ".then(done, (error) => done({ error: `${error.name}: ${error.message}`, text: error.text ?? null }));"
        )
        return self.driver.execute_async_script(script, *args)

    def events(self, *types: str) -> list[dict[str, Any]]:
        return [e for e in self.driver.execute_script("return window.events") if not types or e["type"] in types]

    def messages(self, key: str) -> list[dict[str, Any]]:
        """The `message` events of one conversation, in the order they were dispatched."""
        return [e["detail"] for e in self.events("message") if e["detail"]["conversation"]["key"] == key]

    def sent(self) -> list[tuple[float, dict[str, Any]]]:
        """(when, frame) for every frame sent (tests/support/websocket_faults.js records them)."""
        faults = self.driver.execute_script("return window.__faults")
        return [(at, json.loads(frame)) for at, frame in zip(faults["sentAt"], faults["sent"])]

    def faults(self, **settings: Any) -> None:
        for name, value in settings.items():
            self.driver.execute_script(f"window.__faults.{name} = arguments[0]", value)

    def state(self) -> str:
        return self.driver.execute_script("return window.chat.state")

    def wait_until(self, condition: Any, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; last events {self.events()[-5:]!r}")
            time.sleep(0.05)


def open_client(pages: Any, local_stack: Any, user: str, **options: Any) -> BrowserClient:
    client = BrowserClient(pages(local_stack.page_url, faults=True), local_stack, user, **options)
    assert client.started == {"ok": True}, client.started
    return client


async def send_paced(client: Client, frames: list[dict[str, Any]]) -> None:
    """Send the frames, each once the one before is answered (so stored in this order)."""
    await client.send_in_order(frames, SEND_INTERVAL)


def seqs(messages: list[dict[str, Any]]) -> list[int]:
    return [m["message"]["seq"] for m in messages]


# --- heartbeat ----------------------------------------------------------------------------------


def test_a_heartbeat_goes_only_after_the_interval_without_any_other_frame(local_stack: Any, pages: Any) -> None:
    (user,) = fresh("beat")
    client = open_client(pages, local_stack, user, heartbeatInterval=700)

    time.sleep(2.6)  # idle: about three heartbeats
    busy_from = client.call("return performance.now();")
    slow = 0  # round trips that took the whole interval themselves: a heartbeat is then due
    for _ in range(8):  # busy: a frame every 300 ms, so none is due
        took = client.call("const t = performance.now(); await chat.history({ limit: 1 }); return performance.now() - t;")
        assert not isinstance(took, dict), took  # answered, not refused
        slow += int(took // 700)
        time.sleep(0.3)
    busy_to = client.call("return performance.now();")
    time.sleep(1.0)

    sent = client.sent()
    heartbeats = [at for at, frame in sent if frame == {"action": "heartbeat"}]
    assert len([at for at in heartbeats if at < busy_from]) >= 2
    # While busy, a heartbeat only where the machine made a request take the whole interval
    # (the invariant below): under load a round trip can; what must never happen is a heartbeat
    # with a frame sent less than the interval before it.
    assert len([at for at in heartbeats if busy_from < at < busy_to]) <= 2 + slow
    for at in heartbeats:
        previous = max(t for t, _ in sent if t < at)
        assert at - previous >= 690  # nothing else was sent for the whole interval
    assert client.events("refusal", "frame") == []  # answered with nothing
    assert client.state() == "open"


# --- frames the client does not know -------------------------------------------------------------


def test_presence_changes_and_the_expiry_notice_are_events_and_unknown_frames_are_not_dropped(local_stack: Any, pages: Any) -> None:
    (user,) = fresh("future")
    client = open_client(pages, local_stack, user)
    (connection_id,) = connection_ids(local_stack, user)

    management(local_stack, connection_id, "POST", {"presenceChange": {"channel": "general", "user": "bob", "state": "enter"}})
    management(local_stack, connection_id, "POST", {"tokenExpiring": {"at": "2026-11-28T12:00:00.000Z"}})
    management(local_stack, connection_id, "POST", {"reaction": {"user": "bob"}})

    client.wait_until(lambda: len(client.events("presence", "tokenExpiring", "frame")) == 3)
    assert [e["detail"] for e in client.events("presence")] == [{"channel": "general", "user": "bob", "state": "enter"}]
    assert [e["detail"] for e in client.events("tokenExpiring")] == [{"at": "2026-11-28T12:00:00.000Z", "expiresAt": 1795867200000}]
    (frame,) = (e["detail"] for e in client.events("frame"))
    assert (frame["type"], frame["data"]) == ("reaction", {"user": "bob"})
    # and they are not taken for answers: requests go on
    assert client.call("return await chat.request({ action: 'join', channel: 'x-' + Date.now() }, 'joined');")["seq"] == 0


def test_direct_conversations_page_with_before_and_follow_after_reads_what_is_new(local_stack: Any, pages: Any) -> None:
    """Issues 15 and 16, the client's side: directConversations pages (most recent first, with
    `before`), follow({with, after}) delivers what came after a seq, presence(channel) lists a
    user once, renewToken extends the connection and is the token from then on."""
    user, ann, ben, cal, channel = fresh("lister", "ann", "ben", "cal", "wrapped")

    async def write() -> None:
        for sender, count in ((ann, 3), (ben, 1), (cal, 1)):
            client = await Client.connect(local_stack.url_for(sender))
            await send_paced(client, [{"action": "sendDirectMessage", "to": user, "content": f"{sender} {n}"} for n in range(1, count + 1)])
            await client.wait_until(lambda c=client, n=count: len(c.replies()) >= n, 30)
            await client.close()

    asyncio.run(write())
    client = open_client(pages, local_stack, user)

    first = client.call("return await chat.directConversations({ limit: 2 });")
    assert [(c["with"], c["seq"]) for c in first["conversations"]] == [(cal, 1), (ben, 1)] and first["before"]
    second = client.call("return await chat.directConversations({ limit: 2, before: args[0] });", first["before"])
    assert [(c["with"], c["seq"], c["last"]["seq"], c["last"]["sender"]) for c in second["conversations"]] == [(ann, 3, 3, ann)]
    assert second["before"] is None
    whole = client.call("return await chat.request({ action: 'getConversations' }, 'conversations');")
    assert [c["with"] for c in whole["conversations"]] == [cal, ben, ann] and whole["before"] is None

    client.call("return await chat.follow({ with: args[0], after: 1 });", ann)
    ann_messages = client.messages(f"dm:{ann}")
    assert [(m["message"]["seq"], m["source"]) for m in ann_messages] == [(2, "recent"), (3, "recent")]

    client.call("return await chat.join(args[0]);", channel)
    client.call("return await chat.join(args[0]);", channel)
    assert client.call("return await chat.presence(args[0]);", channel) == {
        "channel": channel, "members": [{"user": user, "connections": 1}], "count": 1}

    fresh_token = local_stack.token(user, hours=24)  # later than the 12 h one it connected with
    renewed = client.call("return await chat.renewToken(args[0]);", fresh_token)
    assert renewed["expiresAt"].endswith("Z")
    assert client.call("return chat.tokenExpiresAt;") == json.loads(base64.urlsafe_b64decode(fresh_token.split(".")[1] + "=="))["exp"] * 1000
    refused = client.call("return await chat.renewToken(args[0]);", local_stack.token(cal))
    assert refused["error"].startswith("RefusalError") and refused["text"].startswith("The token is for another user")


# --- order and gaps -----------------------------------------------------------------------------


def test_a_lost_live_frame_is_fetched_and_every_message_delivered_once_in_order(local_stack: Any, pages: Any) -> None:
    user, other, channel = fresh("gap", "sender", "gaps")
    client = open_client(pages, local_stack, user, gapWait=300)
    assert client.call("return await chat.join(args[0]);", channel) == {"channel": channel, "seq": 0}
    client.faults(dropLive=1)

    async def send() -> None:
        sender = await joined_client(local_stack, other, channel)
        await send_paced(sender, [{"action": "sendMessage", "channel": channel, "content": "m1"}])
        client.wait_until(lambda: client.driver.execute_script("return window.__faults.dropped.length") == 1)
        # A loss is noticed when a later frame arrives (or at the next reconnect).
        await send_paced(sender, [{"action": "sendMessage", "channel": channel, "content": f"m{n}"} for n in (2, 3)])
        await sender.close()

    asyncio.run(send())

    key = f"channel:{channel}"
    client.wait_until(lambda: len(client.messages(key)) == 3)
    time.sleep(0.5)
    delivered = client.messages(key)
    assert seqs(delivered) == [1, 2, 3]
    # The service gives seqs in the order the sends were stored, not always the order sent.
    assert delivered[0]["message"]["content"] == "m1" and delivered[0]["source"] == "recovery"
    assert sorted(m["message"]["content"] for m in delivered[1:]) == ["m2", "m3"]
    assert any(frame.get("after") == 0 and frame.get("channel") == channel for _, frame in client.sent())


def test_frames_that_arrive_swapped_are_delivered_in_seq_order_without_a_fetch(local_stack: Any, pages: Any) -> None:
    user, other, channel = fresh("swap", "sender", "swaps")
    client = open_client(pages, local_stack, user, gapWait=3000)
    client.call("return await chat.join(args[0]);", channel)
    client.faults(swapLive=1)

    async def send() -> None:
        sender = await joined_client(local_stack, other, channel)
        await send_paced(sender, [{"action": "sendMessage", "channel": channel, "content": f"m{n}"} for n in (1, 2)])
        await sender.close()

    asyncio.run(send())

    key = f"channel:{channel}"
    client.wait_until(lambda: len(client.messages(key)) == 2)
    assert seqs(client.messages(key)) == [1, 2]
    assert {m["source"] for m in client.messages(key)} == {"live"}
    assert not any("after" in frame for _, frame in client.sent())  # the gap closed by itself


# --- recovery after a reconnect -----------------------------------------------------------------


def test_after_a_reconnect_every_followed_conversation_is_recovered(local_stack: Any, pages: Any) -> None:
    """A channel it joined, the room, and a direct conversation it has only seen (a DM from
    someone new): all three are caught up from their last seq after the connection comes back."""
    user, other, channel = fresh("away", "talker", "back")
    client = open_client(pages, local_stack, user, reconnectDelay=200)
    client.call("return await chat.join(args[0]);", channel)

    async def scenario() -> None:
        talker = await joined_client(local_stack, other, channel)
        await send_paced(talker, [{"action": "sendDirectMessage", "to": user, "content": "hello, new here"}])
        client.wait_until(lambda: len(client.messages(f"dm:{other}")) == 1)
        set_offline(client.driver, True)
        (connection_id,) = connection_ids(local_stack, user)
        management(local_stack, connection_id, "DELETE")
        client.wait_until(lambda: client.state() != "open")
        await send_paced(talker, [
            {"action": "sendMessage", "channel": channel, "content": "channel 1"},
            {"action": "sendMessage", "content": "room 1"},
            {"action": "sendDirectMessage", "to": user, "content": "dm 2"},
            {"action": "sendMessage", "channel": channel, "content": "channel 2"},
            {"action": "sendMessage", "content": "room 2"},
            {"action": "sendDirectMessage", "to": user, "content": "dm 3"},
        ])
        set_offline(client.driver, False)
        client.wait_until(lambda: any(e["detail"]["reconnected"] for e in client.events("synced")), 30)
        await talker.close()

    asyncio.run(scenario())

    channel_messages = client.messages(f"channel:{channel}")
    assert [m["message"]["content"] for m in channel_messages] == ["channel 1", "channel 2"]
    assert seqs(channel_messages) == [1, 2] and {m["source"] for m in channel_messages} == {"recovery"}
    dm = client.messages(f"dm:{other}")
    assert [m["message"]["content"] for m in dm] == ["hello, new here", "dm 2", "dm 3"] and seqs(dm) == [1, 2, 3]
    room = client.messages("room")
    room_seqs = seqs(room)
    assert room_seqs == list(range(room_seqs[0], room_seqs[0] + len(room_seqs)))  # contiguous, once each
    assert [m["message"]["content"] for m in room[-2:]] == ["room 1", "room 2"]
    (synced,) = [e["detail"] for e in client.events("synced") if e["detail"]["reconnected"]]
    assert synced["recovered"] == 6
    print(f"\nrecovery after the reconnect: {synced['recovered']} messages in 3 conversations in {synced['ms']} ms")


# --- sends ---------------------------------------------------------------------------------------


def test_an_answer_after_the_timeout_is_dropped_and_the_next_request_gets_its_own(local_stack: Any, pages: Any) -> None:
    """The first acknowledgement is held 1.5 s (tests/support/websocket_faults.js); with a 500 ms request
    timeout the client sends the same frame again (the same ref), takes the answer to that, and
    the late one, whose ref is answered already, is not taken for anything."""
    user, channel = fresh("late", "late")
    client = open_client(pages, local_stack, user, requestTimeout=500)
    client.call("return await chat.join(args[0]);", channel)
    client.faults(delayAcks=1, delayMs=1500)

    ack = client.call("return await chat.send({ channel: args[0], content: 'late ack' });", channel)
    joined_second = client.call("return await chat.join(args[0] + '-2');", channel)

    assert ack["duplicate"] is True and ack["seq"] == 1  # the answer to the frame sent again
    assert joined_second == {"channel": f"{channel}-2", "seq": 0}
    sends = [frame for _, frame in client.sent() if frame.get("action") == "sendMessage"]
    # Sent again with the same ref and clientMessageId; more than once when a loaded machine took
    # over 500 ms to answer the second too (CI once sent it 10 times): the same frame each time.
    assert len(sends) >= 2 and all(frame == sends[0] for frame in sends)
    time.sleep(1.5)
    assert client.events("frame", "refusal") == []
    assert seqs(client.messages(f"channel:{channel}")) == [1]


def test_a_late_refusal_is_not_taken_for_the_answer_to_the_next_request(local_stack: Any, pages: Any) -> None:
    """A refusal that comes after the timeout (the frame was sent again meanwhile) is matched
    by its ref: it is never taken for the answer to whatever was sent next, and the second
    answer to the same ref is dropped. (Before replies carried refs, plain text carried no id
    and the client held every request until the answers it owed had come.)"""
    user, channel = fresh("latetext", "notjoined")
    client = open_client(pages, local_stack, user, requestTimeout=500)
    client.faults(delayText=1, delayMs=700)

    outcome = client.call(
        "let refused = null;"
        "try { await chat.send({ channel: args[0], content: 'hi' }); } catch (error) { refused = error.text; }"
        "const joined = await chat.join(args[0] + '-other');"  # right away: the late refusal is still due
        "return { refused, joined };",
        channel,
    )

    assert outcome["refused"].startswith(f'Join channel "{channel}" before sending')
    assert outcome["joined"] == {"channel": f"{channel}-other", "seq": 0}
    time.sleep(1.0)
    refusals = [e["detail"] for e in client.events("refusal")]
    assert [r["request"]["action"] for r in refusals] == ["sendMessage"]  # nothing unasked, nothing misplaced


def test_a_refusal_rejects_the_send_and_is_dispatched(local_stack: Any, pages: Any) -> None:
    user, channel = fresh("refused", "notjoined")
    client = open_client(pages, local_stack, user)

    result = client.call("return await chat.send({ channel: args[0], content: 'hi' });", channel)
    too_big = client.call("return await chat.send({ content: 'x'.repeat(40000) });")

    assert result["error"].startswith("RefusalError") and result["text"].startswith(f'Join channel "{channel}" before sending')
    (refusal,) = [e["detail"] for e in client.events("refusal")]
    assert refusal["request"]["action"] == "sendMessage" and refusal["internal"] is False
    assert "frame over 32768 bytes" in too_big["text"]
    assert not any(len(json.dumps(frame)) > 32768 for _, frame in client.sent())  # never sent


# --- the connection ------------------------------------------------------------------------------


def test_reconnect_backoff_grows_with_full_jitter_and_a_deliberate_close_ends_it(local_stack: Any, pages: Any) -> None:
    (user,) = fresh("backoff")
    client = open_client(pages, local_stack, user, reconnectDelay=100, maxReconnectDelay=800)

    set_offline(client.driver, True)
    (connection_id,) = connection_ids(local_stack, user)
    management(local_stack, connection_id, "DELETE")
    client.wait_until(lambda: len([e for e in client.events("status") if e["detail"].get("delay") is not None]) >= 7, 30)
    set_offline(client.driver, False)
    client.wait_until(lambda: client.state() == "open", 30)

    waits = [e["detail"] for e in client.events("status") if e["detail"].get("delay") is not None]
    for wait in waits:
        assert 0 <= wait["delay"] <= min(800, 100 * 2 ** (wait["attempt"] - 1))
    assert [w["attempt"] for w in waits] == list(range(1, len(waits) + 1))
    assert len({w["delay"] for w in waits}) > 1 and any(w["delay"] < 0.9 * min(800, 100 * 2 ** (w["attempt"] - 1)) for w in waits)
    assert any(w["delay"] > 100 for w in waits[3:])  # the ceiling grew past the first one

    client.call("chat.close(); return {};")
    client.wait_until(lambda: client.state() == "closed")
    sockets = client.driver.execute_script("return window.__faults.sockets")
    time.sleep(1.5)
    assert client.driver.execute_script("return window.__faults.sockets") == sockets  # no reconnect
    assert client.events("status")[-1]["detail"] == {"state": "closed", "code": 1000, "reason": "bye"}


def test_when_the_network_comes_back_it_reconnects_without_sitting_out_the_backoff(local_stack: Any, pages: Any) -> None:
    """Browsers fire "online" when the network is back: the client reconnects within a second
    instead of waiting out a backoff that grew while the network was away."""
    (user,) = fresh("online")
    client = open_client(pages, local_stack, user, reconnectDelay=10_000, maxReconnectDelay=10_000)
    set_offline(client.driver, True)
    (connection_id,) = connection_ids(local_stack, user)
    management(local_stack, connection_id, "DELETE")

    def long_wait_pending() -> bool:
        last = client.events("status")[-1]["detail"]
        return last["state"] == "reconnecting" and (last.get("delay") or 0) >= 4000

    client.wait_until(long_wait_pending, 60)  # the backoff drew a wait of 4 s or more
    online_at = client.call("return performance.now();")
    set_offline(client.driver, False)
    client.wait_until(lambda: client.state() == "open", 30)

    opened_at = next(e["at"] for e in client.events("status") if e["detail"]["state"] == "open" and e["at"] > online_at)
    assert opened_at - online_at < 2500


def test_a_refused_handshake_is_reported_and_not_retried(local_stack: Any, pages: Any) -> None:
    client = BrowserClient(pages(local_stack.page_url, faults=True), local_stack, "nobody", token="not-a-token")

    assert client.started["error"].startswith("ClosedError")
    time.sleep(1.5)
    assert client.driver.execute_script("return window.__faults.sockets") == 1
    assert client.events("status")[-1]["detail"]["state"] == "closed" and client.events("status")[-1]["detail"]["refused"] is True
