"""Replies matched to requests by `ref` (docs/protocol.md: "Replies and errors"): a frame with a
ref gets exactly one JSON reply carrying it, on success and on every refusal, with a stable
error code; a frame without one is answered as it always was."""

from __future__ import annotations

import json
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from chat import errors, gateway, history as history_store, messaging
from tests.support.actions import routes, send

# One well-formed request of every action a client names, and what its reply's body holds.
REQUESTS = {
    "sendMessage": ({"content": "hi"}, "Message sent to all connections."),
    "sendDirectMessage": ({"to": "bob", "content": "hi"}, "bob is not connected: the message was stored and will be in their history."),
    "join": ({"channel": "lobby"}, {"joined": {"channel": "lobby", "seq": 0}}),
    "leave": ({"channel": "lobby"}, {"left": {"channel": "lobby"}}),
    "getRecentMessages": ({}, {"history": {"with": None, "messages": [], "before": None, "after": None}}),
    "getConversations": ({}, {"conversations": [], "before": None}),
    "getPresence": ({"channel": "lobby"}, {"presence": {"channel": "lobby", "members": [], "count": 0, "after": None}}),
}
ACTIONS = sorted(set(routes()) - {"$connect", "$disconnect", "$default"})


def reply_of(response: dict[str, Any]) -> dict[str, Any]:
    document = json.loads(response["body"])
    assert set(document) == {"reply"}, document
    return document["reply"]


def test_every_action_a_client_can_name_is_covered_here() -> None:
    # renewToken: test_expiry.py, below; editMessage and deleteMessage (which need a message): test_changes.py
    # ban and unban (which need a moderator): test_moderation.py; markRead (which needs a message)
    # and typing (which needs a member): test_reads.py and test_indicators.py
    assert set(ACTIONS) == set(REQUESTS) | {"renewToken", "editMessage", "deleteMessage", "ban", "unban", "markRead", "typing"}


@pytest.mark.parametrize("action", sorted(REQUESTS))
def test_a_request_with_a_ref_gets_its_usual_reply_inside_one_document_carrying_the_ref(
    handler: Any, management: Any, connect: Any, action: str
) -> None:
    connect("alice-1", user="alice")
    fields, body = REQUESTS[action]

    response = send(handler, action, "alice-1", "alice", ref="req-7", **fields)

    assert response["statusCode"] == 200
    assert reply_of(response) == {"ref": "req-7", "status": 200, "body": body}


@pytest.mark.parametrize("action", sorted(REQUESTS))
def test_the_same_request_without_a_ref_is_answered_exactly_as_before(
    handler: Any, management: Any, connect: Any, action: str
) -> None:
    connect("alice-1", user="alice")
    fields, body = REQUESTS[action]

    response = send(handler, action, "alice-1", "alice", **fields)

    assert response == {"statusCode": 200, "body": body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)}


@pytest.mark.parametrize("action", ACTIONS)
def test_every_refusal_of_every_action_with_a_ref_says_its_code_and_whether_to_retry(
    handler: Any, management: Any, action: str
) -> None:
    # Anonymous, with a body that is an array: every action refuses it (and nothing else).
    response = send(handler, action, "anon-1", None, body='["x"]' if action != "renewToken" else '{"action": "renewToken", "ref": "r"}')
    assert response["statusCode"] in (400, 403)  # the plain answer: this body has no readable ref

    refused = send(handler, action, "anon-1", None, ref="r-1", **({"channel": "bad name"} if action != "sendMessage" else {}))

    reply = reply_of(refused)
    code = errors.CODES[reply["error"]["code"]]
    assert reply["ref"] == "r-1" and reply["status"] == refused["statusCode"] == code.status
    assert reply["error"]["retry"] is code.retry and reply["error"]["text"]
    assert "body" not in reply


def test_a_refusal_with_a_ref_carries_the_text_it_always_had() -> None:
    refusal = errors.Refusal("rate_limited", "Too many messages: slow down.")

    answered = gateway.answer({"body": '{"action": "x", "ref": "a"}'}, lambda: (_ for _ in ()).throw(refusal), "Failed.", "X")

    assert answered["statusCode"] == 429
    assert reply_of(answered) == {"ref": "a", "status": 429, "error": {"code": "rate_limited", "text": "Too many messages: slow down.", "retry": True}}


