"""getConversations: a user's own direct conversations, most recent first, each with its latest
seq and message, paged; with `after`, a client back from offline finds and recovers every DM."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import history
from tests.support.actions import dm, history as read_history
from tests.support.events import action_body, message_event


def conversations(handler: Any, user: str | None, **fields: Any) -> dict[str, Any]:
    response = handler.get_conversations(message_event(f"{user}-conn", action_body("getConversations", **fields), "getConversations", user), None)
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])


def test_a_users_conversations_come_most_recent_first_with_their_latest_message(handler: Any, management: Any, clock: Any) -> None:
    dm(handler, "alice", "bob", "1 to bob")
    dm(handler, "carol", "alice", "1 from carol")
    dm(handler, "bob", "alice", "2 from bob")
    dm(handler, "dave", "erin", "not alice's")

    listed = conversations(handler, "alice")

    assert [(c["with"], c["seq"], c["last"]["content"]) for c in listed["conversations"]] == [("bob", 2, "2 from bob"), ("carol", 1, "1 from carol")]
    assert listed["conversations"][0]["last"]["sender"] == "bob" and listed["before"] is None
    assert [c["with"] for c in conversations(handler, "erin")["conversations"]] == ["dave"]
    assert conversations(handler, "zed") == {"conversations": [], "before": None}


def test_a_client_back_from_offline_finds_and_recovers_every_dm_it_missed(handler: Any, management: Any, clock: Any) -> None:
    dm(handler, "bob", "alice", "seen")
    seen = {c["with"]: c["seq"] for c in conversations(handler, "alice")["conversations"]}
    for sender, text in (("bob", "missed 1"), ("carol", "missed 2"), ("bob", "missed 3")):  # alice is away
        dm(handler, sender, "alice", text)

    missed = []
    for entry in conversations(handler, "alice")["conversations"]:
        if entry["seq"] > seen.get(entry["with"], 0):
            page = read_history(handler, "alice", **{"with": entry["with"]}, after=seen.get(entry["with"], 0))
            missed += [m["content"] for m in page["messages"]]

    assert sorted(missed) == ["missed 1", "missed 2", "missed 3"]


def test_conversations_are_paged(handler: Any, management: Any, clock: Any) -> None:
    for n in range(5):
        dm(handler, f"friend{n}", "alice", f"hi {n}")

    names, before = [], None
    for _ in range(10):
        page = conversations(handler, "alice", limit=2, **({"before": before} if before else {}))
        names += [c["with"] for c in page["conversations"]]
        before = page["before"]
        if before is None:
            break

    assert names == [f"friend{n}" for n in reversed(range(5))]


def test_the_same_pair_is_one_entry_whoever_writes(handler: Any, management: Any, clock: Any) -> None:
    for n in range(3):
        dm(handler, "alice" if n % 2 else "bob", "bob" if n % 2 else "alice", n)

    assert [(c["with"], c["seq"]) for c in conversations(handler, "alice")["conversations"]] == [("bob", 3)]
    assert [(c["with"], c["seq"]) for c in conversations(handler, "bob")["conversations"]] == [("alice", 3)]


def test_conversations_need_a_signed_in_connection(handler: Any) -> None:
    response = handler.get_conversations(message_event("anon", action_body("getConversations"), "getConversations"), None)

    assert response == {"statusCode": 403, "body": "Conversations need a signed-in connection: connect with a token."}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"limit": 0}, '"limit" must be a whole number'), ({"before": "yesterday"}, '"before" must be the "before" of an earlier getConversations'),
     ({"before": 5}, '"before" must be the "before"')],
    ids=["limit", "word-cursor", "number-cursor"],
)
def test_bad_conversation_requests_are_refused(handler: Any, fields: dict[str, Any], reason: str) -> None:
    response = handler.get_conversations(message_event("c", action_body("getConversations", **fields), "getConversations", "alice"), None)

    assert response["statusCode"] == 400 and reason in response["body"]


def test_a_dm_moves_both_inboxes_in_its_own_transaction(handler: Any, management: Any, tables: dict[str, Any], clock: Any) -> None:
    dm(handler, "alice", "bob", "hi")

    items = {item["pk"]: item for item in tables["ConversationsTable"].scan()["Items"] if item["pk"].startswith("inbox#")}
    assert set(items) == {"inbox#alice", "inbox#bob"}
    assert items["inbox#alice"]["with"] == "bob" and items["inbox#bob"]["with"] == "alice"
    assert items["inbox#alice"]["seq"] == items["inbox#bob"]["seq"] == 1
    assert history.latest_seq("dm#alice#bob") == 1
