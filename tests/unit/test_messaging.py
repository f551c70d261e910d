"""Direct messages as the sender and the recipient see them: who gets a copy (every connection of
the recipient, the sender's other ones), what the sender is told (delivered live or stored for
later; the acknowledgement's recipientOnline), that each side's clientMessageIds are its own, and
that a stored message whose delivery failed says so instead of inviting a blind retry."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import EndpointConnectionError

from chat import connections
from tests.support.actions import dm_response, history
from tests.support.events import message_event


def received_contents(management: Any, connection_id: str) -> list[Any]:
    """The contents of the messages the connection was sent ({"messages": [...]} frames)."""
    return [message["content"] for frame in management.received(connection_id) if isinstance(frame, dict)
            for message in frame.get("messages", [])]


def test_a_dm_reaches_every_connection_of_the_recipient_and_the_senders_other_ones_only(
    handler: Any, management: Any, connect: Any, clock: Any
) -> None:
    connect("alice-conn", "alice-phone", user="alice")
    connect("bob-laptop", "bob-phone", user="bob")
    connect("carol-conn", user="carol")

    response = dm_response(handler, "alice", "bob", "hi bob")

    assert response == {"statusCode": 200, "body": "Direct message delivered to bob."}
    assert received_contents(management, "bob-laptop") == received_contents(management, "bob-phone") == ["hi bob"]
    assert received_contents(management, "alice-phone") == ["hi bob"]  # her other device
    assert received_contents(management, "alice-conn") == [] and received_contents(management, "carol-conn") == []


def test_a_dm_to_someone_offline_is_stored_for_them_and_the_sender_is_told(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-conn", user="alice")

    response = dm_response(handler, "alice", "bob", "see you")

    assert response == {"statusCode": 200, "body": "bob is not connected: the message was stored and will be in their history."}
    (message,) = history(handler, "bob", "bob-conn", **{"with": "alice"})["messages"]
    assert (message["content"], message["sender"], message["to"]) == ("see you", "alice", "bob")


def test_the_acknowledgement_says_whether_the_recipient_got_it_live(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-conn", user="alice")
    connect("bob-conn", user="bob")

    online = json.loads(dm_response(handler, "alice", "bob", "one", clientMessageId="m-1")["body"])["sent"]
    offline = json.loads(dm_response(handler, "alice", "dave", "two", clientMessageId="m-2")["body"])["sent"]

    assert online["recipientOnline"] is True and online["to"] == "bob" and online["delivery"] == "complete"
    assert offline["recipientOnline"] is False and offline["to"] == "dave"


def test_a_dm_whose_post_failed_says_the_recipient_is_online_and_reaches_them_from_a_worker(
    handler: Any, management: Any, connect: Any, clock: Any, workers: Any, messages: Any
) -> None:
    """The recipient's post timed out (or answered 5xx): a worker posts it again, so the sender
    is not told "bob is not connected", and the job carries the message's own send time."""
    connect("alice-conn", user="alice")
    connect("bob-conn", user="bob")
    management.answer("bob-conn", 500, "InternalServerError", times=1)

    sent = json.loads(dm_response(handler, "alice", "bob", "one", clientMessageId="m-1")["body"])["sent"]

    assert sent["recipientOnline"] is True
    (job,) = workers.pending_jobs()
    (stored,) = [item for item in messages.scan()["Items"] if item.get("id") == sent["id"]]
    assert job.connections == ("bob-conn",) and job.attempt == 2 and job.sent_at_ms == int(stored["sent_at_ms"])
    workers.drain()
    assert received_contents(management, "bob-conn") == ["one"]


def test_a_retried_dm_is_answered_as_a_duplicate_and_delivered_once(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-conn", user="alice")
    connect("bob-conn", user="bob")

    first = json.loads(dm_response(handler, "alice", "bob", "once", clientMessageId="m-1")["body"])["sent"]
    retry = json.loads(dm_response(handler, "alice", "bob", "once", clientMessageId="m-1")["body"])["sent"]

    assert (first["duplicate"], retry["duplicate"]) == (False, True) and retry["seq"] == first["seq"]
    assert "recipientOnline" not in retry  # not delivered again: nothing new to say
    assert received_contents(management, "bob-conn") == ["once"]


def test_each_side_of_a_conversation_has_its_own_client_message_ids(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-conn", user="alice")
    connect("bob-conn", user="bob")

    from_alice = json.loads(dm_response(handler, "alice", "bob", "from alice", clientMessageId="1")["body"])["sent"]
    from_bob = json.loads(dm_response(handler, "bob", "alice", "from bob", clientMessageId="1")["body"])["sent"]

    assert (from_alice["duplicate"], from_bob["duplicate"]) == (False, False) and from_bob["seq"] == from_alice["seq"] + 1
    assert [m["content"] for m in history(handler, "bob", "bob-conn", **{"with": "alice"})["messages"]] == ["from alice", "from bob"]


def test_a_dm_is_listed_in_both_users_conversations(handler: Any, management: Any, connect: Any, clock: Any) -> None:
    connect("alice-conn", user="alice")
    dm_response(handler, "alice", "bob", "hello")

    for user, other in (("alice", "bob"), ("bob", "alice")):
        body = json.dumps({"action": "getConversations"})
        listed = json.loads(handler.get_conversations(message_event(f"{user}-conn", body, "getConversations", user), None)["body"])
        assert [(entry["with"], entry["last"]["content"]) for entry in listed["conversations"]] == [(other, "hello")]


def test_a_stored_dm_whose_delivery_failed_says_so_and_is_kept(
    handler: Any, management: Any, connect: Any, clock: Any, aws_failure: Any
) -> None:
    connect("alice-conn", user="alice")
    aws_failure(connections.table().meta.client, "Query", EndpointConnectionError(endpoint_url="https://dynamodb"))

    response = dm_response(handler, "alice", "bob", "hello")

    assert response == {"statusCode": 200, "body": "Message stored as seq 1, but not delivered to everyone: do not send it again; "
                                                   "it is in your history with bob."}


def test_the_offline_heartbeat_is_answered_with_nothing_and_other_frames_are_refused(handler: Any, management: Any) -> None:
    heartbeat = handler.default_message(message_event("c1", json.dumps({"action": "heartbeat"}), "$default"), None)
    other = handler.default_message(message_event("c1", json.dumps({"action": "dance"}), "$default"), None)

    assert heartbeat == {"statusCode": 200}
    assert other["statusCode"] == 400 and other["body"] == "Unrecognized WebSocket action."
