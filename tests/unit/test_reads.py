"""Read state (issue 30): markRead keeps the user's read position per conversation on the
server, forward only; the user's other connections hear `read`, a DM's other user a
`readReceipt`; getConversations lists DMs and followed channels on every device with exact
`unread` and, for DMs, whether the other user is `online`."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.actions import send

CHANNEL = "general"


def ask(handler: Any, route: str, cid: str, user: str | None, **fields: Any) -> tuple[int, Any]:
    """A frame sent with a `ref`: the reply's status, and its body or its error."""
    reply = json.loads(send(handler, route, cid, user, ref="r", **fields)["body"])["reply"]
    return reply["status"], reply.get("body", reply.get("error"))


@pytest.fixture
def chat(connect: Any, handler: Any, management: Any) -> Any:
    """alice on a laptop and a phone, bob and carol on one connection each; all in the channel."""
    for cid, user in (("alice-laptop", "alice"), ("alice-phone", "alice"), ("bob-1", "bob"), ("carol-1", "carol")):
        connect(cid, user=user)
        assert ask(handler, "join", cid, user, channel=CHANNEL)[0] == 200
    return handler


def say(handler: Any, cid: str, user: str, content: str, **where: Any) -> int:
    route = "sendDirectMessage" if "to" in where else "sendMessage"
    status, body = ask(handler, route, cid, user, content=content, clientMessageId=f"c{abs(hash((cid, content)))}", **({"channel": CHANNEL} if not where else where))
    assert status == 200, body
    return int(body["sent"]["seq"])


def listed(handler: Any, cid: str, user: str) -> dict[str, dict[str, Any]]:
    status, body = ask(handler, "getConversations", cid, user)
    assert status == 200, body
    return {entry.get("with") or entry.get("channel") or "room": entry for entry in body["conversations"]}


def frames_of(management: Any, cid: str, key: str) -> list[Any]:
    return [frame[key] for frame in management.received(cid) if isinstance(frame, dict) and key in frame]


def test_a_read_position_moves_forward_only_and_never_past_the_latest(chat: Any, management: Any) -> None:
    for n in range(3):
        say(chat, "bob-1", "bob", f"m{n}")
    assert ask(chat, "markRead", "alice-laptop", "alice", channel=CHANNEL, seq=2) == (200, {"read": {"channel": CHANNEL, "seq": 2}})
    assert ask(chat, "markRead", "alice-laptop", "alice", channel=CHANNEL, seq=1) == (200, {"read": {"channel": CHANNEL, "seq": 2}})
    status, error = ask(chat, "markRead", "alice-laptop", "alice", channel=CHANNEL, seq=4)
    assert (status, error["code"]) == (400, "bad_request") and "its latest seq is 3" in error["text"]
    for bad in (0, -1, "2", 1.5, None):
        assert ask(chat, "markRead", "alice-laptop", "alice", channel=CHANNEL, seq=bad)[1]["code"] == "bad_request"
    assert listed(chat, "alice-phone", "alice")[CHANNEL] | {"last": None} == {
        "channel": CHANNEL, "seq": 3, "readSeq": 2, "unread": 1, "last": None}


def test_the_other_devices_hear_the_read_and_nobody_else_does(chat: Any, management: Any) -> None:
    say(chat, "bob-1", "bob", "hello")
    ask(chat, "markRead", "alice-laptop", "alice", channel=CHANNEL, seq=1)
    assert frames_of(management, "alice-phone", "read") == [{"channel": CHANNEL, "seq": 1}]
    assert frames_of(management, "alice-laptop", "read") == []  # it got the reply instead
    assert frames_of(management, "bob-1", "read") == [] and frames_of(management, "bob-1", "readReceipt") == []
    ask(chat, "markRead", "alice-laptop", "alice", channel=CHANNEL, seq=1)  # not moved: nobody told again
    assert len(frames_of(management, "alice-phone", "read")) == 1


def test_a_dm_read_sends_a_receipt_to_the_other_user_only(chat: Any, management: Any) -> None:
    seq = say(chat, "bob-1", "bob", "psst", to="alice")
    assert ask(chat, "markRead", "alice-phone", "alice", **{"with": "bob", "seq": seq})[0] == 200
    assert frames_of(management, "bob-1", "readReceipt") == [{"with": "alice", "seq": seq}]
    assert frames_of(management, "alice-laptop", "read") == [{"with": "bob", "seq": seq}]
    assert frames_of(management, "carol-1", "readReceipt") == []


def test_unread_counts_are_exact_on_every_device_and_ones_own_messages_are_read(chat: Any, management: Any) -> None:
    say(chat, "alice-laptop", "alice", "mine")  # 1: her own
    for n in range(4):
        say(chat, "bob-1", "bob", f"bob {n}")  # 2..5
    say(chat, "bob-1", "bob", "dm 1", to="alice")
    say(chat, "bob-1", "bob", "dm 2", to="alice")
    say(chat, "alice-phone", "alice", "dm 3", to="bob")  # she has read the two before it by answering
    for device in ("alice-laptop", "alice-phone"):
        entries = listed(chat, device, "alice")
        assert (entries[CHANNEL]["seq"], entries[CHANNEL]["readSeq"], entries[CHANNEL]["unread"]) == (5, 1, 4)
        assert (entries["bob"]["seq"], entries["bob"]["readSeq"], entries["bob"]["unread"]) == (3, 3, 0)
    bob = listed(chat, "bob-1", "bob")
    assert (bob["alice"]["unread"], bob[CHANNEL]["unread"]) == (1, 0)  # her DM; in the channel his sends came after hers
    ask(chat, "markRead", "alice-phone", "alice", channel=CHANNEL, seq=5)
    assert listed(chat, "alice-laptop", "alice")[CHANNEL]["unread"] == 0


def test_a_channel_left_on_purpose_is_no_longer_listed_and_one_joined_anywhere_is(chat: Any, connect: Any) -> None:
    connect("alice-tablet", user="alice")
    assert CHANNEL in listed(chat, "alice-tablet", "alice")  # a new device learns which to rejoin
    ask(chat, "leave", "alice-laptop", "alice", channel=CHANNEL)
    assert CHANNEL not in listed(chat, "alice-tablet", "alice")


def test_online_follows_the_other_users_connections(chat: Any, handler: Any) -> None:
    from tests.support.events import disconnect_event

    say(chat, "bob-1", "bob", "hi", to="carol")
    assert listed(chat, "carol-1", "carol")["bob"]["online"] is True
    assert handler.connection_manager(disconnect_event("bob-1"), None)["statusCode"] == 200
    assert listed(chat, "carol-1", "carol")["bob"]["online"] is False
    assert "online" not in listed(chat, "carol-1", "carol")[CHANNEL]


def test_read_positions_need_a_signed_in_connection_and_access(chat: Any, connect: Any) -> None:
    connect("anon-1")
    assert ask(chat, "markRead", "anon-1", None, channel=CHANNEL, seq=1)[1]["code"] == "forbidden"
    reply = json.loads(send(chat, "markRead", "alice-laptop", "alice", channels=["other"], channel=CHANNEL, seq=1, ref="r")["body"])["reply"]
    assert reply["error"]["code"] == "forbidden"  # the token does not allow the channel
    assert ask(chat, "markRead", "alice-laptop", "alice", **{"with": "alice", "seq": 1})[1]["code"] == "bad_request"
    assert ask(chat, "markRead", "alice-laptop", "alice", channel=CHANNEL, **{"with": "bob"}, seq=1)[1]["code"] == "bad_request"
