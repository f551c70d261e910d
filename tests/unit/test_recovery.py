"""Recovery after a reconnect: getRecentMessages with "after" returns what a client missed, oldest
first, by seq, with a cursor to go on; with "before", it pages back. In the room, a channel, a DM."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import ratelimit
from tests.support.actions import dm, history, history_response, say
from tests.support.events import action_body, message_event
from tests.support.actions import send


@pytest.fixture(autouse=True)
def unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests read pages by the dozen: the rate limit has its own tests."""
    monkeypatch.setattr(ratelimit, "MESSAGE_RATE_PER_SECOND", 0)


def seqs(page: dict[str, Any]) -> list[int]:
    return [message["seq"] for message in page["messages"]]


def test_after_returns_the_newer_messages_oldest_first(handler: Any, management: Any, clock: Any) -> None:
    for n in range(1, 8):
        say(handler, "alice", f"m{n}")

    page = history(handler, "bob", after=3, limit=20)

    assert seqs(page) == [4, 5, 6, 7] and [m["content"] for m in page["messages"]] == ["m4", "m5", "m6", "m7"]
    assert page["after"] is None  # that is everything
    assert page["before"] == 4  # and older ones exist: page back from the first


def test_after_pages_on_until_it_is_null(handler: Any, management: Any, clock: Any) -> None:
    for n in range(1, 11):
        say(handler, "alice", n)
    pages, after = [], 0
    while after is not None:
        page = history(handler, "bob", after=after, limit=3)
        pages.append(seqs(page))
        after = page["after"]

    assert pages == [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10]]


def test_after_the_latest_seq_gives_nothing_more(handler: Any, management: Any, clock: Any) -> None:
    say(handler, "alice", "only")

    assert history(handler, "bob", after=1) == {"with": None, "messages": [], "before": 2, "after": None}
    assert history(handler, "bob", after=99)["messages"] == []


def test_after_zero_is_the_whole_history(handler: Any, management: Any, clock: Any) -> None:
    say(handler, "alice", "first")

    page = history(handler, "bob", after=0)

    assert seqs(page) == [1] and page["before"] is None and page["after"] is None


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 10, 11])
def test_catching_up_page_by_page_never_loses_or_repeats_a_message(handler: Any, management: Any, clock: Any, limit: int) -> None:
    """Whatever the page size (a page exactly `limit` long may or may not say there is more:
    DynamoDB returns LastEvaluatedKey at the limit, moto only when more exist)."""
    for n in range(10):
        say(handler, "alice", n)
    collected, after = [], 0
    for _ in range(20):
        page = history(handler, "bob", after=after, limit=limit)
        collected += seqs(page)
        if page["after"] is None:
            break
        after = page["after"]

    assert collected == list(range(1, 11))


def test_before_past_the_latest_comes_forward_from_the_newest_shown_and_loses_nothing(
    handler: Any, management: Any, clock: Any
) -> None:
    for n in range(1, 4):
        say(handler, "alice", f"m{n}")

    page = history(handler, "bob", before=50)  # a cursor from the future, or a stale client's guess

    assert seqs(page) == [1, 2, 3] and page["after"] == 3  # not 49: seqs 4 to 49 are still to come
    say(handler, "alice", "m4")
    assert seqs(history(handler, "bob", after=page["after"])) == [4]


def test_before_pages_back_and_after_comes_forward_again(handler: Any, management: Any, clock: Any) -> None:
    for n in range(1, 7):
        say(handler, "alice", n)

    newest = history(handler, "bob", limit=2)
    older = history(handler, "bob", limit=2, before=newest["before"])

    assert seqs(newest) == [5, 6] and newest["before"] == 5 and newest["after"] is None
    assert seqs(older) == [3, 4] and older["before"] == 3 and older["after"] == 4
    assert seqs(history(handler, "bob", after=older["after"])) == [5, 6]


