"""Edits and deletes (issue 29): only the sender edits; the sender or a moderator of the
conversation deletes (a DM only its sender); the message keeps its seq and shows its current
state; each change takes the next seq, goes to the same audience live and comes back with
`after`; a deleted message's content is gone from storage, its edits' too."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import changes, history
from tests.support.actions import history as read_history
from tests.support.actions import send
from tests.support.helpers import apply_changes

CHANNEL = "general"


@pytest.fixture
def chat(connect: Any, handler: Any) -> Any:
    """alice, bob and mod on connections of their own, all in the channel."""
    for user in ("alice", "bob", "mod"):
        connect(f"{user}-1", user=user)
        assert send(handler, "join", f"{user}-1", user, channel=CHANNEL)["statusCode"] == 200
    return handler


def post(handler: Any, user: str, content: Any, **where: Any) -> int:
    """A message from `user` to the channel (or, with `to`, a DM): its seq."""
    if "to" in where:
        reply = send(handler, "sendDirectMessage", f"{user}-1", user, content=content, clientMessageId=f"c-{abs(hash(content))}", **where)
    else:
        reply = send(handler, "sendMessage", f"{user}-1", user, content=content, channel=CHANNEL)
    assert reply["statusCode"] == 200, reply
    return int(json.loads(reply["body"])["sent"]["seq"])


def change(handler: Any, route: str, user: str | None, **fields: Any) -> tuple[int, Any]:
    """An edit or a delete sent with a `ref`: the reply's status, and its body or its error."""
    moderates = fields.pop("moderates", None)
    reply = json.loads(send(handler, route, f"{user}-1", user, moderates=moderates, ref="r1", **fields)["body"])["reply"]
    return reply["status"], reply.get("body", {"error": reply.get("error")})


def code_of(body: Any) -> str:
    return str(body["error"]["code"]) if isinstance(body, dict) and "error" in body else repr(body)


def stored_items(messages: Any) -> list[dict[str, Any]]:
    return messages.scan(ConsistentRead=True)["Items"]


# --- edit ------------------------------------------------------------------------------------------


def test_the_sender_edits_and_the_change_takes_the_next_seq(chat: Any, management: Any, messages: Any) -> None:
    seq = post(chat, "alice", "helo")

    status, body = change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content="hello")

    assert status == 200
    assert body == {"edited": {"channel": CHANNEL, "seq": seq, "change": seq + 1, "duplicate": False, "delivery": "complete"}}
    (shown,) = [m for m in read_history(chat, "bob", channel=CHANNEL)["messages"] if m["seq"] == seq]
    assert shown["content"] == "hello" and "editedAt" in shown
    live = [m for frame in management.received("bob-1") for m in frame["messages"]]
    assert live[-1] == {**live[-1], "seq": seq + 1, "action": "edit", "target": seq, "content": "hello", "sender": "alice"}


@pytest.mark.parametrize("editor, moderates", [("bob", None), ("mod", ["*"])])
def test_nobody_but_the_sender_edits_not_even_a_moderator(chat: Any, editor: str, moderates: Any, messages: Any) -> None:
    seq = post(chat, "alice", "mine")

    status, body = change(chat, "editMessage", editor, channel=CHANNEL, seq=seq, content="theirs", moderates=moderates)

    assert (status, code_of(body)) == (403, "forbidden")
    assert [json.loads(i["content_json"]) for i in stored_items(messages)] == ["mine"]  # no change stored, no seq taken


def test_a_message_is_edited_at_most_ten_times(chat: Any) -> None:
    seq = post(chat, "alice", "v0")
    for n in range(changes.MAX_EDITS):
        assert change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content=f"v{n + 1}")[0] == 200

    status, body = change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content="one more")

    assert (status, code_of(body)) == (400, "bad_request")


# --- delete ----------------------------------------------------------------------------------------


def test_a_deleted_messages_content_is_gone_from_storage_its_edits_too(chat: Any, messages: Any) -> None:
    seq = post(chat, "alice", "secret one")
    change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content="secret two")
    change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content="secret three")

    status, body = change(chat, "deleteMessage", "alice", channel=CHANNEL, seq=seq, reason="oops")

    assert status == 200 and body["deleted"]["seq"] == seq and body["deleted"]["change"] == seq + 3
    assert "secret" not in json.dumps([dict(i) for i in stored_items(messages)], default=str)
    (shown,) = [m for m in read_history(chat, "bob", channel=CHANNEL)["messages"] if m["seq"] == seq]
    assert shown["deleted"] is True and shown["deletedBy"] == "alice" and "content" not in shown
    last = read_history(chat, "bob", channel=CHANNEL)["messages"][-1]
    assert {k: last[k] for k in ("seq", "action", "target", "reason")} == {"seq": seq + 3, "action": "delete", "target": seq, "reason": "oops"}
    assert "content" not in last


