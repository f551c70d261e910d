"""The connect race (issue 18): $connect writes the row before API Gateway has finished the
handshake, and a post in that window answers 410. Such a 410 must not make the connection deaf."""

from __future__ import annotations

from typing import Any

from chat import connections
from tests.support.actions import dm_response
from tests.support.events import message_event, send_message_body


def rows(table: Any) -> set[str]:
    return {item["connection_id"] for item in table.scan()["Items"]}


def say(handler: Any, connection_id: str, text: str, user: str | None = None) -> dict[str, Any]:
    return handler.send_message(message_event(connection_id, send_message_body(text), user=user), None)


def test_a_410_in_the_handshake_window_keeps_the_row_and_the_connection_hears_everything(
    handler: Any, management: Any, connect: Any, table: Any, frozen_clock: list[float]
) -> None:
    connect("alice-1", user="alice")
    connect("bob-1", user="bob")  # $connect ran just now (the events' connectedAt is the clock's now)
    management.answer("bob-1", 410, "GoneException", times=1)  # API Gateway: not established yet

    assert say(handler, "alice-1", "too early", user="alice")["statusCode"] == 200

    assert management.attempts["bob-1"] == 1 and rows(table) == {"alice-1", "bob-1"}  # kept
    frozen_clock[0] += 2  # the handshake completes
    assert dm_response(handler, "alice", "bob", "안녕") == {"statusCode": 200, "body": "Direct message delivered to bob."}
    assert say(handler, "alice-1", "now", user="alice")["statusCode"] == 200
    assert [m["content"] for frame in management.received("bob-1") for m in frame["messages"]] == ["안녕", "now"]


def test_a_410_on_a_row_older_than_any_handshake_prunes_it(
    handler: Any, management: Any, connect: Any, table: Any, frozen_clock: list[float]
) -> None:
    connect("alice-1", user="alice")
    connect("ghost", user="bob")  # $disconnect never ran
    management.answer("ghost", 410)  # bare 410, as serverless-offline answers
    frozen_clock[0] += connections.HANDSHAKE_GRACE_SECONDS - 1

    say(handler, "alice-1", "still young")
    assert "ghost" in rows(table)

    frozen_clock[0] += 2
    say(handler, "alice-1", "gone now")
    assert rows(table) == {"alice-1"}


def test_rows_written_without_connected_at_are_pruned_on_410(
    handler: Any, management: Any, connect: Any, table: Any, frozen_clock: list[float]
) -> None:
    connect("alice-1", user="alice")
    table.put_item(Item={"connection_id": "legacy", "ttl": 2_000_000_000})
    management.answer("legacy", 410, "GoneException")

    say(handler, "alice-1", "hello")

    assert rows(table) == {"alice-1"}
