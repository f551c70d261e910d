"""The per-connection send rate: GCRA on the connection row, one conditional write a message."""

from __future__ import annotations

from typing import Any

import pytest

from chat import connections
from tests.events import (
    action_body,
    message_event,
    send_message_body,
)

# --- a per-connection send rate --------------------------------------------------------------


RATE_LIMITED = {
    "statusCode": 429,
    "body": "Too many messages: at most 5 a second (10 at once) per connection. This one was not sent; wait a moment.",
}


def test_a_client_pipelining_150_frames_gets_its_burst_then_a_clear_refusal(
    handler: Any, management: Any, connect: Any, messages: Any, frozen_clock: Any
) -> None:
    connect("flood", "bob")

    responses = [handler.send_message(message_event("flood", send_message_body(n)), None) for n in range(150)]

    assert [r["statusCode"] for r in responses[:10]] == [200] * 10
    assert all(r == RATE_LIMITED for r in responses[10:])
    assert [d["messages"][0]["content"] for d in management.received("bob")] == list(range(10))
    assert messages.scan()["Count"] == 10  # refused messages are not stored either


def test_the_bucket_refills_at_the_rate(handler: Any, management: Any, connect: Any, frozen_clock: Any) -> None:
    connect("steady")
    for n in range(10):
        assert handler.send_message(message_event("steady", send_message_body(n)), None)["statusCode"] == 200
    assert handler.send_message(message_event("steady", send_message_body("11th")), None) == RATE_LIMITED

    frozen_clock[0] += 0.2  # one message's worth at 5 a second
    assert handler.send_message(message_event("steady", send_message_body("later")), None)["statusCode"] == 200
    assert handler.send_message(message_event("steady", send_message_body("too soon")), None) == RATE_LIMITED
    frozen_clock[0] += 10  # idle: the whole burst is back
    assert all(handler.send_message(message_event("steady", send_message_body(n)), None)["statusCode"] == 200 for n in range(10))


@pytest.mark.parametrize("route", ["sendDirectMessage", "getRecentMessages"])
def test_direct_messages_and_history_share_the_same_bucket(
    handler: Any, management: Any, connect: Any, frozen_clock: Any, route: str
) -> None:
    connect("busy", user="alice")
    for n in range(10):
        handler.send_message(message_event("busy", send_message_body(n), user="alice"), None)
    body = action_body(route, **({"to": "bob", "content": "hi"} if route == "sendDirectMessage" else {}))
    entry_point = handler.send_direct_message if route == "sendDirectMessage" else handler.get_recent_messages

    assert entry_point(message_event("busy", body, route, "alice"), None) == RATE_LIMITED


def test_one_connections_flood_does_not_limit_another(handler: Any, management: Any, connect: Any, frozen_clock: Any) -> None:
    connect("flood", "calm")
    for n in range(20):
        handler.send_message(message_event("flood", send_message_body(n)), None)

    assert handler.send_message(message_event("calm", send_message_body("hello")), None)["statusCode"] == 200


def test_a_connection_without_a_row_is_not_limited_and_gets_no_row(handler: Any, management: Any, table: Any, frozen_clock: Any) -> None:
    for n in range(15):
        assert handler.send_message(message_event("rowless", send_message_body(n)), None)["statusCode"] == 200
    assert table.scan()["Items"] == []  # the limiter never creates a connection row


def test_the_limit_is_one_conditional_write_per_message(handler: Any, management: Any, connect: Any, frozen_clock: Any) -> None:
    connect("one")
    calls: list[str] = []
    client = connections.table().meta.client
    for operation in ("GetItem", "UpdateItem", "PutItem", "Query"):
        client.meta.events.register(f"before-call.dynamodb.{operation}", lambda op=operation, **_: calls.append(op))

    handler.send_message(message_event("one", send_message_body("x")), None)

    assert calls == ["UpdateItem"]