@pytest.mark.parametrize(
    "moderates, allowed",
    [(["*"], True), (["gen*"], True), (["general"], True), (["random"], False), (["gene"], False), ([], False), (None, False)],
)
def test_a_moderator_deletes_within_their_patterns_only(chat: Any, moderates: Any, allowed: bool) -> None:
    seq = post(chat, "alice", "spam")

    status, body = change(chat, "deleteMessage", "mod", channel=CHANNEL, seq=seq, moderates=moderates)

    assert (status == 200) is allowed, body
    assert allowed or code_of(body) == "forbidden"


def test_in_the_room_only_a_moderator_of_star_deletes_anothers_message(chat: Any) -> None:
    reply = send(chat, "sendMessage", "alice-1", "alice", content="room spam", clientMessageId="r1")
    seq = json.loads(reply["body"])["sent"]["seq"]

    assert code_of(change(chat, "deleteMessage", "mod", seq=seq, moderates=["gen*"])[1]) == "forbidden"
    status, body = change(chat, "deleteMessage", "mod", seq=seq, moderates=["*"])
    assert status == 200 and body["deleted"]["room"] is True


def test_a_direct_message_is_deleted_only_by_its_sender(chat: Any) -> None:
    seq = post(chat, "alice", "hi bob", to="bob")

    assert code_of(change(chat, "deleteMessage", "bob", **{"with": "alice"}, seq=seq, moderates=["*"])[1]) == "forbidden"
    status, body = change(chat, "deleteMessage", "alice", **{"with": "bob"}, seq=seq)
    assert status == 200 and body["deleted"]["with"] == "bob"


def test_what_cannot_be_changed_is_refused_with_its_code_and_nothing_is_stored(chat: Any, messages: Any) -> None:
    seq = post(chat, "alice", "x")
    change(chat, "deleteMessage", "alice", channel=CHANNEL, seq=seq)
    before = len(stored_items(messages))

    cases = [
        ({"channel": CHANNEL, "seq": seq, "content": "again"}, "editMessage", "not_found"),  # deleted
        ({"channel": CHANNEL, "seq": seq}, "deleteMessage", "not_found"),
        ({"channel": CHANNEL, "seq": 99}, "deleteMessage", "not_found"),
        ({"channel": CHANNEL, "seq": seq + 1}, "deleteMessage", "bad_request"),  # a change itself
        ({"channel": CHANNEL}, "deleteMessage", "bad_request"),
        ({"channel": CHANNEL, "seq": 0}, "deleteMessage", "bad_request"),
        ({"channel": CHANNEL, "seq": True}, "deleteMessage", "bad_request"),
        ({"channel": CHANNEL, "seq": 2**63}, "deleteMessage", "bad_request"),
        ({"channel": CHANNEL, "seq": seq, "reason": "r" * 501}, "deleteMessage", "bad_request"),
        ({"channel": CHANNEL, "with": "bob", "seq": seq}, "deleteMessage", "bad_request"),
        ({"channel": CHANNEL, "seq": seq}, "editMessage", "bad_request"),  # no content
    ]
    for fields, route, code in cases:
        assert code_of(change(chat, route, "alice", **fields)[1]) == code, (route, fields)
    assert len(stored_items(messages)) == before


def test_an_anonymous_connection_changes_nothing(chat: Any, connect: Any) -> None:
    seq = post(chat, "alice", "x")
    reply = json.loads(send(chat, "deleteMessage", "anon-1", None, channel=CHANNEL, seq=seq, ref="r1")["body"])["reply"]
    assert (reply["status"], reply["error"]["code"]) == (403, "forbidden")


def test_a_change_sent_again_with_its_client_message_id_is_the_same_change(chat: Any, messages: Any) -> None:
    seq = post(chat, "alice", "x")
    first = change(chat, "deleteMessage", "alice", channel=CHANNEL, seq=seq, clientMessageId="del-1")
    again = change(chat, "deleteMessage", "alice", channel=CHANNEL, seq=seq, clientMessageId="del-1")

    assert first[0] == again[0] == 200
    assert again[1]["deleted"] == {**first[1]["deleted"], "duplicate": True}
    assert len(stored_items(messages)) == 2


