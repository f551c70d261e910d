"""The review hook (issue 29): with a review function, every new message (room, channel, DM, the
publish API) and every edit is given to it before it takes a seq; it allows, allows with other
content, or denies (403 `denied`, nothing stored, no seq used). A timeout, a function error or
an answer that means nothing applies the fallback (`allow` or `deny`) and is counted. The
function is a real HTTP server on loopback speaking Lambda's Invoke API
(tests/support/review_function.py), answering as the shipped word list does unless told."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from chat import history, review
from tests.support.actions import send
from tests.support.events import MANAGEMENT_ENDPOINT
from tests.support.helpers import emitted, metric_values
from tests.support.review_function import ReviewFunction

CHANNEL = "general"
FUNCTION = "serverless-websocket-test-reviewExample"


@pytest.fixture
def function(monkeypatch: pytest.MonkeyPatch) -> Iterator[ReviewFunction]:
    """The review function, wired as plugins/review.js wires it (REVIEW_FUNCTION), with Lambda's
    endpoint on loopback (boto3's AWS_ENDPOINT_URL_LAMBDA, as the local stack sets it)."""
    fake = ReviewFunction()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", fake.endpoint)
    monkeypatch.setattr(review, "REVIEW_FUNCTION", FUNCTION)
    monkeypatch.setattr(review, "REVIEW_TIMEOUT_MS", 1000)
    monkeypatch.setattr(review, "REVIEW_FALLBACK", "allow")
    yield fake
    fake.close()


@pytest.fixture
def chat(connect: Any, handler: Any) -> Any:
    """alice and bob, each on a connection, both in the channel."""
    for user in ("alice", "bob"):
        connect(f"{user}-1", user=user)
        assert send(handler, "join", f"{user}-1", user, channel=CHANNEL)["statusCode"] == 200
    return handler


def say(handler: Any, content: Any, user: str = "alice", **fields: Any) -> tuple[int, Any]:
    """A channel message sent with a `ref`: the reply's status and its body or error."""
    where = {"channel": CHANNEL} if "to" not in fields else {}
    route = "sendDirectMessage" if "to" in fields else "sendMessage"
    reply = json.loads(send(handler, route, f"{user}-1", user, content=content, ref="r", **where, **fields)["body"])["reply"]
    return reply["status"], reply.get("body", reply.get("error"))


def stored(messages: Any) -> list[dict[str, Any]]:
    """Every message stored, in seq order (changes included)."""
    items = sorted(messages.scan(ConsistentRead=True)["Items"], key=lambda item: (item["conversation"], item["seq"]))
    return [history.stored_to_message(item) for item in items]


def contents(messages: Any) -> list[Any]:
    return [message.get("content") for message in stored(messages)]


# --- allow, rewrite, deny ------------------------------------------------------------------------


def test_without_a_review_function_nothing_is_asked(chat: Any, management: Any, messages: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = ReviewFunction()
    monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", fake.endpoint)
    try:
        assert say(chat, "spam spam")[0] == 200  # the word list would deny it
        assert fake.requests == [] and contents(messages) == ["spam spam"]
    finally:
        fake.close()


def test_an_allowed_message_is_stored_and_the_function_saw_where_who_and_what(
    chat: Any, management: Any, messages: Any, function: ReviewFunction
) -> None:
    status, body = say(chat, "hello 안녕")
    assert status == 200 and body["sent"]["seq"] == 1
    assert function.names == [FUNCTION]
    assert function.requests == [
        {"channel": CHANNEL, "sender": "alice", "content": "hello 안녕", "kind": "message", "source": "client"}
    ]
    assert contents(messages) == ["hello 안녕"]
    assert [frame["messages"][0]["content"] for frame in management.received("bob-1") if "messages" in frame] == ["hello 안녕"]


def test_a_denied_message_is_refused_with_the_reason_and_takes_no_seq(
    chat: Any, management: Any, messages: Any, function: ReviewFunction
) -> None:
    status, error = say(chat, "this is spam")
    assert (status, error["code"]) == (403, "denied")
    assert error["text"] == "Not sent: it contains a word this service does not allow"
    assert stored(messages) == [] and management.received("bob-1") == []
    # No seq was used: the next message is 1, so nobody sees a gap.
    status, body = say(chat, "a fine one")
    assert status == 200 and body["sent"]["seq"] == 1


def test_rewritten_content_is_what_is_stored_and_what_everyone_gets(
    chat: Any, management: Any, messages: Any, function: ReviewFunction
) -> None:
    status, body = say(chat, "oh Darn, late again")
    assert status == 200
    assert contents(messages) == ["oh ****, late again"]
    live = [frame["messages"][0]["content"] for frame in management.received("bob-1") if "messages" in frame]
    assert live == ["oh ****, late again"]
    assert function.requests[0]["content"] == "oh Darn, late again"


def test_direct_messages_and_the_publish_api_are_reviewed_too(
    chat: Any, management: Any, messages: Any, function: ReviewFunction, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert say(chat, "dm: what a scam", to="bob")[1]["code"] == "denied"
    assert say(chat, "dm: fine", to="bob")[0] == 200
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", MANAGEMENT_ENDPOINT)  # as the template gives every function
    batch = [
        {"channel": CHANNEL, "sender": "shop", "content": "your order shipped"},
        {"channel": CHANNEL, "sender": "shop", "content": "buy spam now"},
        {"to": "bob", "sender": "shop", "content": "heck of a deal"},
    ]
    event = {"httpMethod": "POST", "path": "/publish", "resource": "/publish", "headers": {}, "isBase64Encoded": False,
             "requestContext": {"identity": {"userArn": "arn:aws:iam::123456789012:role/backend"}}, "body": json.dumps({"messages": batch})}
    response = chat.publish(event, None)
    results = json.loads(response["body"])["results"]
    assert response["statusCode"] == 200
    assert "seq" in results[0] and results[1]["error"]["code"] == "denied" and "seq" in results[2]
    seen = [(r["kind"], r["source"], r.get("with"), r.get("channel"), r["sender"], r["content"]) for r in function.requests]
    assert seen[:2] == [("message", "client", "bob", None, "alice", "dm: what a scam"), ("message", "client", "bob", None, "alice", "dm: fine")]
    assert sorted(seen[2:], key=str) == sorted([  # conversations are published side by side
        ("message", "publish", None, CHANNEL, "shop", "your order shipped"),
        ("message", "publish", None, CHANNEL, "shop", "buy spam now"),
        ("message", "publish", "bob", None, "shop", "heck of a deal"),
    ], key=str)
    assert sorted(contents(messages)) == sorted(["dm: fine", "your order shipped", "**** of a deal"])


# --- edits ------------------------------------------------------------------------------------------


def edit(handler: Any, seq: int, content: Any) -> tuple[int, Any]:
    reply = json.loads(send(handler, "editMessage", "alice-1", "alice", channel=CHANNEL, seq=seq, content=content, ref="e")["body"])["reply"]
    return reply["status"], reply.get("body", reply.get("error"))


def test_an_edit_is_reviewed_a_denied_edit_changes_nothing_and_a_rewritten_one_is_stored_rewritten(
    chat: Any, management: Any, messages: Any, function: ReviewFunction
) -> None:
    assert say(chat, "first")[0] == 200
    status, error = edit(chat, 1, "now it is spam")
    assert (status, error["code"]) == (403, "denied")
    assert [(m["seq"], m.get("content")) for m in stored(messages)] == [(1, "first")]  # no change stored, no seq used

    status, body = edit(chat, 1, "darn typo")
    assert status == 200 and body["edited"]["change"] == 2
    assert [(m["seq"], m.get("content")) for m in stored(messages)] == [(1, "**** typo"), (2, "**** typo")]
    assert [(r["kind"], r["content"]) for r in function.requests[1:]] == [("edit", "now it is spam"), ("edit", "darn typo")]


def test_a_delete_is_not_reviewed(chat: Any, management: Any, messages: Any, function: ReviewFunction) -> None:
    assert say(chat, "first")[0] == 200
    reply = json.loads(send(chat, "deleteMessage", "alice-1", "alice", channel=CHANNEL, seq=1, ref="d")["body"])["reply"]
    assert reply["status"] == 200 and len(function.requests) == 1


def test_a_repeat_of_a_stored_send_is_not_reviewed_again(chat: Any, management: Any, messages: Any, function: ReviewFunction) -> None:
    first = say(chat, "once", clientMessageId="c-1")
    function.behaviour = lambda request: (b'{"result": "deny", "reason": "changed its mind"}', False)
    again = say(chat, "once", clientMessageId="c-1")
    assert first[0] == again[0] == 200 and again[1]["sent"]["seq"] == first[1]["sent"]["seq"] == 1
    assert len(function.requests) == 1 and contents(messages) == ["once"]


# --- when the function does not answer well: the fallback -----------------------------------------


def slow(function: ReviewFunction) -> None:
    function.delay = 2.0


def failing(function: ReviewFunction) -> None:
    function.behaviour = lambda request: (b'{"errorMessage": "boom", "errorType": "Exception"}', True)


def unreachable(function: ReviewFunction) -> None:
    function.close()


def answering(text: bytes) -> Any:
    def setup(function: ReviewFunction) -> None:
        function.behaviour = lambda request: (text, False)

    return setup


FAILURES = {
    "timeout": slow,
    "function error": failing,
    "unreachable": unreachable,
    "not JSON": answering(b"allow"),
    "not an object": answering(b'["allow"]'),
    "unknown result": answering(b'{"result": "maybe"}'),
    "deny without a reason": answering(b'{"result": "deny"}'),
    "deny with a blank reason": answering(b'{"result": "deny", "reason": "  "}'),
    "null replacement": answering(b'{"result": "allow", "content": null}'),
    "replacement too large": answering(json.dumps({"result": "allow", "content": "x" * 200_000}).encode()),
    "replacement not finite": answering(b'{"result": "allow", "content": NaN}'),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_fallback_allow_stores_the_message_unreviewed_and_counts_it(
    chat: Any, management: Any, messages: Any, function: ReviewFunction, failure: Any, capsys: Any
) -> None:
    failure(function)
    started = time.monotonic()
    status, body = say(chat, "hello")
    assert time.monotonic() - started < 1.9  # the timeout (1 s) bounds the wait, with no retry
    assert status == 200 and contents(messages) == ["hello"]
    assert metric_values(emitted(capsys)).get("ReviewFallbacks") == 1


@pytest.mark.parametrize("failure", [slow, failing, answering(b'{"result": "maybe"}')], ids=["timeout", "function error", "unknown result"])
def test_fallback_deny_refuses_the_message_and_stores_nothing(
    chat: Any, management: Any, messages: Any, function: ReviewFunction, failure: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    monkeypatch.setattr(review, "REVIEW_FALLBACK", "deny")
    failure(function)
    status, error = say(chat, "hello")
    assert (status, error["code"], error["text"]) == (403, "denied", review.FALLBACK_DENIED)
    assert stored(messages) == [] and management.received("bob-1") == []
    assert metric_values(emitted(capsys)).get("ReviewFallbacks") == 1


def test_a_long_reason_is_cut_and_put_on_one_line(chat: Any, management: Any, function: ReviewFunction) -> None:
    function.behaviour = lambda request: (json.dumps({"result": "deny", "reason": "no\n\nway " + "x" * 500}).encode(), False)
    error = say(chat, "hello")[1]
    assert error["text"].startswith("Not sent: no way xxx") and len(error["text"]) == len("Not sent: ") + review.MAX_REASON_CHARS


def test_the_timeout_is_the_whole_wait(chat: Any, management: Any, function: ReviewFunction, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(review, "REVIEW_TIMEOUT_MS", 200)
    function.delay = 1.0
    started = time.monotonic()
    assert say(chat, "hello")[0] == 200
    assert time.monotonic() - started < 0.9


# --- the example function (chat/example_review.py) ---------------------------------------------------


@pytest.mark.parametrize(("content", "answer"), [
    ("fine words", {"result": "allow"}),
    ("SPAM!", {"result": "deny", "reason": "it contains a word this service does not allow"}),
    ("ｓｐａｍ in fullwidth", {"result": "deny", "reason": "it contains a word this service does not allow"}),
    ({"text": ["nested", "a scam"]}, {"result": "deny", "reason": "it contains a word this service does not allow"}),
    ("spammer and scampi are other words", {"result": "allow"}),
    ("Darn it, HECK", {"result": "allow", "content": "**** it, ****"}),
    ({"title": "heck", "n": 3}, {"result": "allow", "content": {"title": "****", "n": 3}}),
    (42, {"result": "allow"}),
])
def test_the_example_denies_listed_words_and_masks_others_whole_words_only(content: Any, answer: dict[str, Any]) -> None:
    from chat import example_review

    assert example_review.decide({"content": content}) == answer
