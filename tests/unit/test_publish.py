"""POST /publish: the app's backend publishes a batch to channels, users and the room, each message
stored as its conversation's next seq (shared with the WebSocket senders) and answered on its own;
a retried batch stores nothing twice; every refusal of the whole request and of one message."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from chat import backend, history
from tests.support.actions import history as read_history
from tests.support.events import MANAGEMENT_ENDPOINT, action_body, message_event

ARN = "arn:aws:sts::123456789012:assumed-role/orders-backend/i-0abc"


@pytest.fixture(autouse=True)
def deployed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stage's WebSocket endpoint, as the template gives every function (an HTTP request's
    event names the REST API, not the WebSocket one)."""
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", MANAGEMENT_ENDPOINT)


def publish_event(body: Any, caller: str | None = ARN, raw: bool = False, base64_body: bool = False) -> dict[str, Any]:
    text = body if raw else json.dumps(body, ensure_ascii=False)
    event: dict[str, Any] = {"httpMethod": "POST", "path": "/publish", "resource": "/publish", "headers": {},
                             "requestContext": {"identity": {"userArn": caller} if caller else {"sourceIp": "1.2.3.4"}},
                             "body": base64.b64encode(text.encode()).decode() if base64_body else text,
                             "isBase64Encoded": base64_body}
    return event


