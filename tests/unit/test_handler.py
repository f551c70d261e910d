"""The contract of each Lambda function, against moto's DynamoDB and management API."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from chat import aws, connections, delivery, gateway
from tests.support.events import (
    CONNECTED_AT_MS,
    connect_event,
    disconnect_event,
    http_get_event,
    message_event,
    send_message_body,
    websocket_event,
)

SENT_OK = {"statusCode": 200, "body": "Message sent to all connections."}


def rows(table: Any) -> dict[str, dict]:
    return {item["connection_id"]: item for item in table.scan()["Items"]}


# --- ping ---------------------------------------------------------------------------------


def test_ping_answers_pong_as_plain_text_ending_with_a_newline(handler: Any) -> None:
    # The newline: `curl .../ping` would otherwise glue PONG! to the shell's prompt.
    assert handler.ping(http_get_event("/ping"), None) == {
        "statusCode": 200,
        "headers": {"Content-Type": "text/plain; charset=utf-8"},
        "body": "PONG!\n",
    }


# --- connection_manager -------------------------------------------------------------------


def test_connect_stores_connection_with_ttl_in_epoch_seconds(handler: Any, table: Any) -> None:
    response = handler.connection_manager(connect_event("conn-1"), None)

    assert response == {"statusCode": 200, "body": "Connect successful."}
    row = rows(table)["conn-1"]
    assert row["connected_at"] == CONNECTED_AT_MS // 1000
    assert row["ttl"] == CONNECTED_AT_MS // 1000 + 2 * 60 * 60


def test_disconnect_deletes_connection(handler: Any, table: Any, connect: Any) -> None:
    connect("conn-1", "conn-2")

    response = handler.connection_manager(disconnect_event("conn-1"), None)

    assert response == {"statusCode": 200, "body": "Disconnect successful."}
    assert set(rows(table)) == {"conn-2"}


def test_disconnect_of_unknown_connection_succeeds(handler: Any, table: Any) -> None:
    response = handler.connection_manager(disconnect_event("never-connected"), None)

    assert response == {"statusCode": 200, "body": "Disconnect successful."}
    assert rows(table) == {}


@pytest.mark.parametrize(
    "event",
    [
        websocket_event("conn-1", "MESSAGE", "sendMessage", "{}"),
        websocket_event("conn-1", "SOMETHING", "$connect"),
        {"requestContext": {"connectionId": "conn-1"}},
        {"requestContext": {"eventType": "CONNECT"}},
        {},
    ],
    ids=["message", "unknown-type", "no-type", "no-connection-id", "empty-event"],
)
def test_connection_manager_rejects_other_events(handler: Any, table: Any, event: dict) -> None:
    assert handler.connection_manager(event, None) == {"statusCode": 500, "body": "Unrecognized eventType."}
    assert rows(table) == {}


def test_connect_reports_failure_when_table_is_missing(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CONNECTIONS_TABLE", "no-such-table")
    aws.dynamodb_table.cache_clear()

    assert handler.connection_manager(connect_event("conn-1"), None) == {"statusCode": 500, "body": "Connect failed."}


def test_table_name_defaults_when_environment_is_unset(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONNECTIONS_TABLE")
    aws.dynamodb_table.cache_clear()

    assert connections.table().name == "serverless-websocket-connections"


# --- default_message ----------------------------------------------------------------------


def test_default_route_answers_400(handler: Any, management: Any, connect: Any) -> None:
    connect("conn-1", "conn-2")

    response = handler.default_message(message_event("conn-1", "hello", route_key="$default"), None)

    assert response == {"statusCode": 400, "body": "Unrecognized WebSocket action."}
    assert management.attempts == {}


# --- send_message: the happy path ---------------------------------------------------------


def test_send_message_reaches_every_connection_once(handler: Any, management: Any, connect: Any) -> None:
    connect("alice", "bob", "carol")

    response = handler.send_message(message_event("alice", send_message_body("hello")), None)

    assert response == SENT_OK
    for connection_id in ("alice", "bob", "carol"):
        assert management.received(connection_id) == [{"messages": [{"content": "hello"}]}]


def test_korean_text_is_sent_as_utf8_not_escaped(handler: Any, management: Any, connect: Any) -> None:
    connect("alice", "bob")
    text = "서버리스 웹소켓 API 테스트"

    handler.send_message(message_event("alice", send_message_body(text)), None)

    data = management._backend.connections["bob"].data
    assert text.encode("utf-8") in data
    assert b"\\u" not in data
    assert management.received("bob") == [{"messages": [{"content": text}]}]


@pytest.mark.parametrize("content", ["", 0, False, ["a", 1], {"nested": {"ok": True}}, "🙂 emoji"])
def test_any_non_null_json_content_is_broadcast_unchanged(
    handler: Any, management: Any, connect: Any, content: Any
) -> None:
    connect("alice")

    assert handler.send_message(message_event("alice", send_message_body(content)), None) == SENT_OK
    assert management.received("alice") == [{"messages": [{"content": content}]}]


def test_extra_fields_in_the_request_are_not_broadcast(handler: Any, management: Any, connect: Any) -> None:
    connect("alice")
    body = json.dumps({"action": "sendMessage", "content": "hi", "admin": True})

    handler.send_message(message_event("alice", body), None)

    assert management.received("alice") == [{"messages": [{"content": "hi"}]}]


def test_send_message_with_no_connections_succeeds(handler: Any, management: Any) -> None:
    assert handler.send_message(message_event("ghost", send_message_body("hi")), None) == SENT_OK
    assert management.attempts == {}


def test_management_client_is_reused_across_invocations(handler: Any, management: Any, connect: Any) -> None:
    connect("alice", "bob")

    for _ in range(3):
        handler.send_message(message_event("alice", send_message_body("hi")), None)

    assert delivery.management_client.cache_info().currsize == 1
    assert len(management.received("bob")) == 3


def test_every_client_made_once_has_its_error_classes_from_the_start(handler: Any) -> None:
    # botocore makes a client's exception classes on its first use, unsynchronized: two threads
    # using a new client at once can make two sets, and one thread's ConditionalCheckFailedException
    # is then not the class its `except` names (CI: a connect of twenty at once answered 500, in
    # ratelimit.spend). The delivery pool posts from 32 threads on one client. Made in the thread
    # that makes the client, once, they are one set.
    made = [
        aws.dynamodb_resource(aws.AWS_CLIENT_CONFIG).meta.client,
        aws.dynamodb_table("CONNECTIONS_TABLE", "x").meta.client,
        aws.client("sqs"),
        delivery.management_client("http://localhost:1"),
    ]
    assert [client._exceptions is not None for client in made] == [True] * len(made)


# --- send_message: bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (None, "empty"),
        ("", "empty"),
        ("   \n", "empty"),
        ("hello", "not valid JSON"),
        ('{"action": "sendMessage", "content": "unterminated', "not valid JSON"),
        ('{"action": "sendMessage", "content": "x"', "not valid JSON"),
        ("[" * 100_000, "nested too deeply"),
        ('["sendMessage", "x"]', "must be a JSON object"),
        ('"just a string"', "must be a JSON object"),
        ("42", "must be a JSON object"),
        ("null", "must be a JSON object"),
        ('{"action": "sendMessage"}', 'no "content"'),
        ('{"action": "sendMessage", "content": null}', 'no "content"'),
        ('{"action": "sendMessage", "content": "\\ud800"}', "not valid Unicode"),
    ],
    ids=[
        "no-body",
        "empty",
        "whitespace",
        "not-json",
        "truncated-string",
        "truncated-object",
        "deeply-nested",
        "list",
        "string",
        "number",
        "null",
        "missing-content",
        "null-content",
        "lone-surrogate",
    ],
)
def test_bad_message_is_rejected_and_nothing_is_sent(
    handler: Any, management: Any, connect: Any, table: Any, body: str | None, reason: str
) -> None:
    connect("alice", "bob")

    response = handler.send_message(message_event("alice", body), None)

    assert response["statusCode"] == 400
    assert reason in response["body"]
    assert management.attempts == {}
    assert set(rows(table)) == {"alice", "bob"}


# A message must fit API Gateway's 128 KB frame both when it is broadcast and, later, in a
# history reply, whose entry has seq, sender, sent_at and id too, and whose envelope keeps 1 KB.
# It is checked before it has a seq, with room for the largest (16 digits).
HISTORY_ENTRY_OVERHEAD = len(
    json.dumps({"seq": 10**15, "content": "", "sender": None, "sent_at": "2026-11-25T12:22:25.146Z", "id": "0" * 32}).encode()
)
LARGEST_CONTENT = 128 * 1024 - 1024 - HISTORY_ENTRY_OVERHEAD


def test_largest_message_that_fits_is_sent(handler: Any, management: Any, connect: Any) -> None:
    connect("alice")
    content = "x" * LARGEST_CONTENT

    assert handler.send_message(message_event("alice", send_message_body(content)), None) == SENT_OK
    assert management.received("alice") == [{"messages": [{"content": content}]}]


def test_one_byte_more_is_rejected(handler: Any, management: Any, connect: Any) -> None:
    connect("alice")

    response = handler.send_message(message_event("alice", send_message_body("x" * (LARGEST_CONTENT + 1))), None)

    assert response["statusCode"] == 400 and "too large" in response["body"]
    assert management.attempts == {}


@pytest.mark.parametrize("content", ["x" * (128 * 1024), "가" * 44_000], ids=["ascii", "korean-3-bytes-each"])
def test_payload_over_128_kb_is_rejected(handler: Any, management: Any, connect: Any, content: str) -> None:
    connect("alice")

    response = handler.send_message(message_event("alice", send_message_body(content)), None)

    assert response["statusCode"] == 400
    assert "too large" in response["body"] and "131072" in response["body"]
    assert management.attempts == {}


# --- send_message: connections that fail ---------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_code"),
    [(410, "GoneException"), (410, None)],
    ids=["GoneException", "bare-410-as-serverless-offline"],
)
def test_gone_connection_is_deleted_and_others_still_receive(
    handler: Any, management: Any, connect: Any, table: Any, status: int, error_code: str | None
) -> None:
    connect("alice", "gone", "bob")
    management.answer("gone", status, error_code)

    response = handler.send_message(message_event("alice", send_message_body("hi")), None)

    assert response == SENT_OK
    assert set(rows(table)) == {"alice", "bob"}
    assert management.received("bob") == [{"messages": [{"content": "hi"}]}]
    assert management.attempts["gone"] == 1


@pytest.mark.parametrize(
    ("status", "error_code"),
    [(400, "BadRequestException"), (403, "ForbiddenException"), (500, "InternalServerError")],
)
def test_other_failure_keeps_the_row_and_others_still_receive(
    handler: Any, management: Any, connect: Any, table: Any, status: int, error_code: str, caplog: Any
) -> None:
    connect("alice", "flaky", "bob")
    management.answer("flaky", status, error_code)

    response = handler.send_message(message_event("alice", send_message_body("hi")), None)

    assert response == SENT_OK
    assert set(rows(table)) == {"alice", "flaky", "bob"}
    assert management.received("bob") == [{"messages": [{"content": "hi"}]}]
    assert "Could not post to connection flaky" in caplog.text


def test_a_scan_failure_after_storing_says_the_message_is_stored_not_delivered(
    handler: Any, management: Any, connect: Any, messages: Any, aws_failure: Any, caplog: Any
) -> None:
    # Only the Scan fails: the rate limiter's UpdateItem and the history's transaction go through,
    # so the answer can come from nothing but the room's connections not being read. Once stored,
    # a bare 500 would invite a retry that stores the message twice (issue 14).
    connect("alice", "bob")
    failure = ClientError({"Error": {"Code": "InternalServerError", "Message": "the Scan broke"}}, "Scan")
    aws_failure(connections.table().meta.client, "Scan", failure)

    response = handler.send_message(message_event("alice", send_message_body("hi")), None)

    assert response == {"statusCode": 200, "body": "Message stored as seq 1, but not delivered to everyone: do not send it again; "
                                                    "it is in the room's history."}
    assert "the Scan broke" in caplog.text  # logged with its traceback
    assert management.received("bob") == []
    assert [item["seq"] for item in messages.scan()["Items"]] == [1]


# --- endpoints ----------------------------------------------------------------------------


def test_management_endpoint_on_aws_is_the_apis_own_stage(handler: Any) -> None:
    event = message_event("alice", "{}")

    assert delivery.management_endpoint(event["requestContext"]) == "https://abc123.execute-api.us-east-1.amazonaws.com/dev"


@pytest.mark.parametrize(("port", "expected"), [(None, "http://localhost:3001"), ("4001", "http://localhost:4001")])
def test_management_endpoint_offline(
    handler: Any, monkeypatch: pytest.MonkeyPatch, port: str | None, expected: str
) -> None:
    monkeypatch.setenv("IS_OFFLINE", "true")
    if port:
        monkeypatch.setenv("OFFLINE_WEBSOCKET_PORT", port)

    event = message_event("alice", "{}")
    event["requestContext"].update(domainName="localhost", stage="local")

    assert delivery.management_endpoint(event["requestContext"]) == expected


def test_the_offline_heartbeat_is_answered_with_nothing_to_send(handler: Any) -> None:
    # On AWS a MOCK route answers it; offline it reaches $default, and the client gets no frame.
    assert handler.default_message(message_event("c1", '{"action": "heartbeat"}', "$default"), None) == {"statusCode": 200}


@pytest.mark.parametrize(
    ("times", "opened"),
    [
        ({"connectedAt": 1_764_000_000_999, "requestTimeEpoch": 1_764_000_007_000}, 1_764_000_000),  # when it opened
        ({"requestTimeEpoch": 1_764_000_007_000}, 1_764_000_007),  # else when the request came
    ],
    ids=["connected-at", "request-time"],
)
def test_a_connection_opened_when_api_gateway_says(handler: Any, times: dict[str, int], opened: int) -> None:
    assert gateway.connected_at({"requestContext": times}) == opened


def test_a_connection_whose_event_has_no_times_opened_now(handler: Any, frozen_clock: list[float]) -> None:
    assert gateway.connected_at({"requestContext": {}}) == int(frozen_clock[0])
