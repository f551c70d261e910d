"""getRecentMessages: order, limit, paging, size, and who may read what."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import conversations, history as history_store
from tests.support.actions import dm, history, history_response, say
from tests.support.helpers import only_the_first_key_each_time, stale_reads
from tests.support.events import action_body, message_event


def test_room_history_is_the_last_n_oldest_first(handler: Any, management: Any, clock: Any) -> None:
    for n in range(30):
        say(handler, "alice" if n % 2 else None, f"message {n}")

    result = history(handler, "bob", limit=5)

    assert [m["content"] for m in result["messages"]] == [f"message {n}" for n in range(25, 30)]
    assert result["with"] is None
    # Anonymous messages (even n) have no sender.
    assert [m["sender"] for m in result["messages"]] == [("alice" if n % 2 else None) for n in range(25, 30)]
    assert result["before"]


def test_default_limit_is_20(handler: Any, management: Any, clock: Any) -> None:
    for n in range(25):
        say(handler, "alice", n)

    assert [m["content"] for m in history(handler, "alice")["messages"]] == list(range(5, 25))


def test_paging_with_before_walks_back_to_the_first_message(handler: Any, management: Any, clock: Any) -> None:
    for n in range(23):
        say(handler, "alice", n)

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        page = history(handler, "bob", limit=10, **({"before": cursor} if cursor else {}))
        seen = [m["content"] for m in page["messages"]] + seen
        pages += 1
        cursor = page["before"]
        if not cursor:
            break
        assert pages < 10

    assert seen == list(range(23))
    assert pages in (3, 4)  # 10 + 10 + 3 (a last empty page is allowed)


def test_empty_history(handler: Any) -> None:
    assert history(handler, "alice") == {"with": None, "messages": [], "before": None, "after": None}


def test_history_is_one_query_with_a_limit_never_a_scan(handler: Any, management: Any, clock: Any) -> None:
    for n in range(5):
        say(handler, "alice", n)
    calls: list[tuple[str, Any]] = []
    client = history_store.history_table().meta.client
    for operation in ("Scan", "Query"):
        client.meta.events.register(
            f"before-parameter-build.dynamodb.{operation}", lambda params, op=operation, **_: calls.append((op, params.get("Limit")))
        )

    history(handler, "bob", limit=3)

    assert calls == [("Query", 3)]


def test_dm_history_of_a_pair_is_readable_by_both_and_nobody_else(handler: Any, management: Any, clock: Any) -> None:
    dm(handler, "alice", "bob", "hi bob")
    dm(handler, "bob", "alice", "hi alice")
    dm(handler, "alice", "carol", "secret for carol")
    say(handler, "alice", "in the room")

    for reader, other in (("alice", "bob"), ("bob", "alice")):
        result = history(handler, reader, **{"with": other})
        assert [m["content"] for m in result["messages"]] == ["hi bob", "hi alice"]
        assert result["with"] == other
    # bob can only name conversations he is in: asking for carol gives bob+carol, which is empty.
    assert history(handler, "bob", **{"with": "carol"})["messages"] == []
    assert [m["content"] for m in history(handler, "carol", **{"with": "alice"})["messages"]] == ["secret for carol"]
    assert [m["content"] for m in history(handler, "bob")["messages"]] == ["in the room"]


def test_anonymous_connection_cannot_read_direct_messages(handler: Any, management: Any, clock: Any) -> None:
    dm(handler, "alice", "bob", "private")
    event = message_event("anon", action_body("getRecentMessages", **{"with": "bob"}), "getRecentMessages")

    response = handler.get_recent_messages(event, None)

    assert response["statusCode"] == 403
    assert "private" not in response["body"]


def test_history_reply_fits_in_one_frame(handler: Any, management: Any, clock: Any) -> None:
    big = "가" * 40_000  # about 120 KB each as UTF-8
    for _ in range(3):
        say(handler, "alice", big)
    say(handler, "alice", "last")

    event = message_event("reader", action_body("getRecentMessages", limit=10), "getRecentMessages", "bob")
    body = handler.get_recent_messages(event, None)["body"]

    assert len(body.encode("utf-8")) <= 128 * 1024
    result = json.loads(body)["history"]
    assert [m["content"] for m in result["messages"]] == [big, "last"]
    older = history(handler, "bob", limit=10, before=result["before"])
    assert [m["content"] for m in older["messages"]] == [big]


def test_largest_accepted_message_fits_alone_in_a_history_reply(handler: Any, management: Any, clock: Any) -> None:
    longest_user = "가" * 128  # "with" at its longest, 384 bytes of UTF-8
    other = "나" * 128
    for size in range(126_000, 131_072, 500):
        event = message_event("c", action_body("sendDirectMessage", to=other, content="x" * size), "sendDirectMessage", longest_user)
        if handler.send_direct_message(event, None)["statusCode"] != 200:
            break
    accepted = size - 500

    event = message_event("reader", action_body("getRecentMessages", limit=1, **{"with": other}), "getRecentMessages", longest_user)
    body = handler.get_recent_messages(event, None)["body"]

    assert len(body.encode("utf-8")) <= 128 * 1024
    assert [len(m["content"]) for m in json.loads(body)["history"]["messages"]] == [accepted]


def test_json_content_comes_back_exactly(handler: Any, management: Any, clock: Any) -> None:
    content = {"text": "서버리스", "n": 1.5, "list": [1, None, True]}
    say(handler, "alice", content)

    assert history(handler, "alice")["messages"][0]["content"] == content


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"limit": 0}, '"limit" must be a whole number from 1 to 100'),
        ({"limit": 101}, '"limit" must be a whole number from 1 to 100'),
        ({"limit": "20"}, '"limit" must be a whole number'),
        ({"limit": 2.5}, '"limit" must be a whole number'),
        ({"limit": True}, '"limit" must be a whole number'),
        ({"with": ""}, '"with" must be a user id'),
        ({"with": 7}, '"with" must be a user id'),
        ({"with": "a#b"}, '"with" must be a user id'),
        ({"before": "yesterday"}, '"before" must be a whole number >= 1'),
        ({"before": "5"}, '"before" must be a whole number >= 1'),
        ({"before": 0}, '"before" must be a whole number >= 1'),
        ({"before": 2.5}, '"before" must be a whole number >= 1'),
        ({"before": True}, '"before" must be a whole number >= 1'),
        ({"before": "0001764000000000#" + "0" * 32}, '"before" must be a whole number >= 1'),
    ],
    ids=["zero", "over-100", "string", "float", "bool", "empty-with", "number-with", "hash-with", "word-cursor",
         "text-cursor", "zero-cursor", "float-cursor", "bool-cursor", "old-style-cursor"],
)
def test_bad_history_request_is_rejected(handler: Any, fields: dict[str, Any], reason: str) -> None:
    event = message_event("reader", action_body("getRecentMessages", **fields), "getRecentMessages", "alice")

    response = handler.get_recent_messages(event, None)

    assert response["statusCode"] == 400
    assert reason in response["body"]


@pytest.mark.parametrize("body", [None, "", "nope", "[]"])
def test_malformed_history_request_is_rejected(handler: Any, body: str | None) -> None:
    response = handler.get_recent_messages(message_event("reader", body, "getRecentMessages", "alice"), None)

    assert response["statusCode"] == 400


# --- reading a conversation back: bounds, retention, and DynamoDB's partial answers --------


def test_catching_up_returns_at_most_the_limit_and_a_cursor_to_the_rest(handler: Any, management: Any, clock: Any) -> None:
    for n in range(1, 6):
        say(handler, "alice", f"m{n}")

    page = history(handler, "bob", after=0, limit=2)

    assert [m["seq"] for m in page["messages"]] == [1, 2] and page["after"] == 2


def test_catching_up_past_more_expired_pages_than_one_request_reads_gives_a_cursor_not_an_end(
    handler: Any, management: Any, clock: Any
) -> None:
    expired = history_store.MAX_HISTORY_PAGES * 2 + 2  # more than one request reads, at 2 a page
    for n in range(expired):
        say(handler, "alice", f"old {n}")
    clock[0] += 31 * 24 * 3600
    say(handler, "alice", "new")

    first = history(handler, "bob", after=0, limit=2)
    assert first["messages"] == [] and first["after"] == history_store.MAX_HISTORY_PAGES * 2  # go on from here
    second = history(handler, "bob", after=first["after"], limit=2)

    assert [m["content"] for m in second["messages"]] == ["new"] and second["after"] is None


def test_a_page_that_reaches_expired_messages_offers_nothing_older(handler: Any, management: Any, clock: Any) -> None:
    say(handler, "alice", "a month ago")
    clock[0] += 30 * 24 * 3600 + 60
    say(handler, "alice", "now")

    page = history(handler, "bob", limit=20)

    assert [m["content"] for m in page["messages"]] == ["now"] and page["before"] is None


def test_conversations_list_every_last_message_when_dynamodb_reads_them_a_few_at_a_time(
    handler: Any, management: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for other in ("bob", "carol", "dave"):
        dm(handler, "alice", other, f"hi {other}")
    asked = only_the_first_key_each_time(history_store.history_table().meta.client, monkeypatch)

    response = handler.get_conversations(message_event("alice-conn", action_body("getConversations"), "getConversations", "alice"), None)

    listed = json.loads(response["body"])["conversations"]
    assert {entry["with"]: entry["last"]["content"] for entry in listed} == {"bob": "hi bob", "carol": "hi carol", "dave": "hi dave"}
    assert asked == [3, 2, 1]


def test_a_channels_messages_read_back_name_their_channel(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-conn", user="alice")
    assert handler.join(message_event("alice-conn", action_body("join", channel="lobby"), "join", "alice"), None)["statusCode"] == 200
    body = action_body("sendMessage", channel="lobby", content="hi")
    assert handler.send_message(message_event("alice-conn", body, "sendMessage", "alice"), None)["statusCode"] == 200

    (message,) = history(handler, "alice", "alice-conn", channel="lobby")["messages"]

    assert message["channel"] == "lobby" and message["content"] == "hi"


def test_a_retried_send_is_recognised_when_dynamodb_reads_the_head_and_the_record_apart(
    handler: Any, management: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = only_the_first_key_each_time(conversations.table().meta.client, monkeypatch)
    body = action_body("sendMessage", content="once", clientMessageId="m-1")

    first = json.loads(handler.send_message(message_event("alice-conn", body, "sendMessage", "alice"), None)["body"])["sent"]
    retry = json.loads(handler.send_message(message_event("alice-conn", body, "sendMessage", "alice"), None)["body"])["sent"]

    assert (first["seq"], first["duplicate"]) == (1, False) and (retry["seq"], retry["duplicate"]) == (1, True)
    assert [m["content"] for m in history(handler, "bob")["messages"]] == ["once"]
    assert asked[:2] == [2, 1]  # the head, then the record left over


def test_what_was_just_stored_is_read_back_though_reads_may_lag(
    handler: Any, management: Any, connect: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = action_body("sendMessage", content="just now", clientMessageId="m-1")
    first = json.loads(handler.send_message(message_event("alice-conn", body, "sendMessage", "alice"), None)["body"])["sent"]
    dm(handler, "alice", "bob", "hi bob")
    for table in (history_store.history_table(), conversations.table()):
        stale_reads(table.meta.client, monkeypatch)  # every read below comes right after the writes

    assert [m["content"] for m in history(handler, "bob")["messages"]] == ["just now"]
    assert [m["content"] for m in history(handler, "bob", after=0)["messages"]] == ["just now"]
    retry = json.loads(handler.send_message(message_event("alice-conn", body, "sendMessage", "alice"), None)["body"])["sent"]
    assert retry == {**first, "duplicate": True}  # the stored message, read back
    connect("bob-conn", user="bob")
    joined = handler.join(message_event("bob-conn", action_body("join", channel="lobby"), "join", "bob"), None)
    assert json.loads(joined["body"]) == {"joined": {"channel": "lobby", "seq": 0}}
    say_in_lobby = action_body("sendMessage", channel="lobby", content="one")
    assert handler.send_message(message_event("bob-conn", say_in_lobby, "sendMessage", "bob"), None)["statusCode"] == 200
    joined_again = handler.join(message_event("bob-conn", action_body("join", channel="lobby"), "join", "bob"), None)
    assert json.loads(joined_again["body"]) == {"joined": {"channel": "lobby", "seq": 1}}  # the head as just written
    # The inbox index lags as it may (stale_reads lets index reads through), but the last message
    # it names was just written and is read from the table consistently.
    listed = json.loads(handler.get_conversations(
        message_event("alice-conn", action_body("getConversations"), "getConversations", "alice"), None)["body"])["conversations"]
    assert [(entry["with"], entry["last"]["content"]) for entry in listed] == [("bob", "hi bob")]


def test_a_message_is_shown_until_the_last_minute_of_its_retention(handler: Any, management: Any, clock: Any) -> None:
    say(handler, "alice", "almost a month ago")
    clock[0] += history_store.MESSAGE_RETENTION_SECONDS - 60

    assert [m["content"] for m in history(handler, "bob")["messages"]] == ["almost a month ago"]
    assert [m["content"] for m in history(handler, "bob", after=0)["messages"]] == ["almost a month ago"]


def test_a_send_without_a_client_message_id_reads_only_the_head(
    handler: Any, management: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = only_the_first_key_each_time(conversations.table().meta.client, monkeypatch)

    say(handler, "alice", "no id")

    assert asked == [1]  # no send record to look for (a key with no sort key would be refused)


def test_two_messages_of_half_a_frame_each_come_back_one_per_reply(handler: Any, management: Any, clock: Any) -> None:
    half = "x" * (64 * 1024 + 200)  # together over 128 KB, though each fits with room to spare
    say(handler, "alice", half)
    say(handler, "alice", half + "y")

    response = history_response(handler, "bob", limit=2)
    page = json.loads(response["body"])["history"]

    assert [m["content"] for m in page["messages"]] == [half + "y"] and len(response["body"].encode("utf-8")) <= 128 * 1024
    assert [m["content"] for m in history(handler, "bob", before=page["before"])["messages"]] == [half]