@pytest.mark.parametrize(
    "ref", ["", "x" * 65, "with space", "ünïcode", "a/b", 7, True, ["a"], {"a": 1}],
    ids=["empty", "65-chars", "space", "non-ascii", "slash", "number", "true", "list", "object"],
)
def test_a_ref_that_breaks_the_rule_is_refused_as_a_bad_request_with_a_null_ref(
    handler: Any, management: Any, connect: Any, messages: Any, ref: Any
) -> None:
    connect("alice-1", user="alice")

    response = send(handler, "sendMessage", "alice-1", "alice", content="not stored", ref=ref)

    assert response["statusCode"] == 400
    assert reply_of(response) == {"ref": None, "status": 400, "error": {
        "code": "bad_request", "text": '"ref" must be 1 to 64 characters: ASCII letters, digits, "-", "_".', "retry": False}}
    assert messages.scan()["Items"] == []  # nothing happened


@pytest.mark.parametrize("ref", ["a", "x" * 64, "Az09-_"], ids=["one", "64-chars", "every-kind"])
def test_a_ref_at_the_edges_of_the_rule_is_carried_back(handler: Any, management: Any, connect: Any, ref: str) -> None:
    connect("alice-1", user="alice")

    assert reply_of(send(handler, "sendMessage", "alice-1", "alice", content="hi", ref=ref))["ref"] == ref


def test_a_null_ref_is_no_ref(handler: Any, management: Any, connect: Any) -> None:
    connect("alice-1", user="alice")

    assert send(handler, "sendMessage", "alice-1", "alice", content="hi", ref=None) == {
        "statusCode": 200, "body": "Message sent to all connections."}


def test_an_unknown_action_with_a_ref_is_refused_with_its_code(handler: Any, management: Any) -> None:
    response = send(handler, "shout", "alice-1", "alice", ref="t1")

    assert reply_of(response) == {"ref": "t1", "status": 400, "error": {
        "code": "unknown_action", "text": "Unrecognized WebSocket action.", "retry": False}}


def test_a_frame_that_is_not_json_keeps_its_plain_answer_whatever_it_holds(handler: Any, management: Any) -> None:
    assert send(handler, "$default", "alice-1", "alice", body='{"action": "x", "ref": "a"') == {
        "statusCode": 400, "body": "Unrecognized WebSocket action."}


@pytest.mark.parametrize("frame", [{"action": "heartbeat", "ref": "h1"}, {"action": "heartbeat", "extra": 1}],
                         ids=["with-ref", "extra-field"])
def test_a_heartbeat_stays_silent_whatever_else_it_carries(handler: Any, frame: dict[str, Any]) -> None:
    # On AWS a MOCK route takes every frame whose action is "heartbeat" and answers nothing.
    assert send(handler, "heartbeat", "c1", "alice", body=json.dumps(frame)) == {"statusCode": 200}


def test_a_rate_limited_frame_with_a_ref_can_be_retried(
    limited: Any, management: Any, connect: Any, frozen_clock: list[float]
) -> None:
    connect("alice-1", user="alice")
    answers = [send(limited, "getRecentMessages", "alice-1", "alice", ref=f"r{n}") for n in range(25)]

    refused = [reply_of(answer) for answer in answers if answer["statusCode"] == 429]
    assert refused and all(reply["error"]["code"] == "rate_limited" and reply["error"]["retry"] for reply in refused)
    assert [reply["ref"] for reply in refused] == [f"r{n}" for n in range(25 - len(refused), 25)]


def test_a_failure_of_aws_with_a_ref_is_unavailable_and_may_be_retried(
    handler: Any, management: Any, connect: Any, aws_failure: Any
) -> None:
    connect("alice-1", user="alice")
    aws_failure(history_store.history_table().meta.client, "Query", EndpointConnectionError(endpoint_url="https://dynamodb.example"))

    response = send(handler, "getRecentMessages", "alice-1", "alice", ref="h")

    assert response["statusCode"] == 500
    assert reply_of(response) == {"ref": "h", "status": 500, "error": {
        "code": "unavailable", "text": "History could not be loaded.", "retry": True}}


@pytest.mark.parametrize("with_ref", [False, True], ids=["plain", "ref"])
def test_an_unexpected_error_still_gets_an_answer(
    handler: Any, management: Any, connect: Any, monkeypatch: pytest.MonkeyPatch, with_ref: bool
) -> None:
    # No exception of any kind leaves a route without an answer: a client that waits forever
    # for one cannot tell a bug from a hang.
    connect("alice-1", user="alice")
    monkeypatch.setattr(messaging.history, "append", lambda *args, **kwargs: 1 / 0)

    response = send(handler, "sendMessage", "alice-1", "alice", content="hi", **({"ref": "z"} if with_ref else {}))

    assert response["statusCode"] == 500
    if with_ref:
        assert reply_of(response) == {"ref": "z", "status": 500, "error": {
            "code": "internal", "text": "Message could not be sent.", "retry": False}}
    else:
        assert response["body"] == "Message could not be sent."