def test_after_in_a_channel_and_a_dm(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-1", user="alice")
    join = message_event("alice-1", action_body("join", channel="ops"), "join", "alice")
    assert handler.join(join, None)["statusCode"] == 200
    for n in range(4):
        body = action_body("sendMessage", channel="ops", content=f"ops {n}")
        assert handler.send_message(message_event("alice-1", body, user="alice"), None)["statusCode"] == 200
        dm(handler, "alice", "bob", f"dm {n}")

    channel_page = history(handler, "carol", channel="ops", after=2)
    dm_page = history(handler, "bob", **{"with": "alice"}, after=2)

    assert channel_page["channel"] == "ops" and "with" not in channel_page
    assert [(m["channel"], m["seq"], m["content"]) for m in channel_page["messages"]] == [("ops", 3, "ops 2"), ("ops", 4, "ops 3")]
    assert [(m["seq"], m["content"], m["to"]) for m in dm_page["messages"]] == [(3, "dm 2", "bob"), (4, "dm 3", "bob")]


def test_a_channels_history_needs_the_claim_not_membership(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-1", user="alice")
    handler.join(message_event("alice-1", action_body("join", channel="ops"), "join", "alice"), None)
    handler.send_message(message_event("alice-1", action_body("sendMessage", channel="ops", content="hi"), user="alice"), None)

    assert [m["content"] for m in history(handler, "never-joined", channel="ops")["messages"]] == ["hi"]


def test_a_reply_cut_by_size_goes_on_after_the_last_message_it_holds(handler: Any, management: Any, clock: Any) -> None:
    for n in range(1, 6):
        say(handler, "alice", f"{n}" + "x" * 40_000)  # three fill a 128 KB reply

    first = history(handler, "bob", after=0, limit=100)
    rest = history(handler, "bob", after=first["after"], limit=100)

    assert seqs(first) == [1, 2, 3] and first["after"] == 3
    assert seqs(rest) == [4, 5] and rest["after"] is None


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"after": -1}, '"after" must be a whole number >= 0'),
        ({"after": 1.5}, '"after" must be a whole number >= 0'),
        ({"after": "3"}, '"after" must be a whole number >= 0'),
        ({"after": True}, '"after" must be a whole number >= 0'),
        ({"after": 2, "before": 5}, 'Send "before" (to page back) or "after" (to catch up), not both.'),
        ({"channel": "ops", "with": "bob"}, 'Send "channel" (a channel\'s history) or "with" (a direct conversation), not both.'),
    ],
    ids=["negative", "float", "text", "bool", "after-and-before", "channel-and-with"],
)
def test_bad_recovery_requests_are_refused_with_the_rule(handler: Any, fields: dict[str, Any], reason: str) -> None:
    response = history_response(handler, "alice", **fields)

    assert response["statusCode"] == 400
    assert response["body"].startswith(reason) if reason.startswith("Send") else reason in response["body"]


def test_every_reply_is_json_with_both_cursors(handler: Any, management: Any, clock: Any) -> None:
    say(handler, "alice", "x")
    for fields in ({}, {"after": 0}, {"before": 1}, {"channel": "c"}, {"with": "bob"}):
        document = json.loads(history_response(handler, "alice", **fields)["body"])["history"]
        assert {"messages", "before", "after"} <= set(document), fields


# --- the cursors at the ends, and conversations whose last message is gone -----------------


def test_a_history_that_fits_one_page_offers_nothing_older(handler: Any, management: Any, clock: Any) -> None:
    for n in range(3):
        say(handler, "alice", n)

    page = history(handler, "bob", limit=20)

    assert seqs(page) == [1, 2, 3] and page["before"] is None and page["after"] is None


def test_paging_back_one_message_at_a_time_reaches_the_first(handler: Any, management: Any, clock: Any) -> None:
    for n in range(3):
        say(handler, "alice", n)

    cursors, seen, before = [], [], None
    while True:
        page = history(handler, "bob", limit=1, **({"before": before} if before else {}))
        seen += seqs(page)
        before = page["before"]
        cursors.append(before)
        if before is None:
            break

    assert seen == [3, 2, 1] and cursors == [3, 2, None]


