"""sendDirectMessage, and what signed-in senders add to broadcasts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import boto3
import pytest

from chat import aws, connections, fanout
from tests.support.events import action_body, message_event, send_message_body
from tests.support.helpers import queue_depth


def direct(handler: Any, connection_id: str, user: str | None, body: str | None) -> dict[str, Any]:
    return handler.send_direct_message(message_event(connection_id, body, "sendDirectMessage", user), None)


def dm_body(to: Any, content: Any = "안녕 bob") -> str:
    return action_body("sendDirectMessage", to=to, content=content)


def stored(messages: Any) -> list[dict[str, Any]]:
    return sorted(messages.scan()["Items"], key=lambda item: (item["conversation"], item["seq"]))


@pytest.fixture
def alice_bob_carol(connect: Any) -> None:
    connect("alice-phone", "alice-laptop", user="alice")
    connect("bob-phone", "bob-laptop", user="bob")
    connect("carol-1", user="carol")
    connect("anon-1")


def test_dm_reaches_every_connection_of_recipient_and_senders_other_ones(
    handler: Any, management: Any, messages: Any, alice_bob_carol: None
) -> None:
    response = direct(handler, "alice-phone", "alice", dm_body("bob"))

    assert response == {"statusCode": 200, "body": "Direct message delivered to bob."}
    for connection_id in ("bob-phone", "bob-laptop", "alice-laptop"):
        (delivery,) = management.received(connection_id)
        (message,) = delivery["messages"]
        assert message["content"] == "안녕 bob"
        assert message["sender"] == "alice" and message["to"] == "bob"
        datetime.fromisoformat(message["sent_at"].replace("Z", "+00:00"))
        assert len(message["id"]) == 32
    for connection_id in ("alice-phone", "carol-1", "anon-1"):
        assert management.received(connection_id) == []
    (item,) = stored(messages)
    assert item["conversation"] == "dm#alice#bob"
    assert json.loads(item["content_json"]) == "안녕 bob"


def test_dm_is_posted_from_the_send_even_over_the_fan_out_threshold(
    handler: Any, management: Any, queues: dict[str, str], alice_bob_carol: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A DM's audience is small (MAX_CONNECTIONS_PER_USER), but that limit can be turned off: the
    # sender is told whether the recipient got it live only if the send posts it itself.
    monkeypatch.setattr(fanout, "FANOUT_THRESHOLD", 1)

    response = direct(handler, "alice-phone", "alice", dm_body("bob"))

    assert response == {"statusCode": 200, "body": "Direct message delivered to bob."}
    for connection_id in ("bob-phone", "bob-laptop", "alice-laptop"):
        assert len(management.received(connection_id)) == 1
    assert queue_depth(boto3.client("sqs"), queues["DeliveryQueue"]) == 0  # nothing left for the workers


def test_dm_recipient_lookup_is_a_query_on_the_user_index(
    handler: Any, management: Any, alice_bob_carol: None
) -> None:
    calls: list[str] = []
    client = connections.table().meta.client
    for operation in ("Scan", "Query"):
        client.meta.events.register(
            f"before-parameter-build.dynamodb.{operation}", lambda params, op=operation, **_: calls.append(f"{op}:{params.get('IndexName')}")
        )

    direct(handler, "alice-phone", "alice", dm_body("bob"))

    assert calls == ["Query:user_id-index", "Query:user_id-index"]


def test_dm_to_offline_user_is_stored_and_sender_told(
    handler: Any, management: Any, messages: Any, alice_bob_carol: None
) -> None:
    response = direct(handler, "alice-phone", "alice", dm_body("dave"))

    assert response["statusCode"] == 200
    assert response["body"] == "dave is not connected: the message was stored and will be in their history."
    assert [item["conversation"] for item in stored(messages)] == ["dm#alice#dave"]
    assert len(management.received("alice-laptop")) == 1  # the sender's other device still syncs


def test_dm_to_user_whose_only_connection_is_gone_counts_as_not_delivered(
    handler: Any, management: Any, table: Any, connect: Any
) -> None:
    connect("alice-1", user="alice")
    connect("bob-stale", user="bob")
    management.answer("bob-stale", 410)

    response = direct(handler, "alice-1", "alice", dm_body("bob"))

    assert "bob is not connected" in response["body"]
    assert "bob-stale" not in {item["connection_id"] for item in table.scan()["Items"]}


def test_dm_needs_a_signed_in_sender(handler: Any, management: Any, messages: Any, alice_bob_carol: None) -> None:
    response = direct(handler, "anon-1", None, dm_body("bob"))

    assert response["statusCode"] == 403
    assert "connect with a token" in response["body"]
    assert stored(messages) == [] and management.attempts == {}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "empty"),
        ("", "empty"),
        ("not json", "not valid JSON"),
        ('{"action": "sendDirectMessage", "to": "bob"', "not valid JSON"),
        ('["bob", "hi"]', "must be a JSON object"),
        (action_body("sendDirectMessage", content="hi"), '"to" must be a user id'),
        (dm_body(None), '"to" must be a user id'),
        (dm_body(""), '"to" must be a user id'),
        (dm_body(42), '"to" must be a user id'),
        (dm_body(["bob"]), '"to" must be a user id'),
        (dm_body("bob#alice"), '"to" must be a user id'),
        (dm_body("b" * 129), '"to" must be a user id'),
        (dm_body("alice"), "yourself"),
        (action_body("sendDirectMessage", to="bob"), 'no "content"'),
        (dm_body("bob", None), 'no "content"'),
        (dm_body("bob", "x" * (128 * 1024)), "too large"),
        ('{"action": "sendDirectMessage", "to": "bob", "content": "\\ud800"}', "not valid Unicode"),
    ],
    ids=[
        "no-body", "empty", "not-json", "truncated", "list", "no-to", "null-to", "empty-to", "number-to",
        "list-to", "hash-in-to", "long-to", "to-self", "no-content", "null-content", "too-large", "lone-surrogate",
    ],
)
def test_bad_dm_is_rejected_and_nothing_is_stored_or_sent(
    handler: Any, management: Any, messages: Any, alice_bob_carol: None, body: str | None, reason: str
) -> None:
    response = direct(handler, "alice-phone", "alice", body)

    assert response["statusCode"] == 400
    assert reason in response["body"]
    assert stored(messages) == [] and management.attempts == {}


def test_dm_is_stored_even_when_delivery_fails(handler: Any, management: Any, messages: Any, connect: Any) -> None:
    connect("alice-1", user="alice")
    connect("bob-1", user="bob")
    management.answer("bob-1", 500, "InternalServerError")

    response = direct(handler, "alice-1", "alice", dm_body("bob"))

    # bob is connected: his failed post goes to a delivery worker to be tried again (chat/dispatch.py)
    assert response["body"] == "Direct message delivered to bob."
    assert len(stored(messages)) == 1


def test_failed_store_sends_nothing(handler: Any, management: Any, messages: Any, alice_bob_carol: None) -> None:
    messages.delete()
    aws.dynamodb_table.cache_clear()

    response = direct(handler, "alice-phone", "alice", dm_body("bob"))

    assert response == {"statusCode": 500, "body": "Direct message could not be sent."}
    assert management.attempts == {}


def test_broadcast_from_signed_in_user_carries_sender_and_time(
    handler: Any, management: Any, messages: Any, alice_bob_carol: None
) -> None:
    handler.send_message(message_event("alice-phone", send_message_body("모두 안녕"), user="alice"), None)

    (delivery,) = management.received("anon-1")
    (message,) = delivery["messages"]
    assert message["content"] == "모두 안녕" and message["sender"] == "alice"
    assert set(message) == {"seq", "content", "sender", "sent_at", "id"}
    (item,) = stored(messages)
    assert item["conversation"] == "room" and item["id"] == message["id"] and item["seq"] == message["seq"] == 1


def test_anonymous_broadcast_is_stored_and_keeps_the_part_1_shape(
    handler: Any, management: Any, messages: Any, connect: Any
) -> None:
    connect("anon-1")

    handler.send_message(message_event("anon-1", send_message_body("hi")), None)

    assert management.received("anon-1") == [{"messages": [{"content": "hi"}]}]
    (item,) = stored(messages)
    assert item["conversation"] == "room" and "sender" not in item


def test_broadcast_not_stored_is_not_sent(handler: Any, management: Any, messages: Any, connect: Any) -> None:
    connect("anon-1", "anon-2")
    boto3.client("dynamodb").delete_table(TableName=messages.name)

    response = handler.send_message(message_event("anon-1", send_message_body("hi")), None)

    assert response["statusCode"] == 500
    assert management.attempts == {}