def test_a_delete_that_loses_a_race_with_an_edit_stores_nothing(chat: Any, messages: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The edit lands between the delete's read of the message and its transaction: the delete's
    guard (the edits it read) fails, nothing is stored, and the client is told to send again."""
    seq = post(chat, "alice", "v1")
    real = history.append

    def edit_first(*args: Any, **kwargs: Any) -> Any:
        monkeypatch.setattr(history, "append", real)
        assert change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content="v2 secret")[0] == 200
        return real(*args, **kwargs)

    monkeypatch.setattr(history, "append", edit_first)
    status, body = change(chat, "deleteMessage", "alice", channel=CHANNEL, seq=seq)

    assert (status, code_of(body)) == (429, "conversation_busy")
    assert change(chat, "deleteMessage", "alice", channel=CHANNEL, seq=seq)[0] == 200  # sent again: done
    assert "secret" not in json.dumps([dict(i) for i in stored_items(messages)], default=str)


# --- recovery --------------------------------------------------------------------------------------


def test_a_client_that_was_away_while_an_edited_message_was_deleted_recovers_no_content(chat: Any) -> None:
    seq = post(chat, "alice", "first words")
    change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content="second words")
    change(chat, "deleteMessage", "alice", channel=CHANNEL, seq=seq)

    recovered = read_history(chat, "bob", channel=CHANNEL, after=0)["messages"]

    assert [(m["seq"], m.get("action"), m.get("deleted")) for m in recovered] == [
        (seq, None, True), (seq + 1, "edit", True), (seq + 2, "delete", None)]
    assert "words" not in json.dumps(recovered)
    assert apply_changes(recovered) == {seq: None}


def test_a_client_that_was_away_ends_with_the_state_of_one_that_stayed(chat: Any, management: Any) -> None:
    first, second = post(chat, "alice", "one"), post(chat, "alice", "two")
    send(chat, "leave", "bob-1", "bob", channel=CHANNEL)  # bob is away from here on
    change(chat, "editMessage", "alice", channel=CHANNEL, seq=first, content="one, edited")
    change(chat, "deleteMessage", "mod", channel=CHANNEL, seq=second, moderates=[CHANNEL])

    stayed = apply_changes([m for frame in management.received("alice-1") for m in frame["messages"]])
    recovered = read_history(chat, "bob", channel=CHANNEL, after=second)["messages"]
    away = apply_changes([m for frame in management.received("bob-1") for m in frame["messages"]] + recovered)

    assert [c["action"] for c in recovered] == ["edit", "delete"]
    assert away == stayed == {first: "one, edited", second: None}



def test_a_client_message_id_of_another_send_does_not_pass_for_this_change(chat: Any) -> None:
    reply = send(chat, "sendMessage", "alice-1", "alice", content="first", channel=CHANNEL, clientMessageId="same-id")
    seq = json.loads(reply["body"])["sent"]["seq"]

    status, body = change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content="second", clientMessageId="same-id")

    assert (status, code_of(body)) == (400, "bad_request")
    (shown,) = [m for m in read_history(chat, "bob", channel=CHANNEL)["messages"] if m["seq"] == seq]
    assert shown["content"] == "first"


def test_a_delete_by_anyone_else_is_refused_by_the_write_itself(chat: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Even were the check before the write skipped (a repeat's record read just before it ran
    out), the transaction holds who may delete: bob's delete of alice's message stores nothing."""
    seq = post(chat, "alice", "hers")
    monkeypatch.setattr(history, "recorded", lambda *args: True)

    status, body = change(chat, "deleteMessage", "bob", channel=CHANNEL, seq=seq, clientMessageId="old-one")

    assert status != 200
    (shown,) = [m for m in read_history(chat, "alice", channel=CHANNEL)["messages"] if m["seq"] == seq]
    assert shown["content"] == "hers" and "deleted" not in shown


def test_an_edit_that_would_make_the_message_too_large_is_refused(chat: Any) -> None:
    reply = send(chat, "sendMessage", "alice-1", "alice", content="short", channel=CHANNEL, clientMessageId="c" * 64)
    seq = json.loads(reply["body"])["sent"]["seq"]
    fits_a_change = "x" * (128 * 1024 - 500)  # a change of this fits; the message with its long clientMessageId does not

    status, body = change(chat, "editMessage", "alice", channel=CHANNEL, seq=seq, content=fits_a_change)

    assert code_of(body) == "too_large"