def test_an_empty_page_going_back_still_offers_the_way_forward(handler: Any, management: Any, clock: Any) -> None:
    say(handler, "alice", "old")
    say(handler, "alice", "new")
    clock[0] += 31 * 24 * 3600  # both are past the retention now

    page = history(handler, "bob", limit=5, before=3)

    assert page["messages"] == [] and page["before"] is None and page["after"] == 2


def test_a_conversation_whose_last_message_is_gone_or_past_retention_is_listed_without_it(
    handler: Any, management: Any, tables: dict[str, Any], clock: Any
) -> None:
    dm(handler, "alice", "bob", "long ago")
    dm(handler, "alice", "carol", "deleted by TTL")
    tables["HistoryTable"].delete_item(Key={"conversation": "dm#alice#carol", "seq": 1})
    clock[0] += 31 * 24 * 3600
    dm(handler, "alice", "dave", "today")

    body = json.dumps({"action": "getConversations"})
    listed = json.loads(handler.get_conversations(message_event("alice-conn", body, "getConversations", "alice"), None)["body"])

    assert [(entry["with"], entry["last"] and entry["last"]["content"]) for entry in listed["conversations"]] == [
        ("dave", "today"), ("carol", None), ("bob", None)]


def test_a_channels_history_is_refused_to_a_token_that_does_not_allow_it(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-1", user="alice")
    handler.join(message_event("alice-1", action_body("join", channel="ops"), "join", "alice"), None)
    handler.send_message(message_event("alice-1", action_body("sendMessage", channel="ops", content="secret"), user="alice"), None)
    event = message_event("mallory-1", action_body("getRecentMessages", channel="ops"), "getRecentMessages", "mallory")
    event["requestContext"]["authorizer"]["channels"] = '["team-*"]'  # the token's claim, as the authorizer passes it on

    assert handler.get_recent_messages(event, None) == {"statusCode": 403, "body": 'Your token does not allow channel "ops".'}


# What a client is told, word for word (docs/protocol.md): each refusal names what to do instead.
@pytest.mark.parametrize(
    ("route", "body", "user", "reply"),
    [
        ("sendDirectMessage", action_body("sendDirectMessage", to="bob", content="hi"), None,
         (403, "Direct messages need a signed-in connection: connect with a token.")),
        ("sendDirectMessage", action_body("sendDirectMessage", to="alice", content="hi"), "alice",
         (400, "You cannot send a direct message to yourself.")),
        ("sendDirectMessage", "[]", "alice", (400, "Message body must be a JSON object like "
                                                  '{"action": "sendDirectMessage", "to": "<user id>", "content": "..."}.')),
        ("sendMessage", "[]", "alice", (400, 'Message body must be a JSON object like {"action": "sendMessage", "content": "..."}.')),
        ("getRecentMessages", "[]", "alice", (400, "Message body must be a JSON object like "
                                                   '{"action": "getRecentMessages", "with": "<user id>", "limit": 20}.')),
        ("getRecentMessages", action_body("getRecentMessages", **{"with": "bob"}), None,
         (403, "Direct message history needs a signed-in connection: connect with a token.")),
        ("getRecentMessages", action_body("getRecentMessages", **{"with": "alice"}), "alice",
         (400, 'You have no direct conversation with yourself: leave out "with" for the room.')),
        ("getConversations", "[]", "alice", (400, 'Message body must be a JSON object like {"action": "getConversations", "limit": 20}.')),
    ],
    ids=["dm-anonymous", "dm-yourself", "dm-not-an-object", "send-not-an-object", "history-not-an-object",
         "dm-history-anonymous", "history-with-yourself", "conversations-not-an-object"],
)
def test_each_refusal_says_what_to_do_word_for_word(
    handler: Any, management: Any, connect: Any, route: str, body: str, user: str | None, reply: tuple[int, str]
) -> None:
    connect("c1", user=user)
    response = send(handler, route, "c1", user, body=body)

    assert (response["statusCode"], response["body"]) == reply