def post(handler: Any, body: Any, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = handler.publish(publish_event(body, **kwargs), None)
    assert response["headers"] == {"Content-Type": "application/json; charset=utf-8"}
    return response["statusCode"], json.loads(response["body"])


def joined(handler: Any, connect: Any, connection_id: str, user: str, channel: str) -> None:
    connect(connection_id, user=user)
    event = message_event(connection_id, action_body("join", channel=channel), "join", user)
    assert handler.join(event, None)["statusCode"] == 200


def contents(management: Any, connection_id: str) -> list[Any]:
    return [m["content"] for frame in management.received(connection_id) if isinstance(frame, dict)
            for m in frame.get("messages", [])]


def test_a_mixed_batch_reaches_a_channels_members_a_users_connections_and_everyone(
    handler: Any, management: Any, connect: Any, workers: Any
) -> None:
    joined(handler, connect, "dana-1", "dana", "deploys")
    connect("alice-1", "alice-2", user="alice")
    connect("bob-1", user="bob")

    status, reply = post(handler, {"messages": [
        {"channel": "deploys", "sender": "ci-bot", "content": {"build": 812, "ok": True}, "clientMessageId": "build-812"},
        {"to": "alice", "sender": "orders", "content": "Your order shipped"},
        {"room": True, "sender": "ops", "content": "Maintenance at 10:00 UTC"},
    ]})
    workers.drain()  # channel and room messages go through the workers

    assert status == 200 and reply["failed"] == 0
    channel, dm, room = reply["results"]
    assert channel == {"channel": "deploys", "seq": 1, "id": channel["id"], "clientMessageId": "build-812",
                       "duplicate": False, "delivery": "complete"}
    assert dm == {"to": "alice", "seq": 1, "id": dm["id"], "duplicate": False, "delivery": "complete", "recipientOnline": True}
    assert room == {"room": True, "seq": 1, "id": room["id"], "duplicate": False, "delivery": "complete"}
    # Different conversations are handled at once: what each connection got, in any order.
    assert sorted(map(str, contents(management, "dana-1"))) == sorted(map(str, [{"build": 812, "ok": True}, "Maintenance at 10:00 UTC"]))
    assert sorted(contents(management, "alice-1")) == sorted(contents(management, "alice-2")) == [
        "Maintenance at 10:00 UTC", "Your order shipped"]
    assert contents(management, "bob-1") == ["Maintenance at 10:00 UTC"]  # the channel and alice's DM are not his


def test_a_published_message_is_a_full_message_that_shows_in_history_and_conversations(
    handler: Any, management: Any, connect: Any, workers: Any
) -> None:
    joined(handler, connect, "dana-1", "dana", "deploys")
    post(handler, {"messages": [{"to": "alice", "sender": "orders", "content": "shipped"},
                                {"channel": "deploys", "sender": "ci-bot", "content": "green"}]})
    workers.drain()

    (delivered,) = [f["messages"][0] for f in management.received("dana-1") if isinstance(f, dict) and "messages" in f]
    assert delivered["sender"] == "ci-bot" and delivered["channel"] == "deploys" and delivered["seq"] == 1
    dm = read_history(handler, "alice", **{"with": "orders"})["messages"]
    assert [(m["content"], m["sender"], m["to"]) for m in dm] == [("shipped", "orders", "alice")]
    listed = json.loads(handler.get_conversations(
        message_event("alice-1", action_body("getConversations"), "getConversations", "alice"), None)["body"])
    assert [entry["with"] for entry in listed["conversations"]] == ["orders"]


def test_publish_and_websocket_senders_share_one_gap_free_seq(handler: Any, management: Any, connect: Any, workers: Any) -> None:
    joined(handler, connect, "dana-1", "dana", "deploys")
    say = action_body("sendMessage", channel="deploys", content="from a client")
    assert handler.send_message(message_event("dana-1", say, "sendMessage", "dana"), None)["statusCode"] == 200

    _, reply = post(handler, {"messages": [{"channel": "deploys", "sender": "ci-bot", "content": n} for n in range(3)]})
    assert handler.send_message(message_event("dana-1", say, "sendMessage", "dana"), None)["statusCode"] == 200

    assert [result["seq"] for result in reply["results"]] == [2, 3, 4]  # in the order given
    page = read_history(handler, "dana", "dana-1", channel="deploys", after=0)
    assert [m["seq"] for m in page["messages"]] == [1, 2, 3, 4, 5]


def test_a_retried_batch_stores_nothing_twice_and_delivers_nothing_twice(
    handler: Any, management: Any, connect: Any, workers: Any, messages: Any
) -> None:
    joined(handler, connect, "dana-1", "dana", "deploys")
    connect("alice-1", user="alice")
    batch = {"messages": [{"channel": "deploys", "sender": "ci-bot", "content": n, "clientMessageId": f"b-{n}"} for n in range(5)]
             + [{"to": "alice", "sender": "orders", "content": "once", "clientMessageId": "o-1"}]}
    _, first = post(handler, batch)
    workers.drain()

    _, retry = post(handler, batch)  # the connection was cut before the answer: sent again
    workers.drain()

    assert [r["duplicate"] for r in first["results"]] == [False] * 6
    assert [r["duplicate"] for r in retry["results"]] == [True] * 6
    assert [r["seq"] for r in retry["results"]] == [r["seq"] for r in first["results"]]
    assert messages.scan()["Count"] == 6
    assert contents(management, "dana-1") == [0, 1, 2, 3, 4] and contents(management, "alice-1") == ["once"]


def test_each_message_is_answered_on_its_own_and_the_rest_go_through(handler: Any, management: Any, workers: Any) -> None:
    status, reply = post(handler, {"messages": [
        {"channel": "ok", "sender": "ci-bot", "content": 1},
        {"channel": "bad name", "sender": "ci-bot", "content": 2},
        {"channel": "ok", "to": "alice", "sender": "ci-bot", "content": 3},
        {"room": False, "sender": "ops", "content": 4},
        {"to": "alice", "sender": "аlice", "content": 5},
        {"to": "alice", "sender": "alice", "content": 6},
        {"channel": "ok", "content": 7},
        {"channel": "ok", "sender": "ci-bot"},
        {"channel": "ok", "sender": "ci-bot", "content": "x" * 140_000},
        {"channel": "ok", "sender": "ci-bot", "content": 10, "clientMessageId": "no spaces please"},
        {"channel": "ok", "sender": "ci-bot", "content": 11},
    ]})

    assert status == 200 and reply["failed"] == 9
    codes = [r.get("error", {}).get("code") for r in reply["results"]]
    assert codes == [None, "bad_request", "bad_request", "bad_request", "bad_request", "bad_request", "bad_request",
                     "bad_request", "too_large", "bad_request", None]
    texts = [r["error"]["text"] for r in reply["results"] if "error" in r]
    assert texts[1] == texts[2] == 'Each message names exactly one of "channel", "to" or "room": true.'
    assert texts[4] == "You cannot send a direct message to yourself."
    assert [r["seq"] for r in reply["results"] if "seq" in r] == [1, 2]  # no seq taken by a refused one


@pytest.mark.parametrize("body, status, text", [
    ("not json", 400, "Message body is not valid JSON."),
    ('["a"]', 400, 'Message body must be a JSON object like {"messages": [{"channel": "<name>", "sender": "<user id>", "content": "..."}]}.'),
    ("{}", 400, 'The body must have a non-empty "messages" list: {"messages": [{"channel": "<name>", "sender": "<user id>", "content": "..."}]}'),
    ('{"messages": []}', 400, 'The body must have a non-empty "messages" list: {"messages": [{"channel": "<name>", "sender": "<user id>", "content": "..."}]}'),
    ('{"messages": "x"}', 400, 'The body must have a non-empty "messages" list: {"messages": [{"channel": "<name>", "sender": "<user id>", "content": "..."}]}'),
    ('{"messages": [1]}', 400, 'Every item of "messages" must be a JSON object like {"channel": "<name>", "sender": "<user id>", "content": "..."}.'),
    (json.dumps({"messages": [{"room": True, "sender": "ops", "content": n} for n in range(101)]}), 400,
     "At most 100 messages a request, not 101: send them in batches."),
    ("", 400, 'Message body is empty: send {"messages": [{"channel": "<name>", "sender": "<user id>", "content": "..."}]}.'),
], ids=["not-json", "not-an-object", "no-messages", "empty-messages", "messages-not-a-list", "message-not-an-object",
        "101-messages", "empty"])
def test_a_request_that_is_not_a_batch_is_refused_whole_and_stores_nothing(
    handler: Any, messages: Any, body: str, status: int, text: str
) -> None:
    assert post(handler, body, raw=True) == (status, {"error": {"code": "bad_request", "text": text}})
    assert messages.scan()["Count"] == 0


def test_a_body_over_a_mebibyte_is_refused_with_413(handler: Any, messages: Any) -> None:
    body = json.dumps({"messages": [{"room": True, "sender": "ops", "content": "x" * 20_000} for _ in range(60)]})

    status, reply = post(handler, body, raw=True)

    assert (status, reply["error"]["code"]) == (413, "payload_too_large") and messages.scan()["Count"] == 0
    assert reply["error"]["text"] == f"The request body is {len(body)} bytes; at most 1048576 are taken."


def test_a_base64_body_is_read(handler: Any, management: Any, workers: Any) -> None:
    status, reply = post(handler, {"messages": [{"room": True, "sender": "ops", "content": "안녕"}]}, base64_body=True)

    assert status == 200 and reply["results"][0]["seq"] == 1


def test_an_unsigned_request_is_refused_outside_the_local_stack(handler: Any, messages: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Defence in depth: were the method ever deployed without AWS_IAM, nobody could publish.
    monkeypatch.delenv("IS_OFFLINE", raising=False)

    assert post(handler, {"messages": [{"room": True, "sender": "ops", "content": "x"}]}, caller=None) == (
        403, {"error": {"code": "forbidden", "text": "POST /publish must be signed (AWS_IAM): the request carries no signed caller."}})
    assert messages.scan()["Count"] == 0


def test_the_local_stack_takes_unsigned_requests(handler: Any, management: Any, workers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IS_OFFLINE", "true")  # serverless-offline checks no signature

    assert post(handler, {"messages": [{"room": True, "sender": "ops", "content": "x"}]}, caller=None)[0] == 200


def test_every_publish_is_logged_with_its_caller_and_counts(handler: Any, management: Any, workers: Any, capsys: Any) -> None:
    post(handler, {"messages": [{"room": True, "sender": "ops", "content": "x"}, {"room": "yes", "sender": "ops", "content": 1}]})

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    (audit,) = [line for line in lines if line.get("message") == "Published"]
    assert (audit["caller"], audit["messages"], audit["failed"]) == (ARN, 2, 1)


def test_messages_not_started_in_time_are_answered_unavailable(handler: Any, management: Any, workers: Any) -> None:
    class ShortContext:
        def get_remaining_time_in_millis(self) -> int:
            return backend.RESERVE_MS - 1

    response = handler.publish(publish_event({"messages": [{"room": True, "sender": "ops", "content": "late"}]}), ShortContext())

    (result,) = json.loads(response["body"])["results"]
    assert result == {"error": {"code": "unavailable", "text": backend.NOT_TRIED}}
    assert history.latest_seq(history.ROOM) == 0
