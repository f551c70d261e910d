"""Channels: join and leave, messages to members only, the token's `channels` claim, the cap on
channels per connection, and membership that ends with the connection."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import fanout, members
from tests.support.events import action_body, authorizer_event, disconnect_event, message_event, token
from tests.support.actions import send as send_frame

TEAM_ONLY = ("team-*", "lobby")


def call(handler: Any, route: str, connection_id: str, user: str | None, channels: tuple[str, ...] | None = None, **fields: Any) -> dict[str, Any]:
    """One frame from a connection, as API Gateway hands it over (with the authorizer's claim)."""
    return send_frame(handler, route, connection_id, user, channels=channels, **fields)


def reply(response: dict[str, Any]) -> Any:
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])


def join(handler: Any, connection_id: str, user: str, channel: str, **kwargs: Any) -> dict[str, Any]:
    return reply(call(handler, "join", connection_id, user, channel=channel, **kwargs))["joined"]


def send(handler: Any, connection_id: str, user: str, channel: str, content: Any, **fields: Any) -> dict[str, Any]:
    return reply(call(handler, "sendMessage", connection_id, user, channel=channel, content=content, **fields))["sent"]


def message_frames(management: Any, connection_id: str) -> list[dict[str, Any]]:
    """The {"messages": [...]} frames a connection got (not presence events)."""
    return [frame for frame in management.received(connection_id) if isinstance(frame, dict) and "messages" in frame]


def contents(management: Any, connection_id: str) -> list[tuple[str, int, Any]]:
    return [(m.get("channel"), m["seq"], m["content"]) for frame in message_frames(management, connection_id) for m in frame["messages"]]


def member_items(table: Any, channel: str) -> list[dict[str, Any]]:
    return [item for item in table.scan()["Items"] if item["channel"] == channel]


@pytest.fixture
def members_table(tables: dict[str, Any]) -> Any:
    return tables["MembersTable"]


@pytest.fixture
def people(connect: Any) -> None:
    connect("alice-1", "alice-2", user="alice")
    connect("bob-1", user="bob")
    connect("carol-1", user="carol")


def test_a_join_answers_with_the_channels_latest_seq(handler: Any, management: Any, people: None) -> None:
    assert join(handler, "alice-1", "alice", "general") == {"channel": "general", "seq": 0}
    send(handler, "alice-1", "alice", "general", "one")
    send(handler, "alice-1", "alice", "general", "two")

    assert join(handler, "bob-1", "bob", "general") == {"channel": "general", "seq": 2}


def test_channel_messages_reach_its_members_only_and_name_the_channel(handler: Any, management: Any, people: None) -> None:
    join(handler, "alice-1", "alice", "general")
    join(handler, "bob-1", "bob", "general")
    join(handler, "carol-1", "carol", "random")

    sent = send(handler, "alice-1", "alice", "general", "hi general")

    assert sent == {"channel": "general", "seq": 1, "id": sent["id"], "duplicate": False, "delivery": "complete"}
    assert contents(management, "alice-1") == [("general", 1, "hi general")]
    assert contents(management, "bob-1") == [("general", 1, "hi general")]
    assert contents(management, "carol-1") == [] and contents(management, "alice-2") == []
    (frame,) = message_frames(management, "bob-1")
    assert set(frame["messages"][0]) == {"channel", "seq", "content", "sender", "sent_at", "id"}


def test_two_channels_never_see_each_others_messages_and_count_their_own_seqs(
    handler: Any, management: Any, people: None
) -> None:
    join(handler, "alice-1", "alice", "a")
    join(handler, "bob-1", "bob", "b")
    for n in range(3):
        send(handler, "alice-1", "alice", "a", f"a{n}")
        send(handler, "bob-1", "bob", "b", f"b{n}")

    assert contents(management, "alice-1") == [("a", 1, "a0"), ("a", 2, "a1"), ("a", 3, "a2")]
    assert contents(management, "bob-1") == [("b", 1, "b0"), ("b", 2, "b1"), ("b", 3, "b2")]


def test_the_room_does_not_reach_into_channels_and_keeps_its_own_seq(handler: Any, management: Any, people: None) -> None:
    join(handler, "alice-1", "alice", "general")
    send(handler, "alice-1", "alice", "general", "channel")
    response = handler.send_message(message_event("bob-1", action_body("sendMessage", content="room"), user="bob"), None)

    assert response == {"statusCode": 200, "body": "Message sent to all connections."}
    assert [m["seq"] for frame in message_frames(management, "carol-1") for m in frame["messages"]] == [1]
    assert [m.get("channel") for frame in message_frames(management, "alice-1") for m in frame["messages"]] == ["general", None]


def test_joining_twice_is_harmless(handler: Any, management: Any, people: None, members_table: Any, table: Any) -> None:
    join(handler, "alice-1", "alice", "general")
    join(handler, "alice-1", "alice", "general")
    send(handler, "alice-1", "alice", "general", "once")

    assert len(member_items(members_table, "general")) == 1
    assert table.get_item(Key={"connection_id": "alice-1"})["Item"]["channels"] == {"general"}
    assert contents(management, "alice-1") == [("general", 1, "once")]


def test_leaving_stops_delivery_and_leaving_again_is_harmless(
    handler: Any, management: Any, people: None, members_table: Any, table: Any
) -> None:
    join(handler, "alice-1", "alice", "general")
    join(handler, "bob-1", "bob", "general")

    assert reply(call(handler, "leave", "bob-1", "bob", channel="general")) == {"left": {"channel": "general"}}
    assert reply(call(handler, "leave", "bob-1", "bob", channel="general")) == {"left": {"channel": "general"}}
    assert reply(call(handler, "leave", "carol-1", "carol", channel="never-joined")) == {"left": {"channel": "never-joined"}}
    send(handler, "alice-1", "alice", "general", "bob left")

    assert contents(management, "bob-1") == []
    assert [item["user_id"] for item in member_items(members_table, "general")] == ["alice"]
    assert "channels" not in table.get_item(Key={"connection_id": "bob-1"})["Item"]
    assert "channels" not in table.get_item(Key={"connection_id": "carol-1"})["Item"]


def test_a_non_member_cannot_send_to_a_channel(handler: Any, management: Any, messages: Any, people: None) -> None:
    join(handler, "alice-1", "alice", "general")
    join(handler, "bob-1", "bob", "general")
    posted = dict(management.attempts)  # the joins' presence events

    response = call(handler, "sendMessage", "alice-2", "alice", channel="general", content="from my other tab")

    assert response == {"statusCode": 403, "body": 'Join channel "general" before sending to it: {"action": "join", "channel": "general"}.'}
    assert messages.scan()["Items"] == [] and management.attempts == posted


def test_channels_need_a_signed_in_connection(handler: Any, management: Any, connect: Any) -> None:
    connect("anon-1")
    for route, fields in (("join", {}), ("sendMessage", {"content": "hi"}), ("getRecentMessages", {})):
        response = call(handler, route, "anon-1", None, channel="general", **fields)
        assert response == {"statusCode": 403, "body": "Channels need a signed-in connection: connect with a token."}, route


def test_disconnect_leaves_every_channel(handler: Any, management: Any, people: None, members_table: Any, table: Any) -> None:
    for channel in ("a", "b", "c"):
        join(handler, "bob-1", "bob", channel)
    join(handler, "alice-1", "alice", "a")

    assert handler.connection_manager(disconnect_event("bob-1"), None)["statusCode"] == 200

    assert [item["connection_id"] for item in members_table.scan()["Items"]] == ["alice-1"]
    assert "Item" not in table.get_item(Key={"connection_id": "bob-1"})


def test_a_member_found_gone_leaves_its_channels(handler: Any, management: Any, people: None, members_table: Any, table: Any) -> None:
    join(handler, "alice-1", "alice", "a")
    join(handler, "bob-1", "bob", "a")
    join(handler, "bob-1", "bob", "b")
    management.answer("bob-1", 410)  # gone, and no $disconnect came

    send(handler, "alice-1", "alice", "a", "anyone there?")

    assert [item["connection_id"] for item in members_table.scan()["Items"]] == ["alice-1"]
    assert "Item" not in table.get_item(Key={"connection_id": "bob-1"})


# --- the token's channels claim -------------------------------------------------------------


@pytest.mark.parametrize("channel", ["team-a", "team-", "team-x.y:z", "lobby"])
def test_a_claim_allows_its_names_and_prefixes(handler: Any, management: Any, people: None, channel: str) -> None:
    assert join(handler, "alice-1", "alice", channel, channels=TEAM_ONLY)["channel"] == channel
    assert send(handler, "alice-1", "alice", channel, "hi", channels=TEAM_ONLY)["seq"] == 1
    assert reply(call(handler, "getRecentMessages", "alice-1", "alice", TEAM_ONLY, channel=channel))["history"]["messages"][0]["content"] == "hi"


@pytest.mark.parametrize("channel", ["lobby2", "teams", "team", "general", "lobb"])
def test_a_claim_refuses_everything_else(handler: Any, management: Any, messages: Any, people: None, channel: str) -> None:
    join(handler, "bob-1", "bob", channel)  # no claim: bob may use any channel
    send(handler, "bob-1", "bob", channel, "bob's")
    refused = {"statusCode": 403, "body": f'Your token does not allow channel "{channel}".'}

    assert call(handler, "join", "alice-1", "alice", TEAM_ONLY, channel=channel) == refused
    assert call(handler, "sendMessage", "alice-1", "alice", TEAM_ONLY, channel=channel, content="x") == refused
    assert call(handler, "getRecentMessages", "alice-1", "alice", TEAM_ONLY, channel=channel) == refused
    assert [item["content_json"] for item in messages.scan()["Items"]] == ['"bob\'s"']


def test_an_empty_claim_allows_no_channel_but_the_room_still_works(handler: Any, management: Any, people: None) -> None:
    assert call(handler, "join", "alice-1", "alice", (), channel="any")["statusCode"] == 403
    assert call(handler, "sendMessage", "alice-1", "alice", (), content="room")["statusCode"] == 200


@pytest.mark.parametrize(
    "claim",
    [["team-*", "lobby"], ["*"], []],
    ids=["names-and-prefix", "everything", "nothing"],
)
def test_the_authorizer_passes_a_valid_claim_on_as_json(handler: Any, jwt_secret: str, claim: list[str]) -> None:
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, "alice", channels=claim)), None)

    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert json.loads(policy["context"]["channels"]) == claim


def test_a_token_without_the_claim_passes_none_on(handler: Any, jwt_secret: str) -> None:
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, "alice")), None)

    assert policy["context"]["userId"] == "alice" and set(policy["context"]) == {"userId", "exp"}


@pytest.mark.parametrize(
    "claim",
    ["team-*", [1], ["team *"], ["a#b"], ["*team"], ["x" * 101], ["ok"] * 101, {"team": True}, [None]],
    ids=["string", "number", "space", "hash", "star-first", "too-long", "too-many", "object", "null"],
)
def test_a_malformed_claim_refuses_the_token(handler: Any, jwt_secret: str, claim: Any) -> None:
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, "alice", channels=claim)), None)

    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"


# --- limits and bad input ---------------------------------------------------------------------


def test_a_connection_may_be_in_at_most_100_channels(
    handler: Any, management: Any, people: None, members_table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(members, "MAX_CHANNELS_PER_CONNECTION", 5)  # the rule, checked small
    for n in range(5):
        join(handler, "alice-1", "alice", f"c{n}")

    response = call(handler, "join", "alice-1", "alice", channel="one-more")

    assert response == {"statusCode": 400, "body": "A connection may be in at most 100 channels: leave one first."}
    assert member_items(members_table, "one-more") == []
    assert join(handler, "alice-1", "alice", "c3") == {"channel": "c3", "seq": 0}  # already in: fine
    assert join(handler, "alice-2", "alice", "one-more")["channel"] == "one-more"  # another connection: its own count


def test_the_cap_is_100_by_default() -> None:
    assert members.MAX_CHANNELS_PER_CONNECTION == 100


def test_a_join_from_a_connection_without_a_row_changes_nothing(handler: Any, management: Any, members_table: Any) -> None:
    response = call(handler, "join", "ghost", "alice", channel="general")

    assert response["statusCode"] == 410 and "reconnect" in response["body"]
    assert members_table.scan()["Items"] == []


BAD_CHANNELS = {"empty": "", "too-long": "x" * 101, "space": "a b", "hash": "a#b", "star": "team-*", "slash": "a/b",
                "hangul": "채널", "number": 7, "list": ["general"]}
# "channel": null is the room for sendMessage and getRecentMessages, but no channel to join or leave.
BAD_CHANNEL_CASES = [
    pytest.param(route, name, id=f"{route}-{label}")
    for route in ("join", "leave", "sendMessage", "getRecentMessages")
    for label, name in [*BAD_CHANNELS.items(), *([("null", None)] if route in ("join", "leave") else [])]
]


@pytest.mark.parametrize(("route", "name"), BAD_CHANNEL_CASES)
def test_a_bad_channel_name_is_refused_with_the_rule(
    handler: Any, management: Any, messages: Any, people: None, members_table: Any, route: str, name: Any
) -> None:
    response = call(handler, route, "alice-1", "alice", channel=name, content="x")

    assert response == {"statusCode": 400, "body": '"channel" must be a channel name: 1 to 100 characters: ASCII letters, digits, "-", "_", ".", ":".'}
    assert members_table.scan()["Items"] == [] and messages.scan()["Items"] == []


def test_the_longest_channel_name_is_fine(handler: Any, management: Any, people: None) -> None:
    assert join(handler, "alice-1", "alice", "x" * 100)["channel"] == "x" * 100


def test_a_large_channel_goes_through_the_workers_exactly_once_each(
    handler: Any, management: Any, connect: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "FANOUT_THRESHOLD", 10)
    monkeypatch.setattr(fanout, "DELIVERY_BATCH_SIZE", 7)
    ids = [f"m{n:02d}" for n in range(25)]
    for connection_id in ids:
        connect(connection_id, user=f"user-{connection_id}")  # one user each: at most 5 connections a user
        join(handler, connection_id, f"user-{connection_id}", "big")
    connect("outsider", user="someone")

    posted = dict(management.attempts)  # the joins' presence events
    send(handler, "m00", "user-m00", "big", "to all 25")
    assert management.attempts == posted  # nothing posted by the sender itself
    workers.drain()

    assert all(contents(management, cid) == [("big", 1, "to all 25")] for cid in ids)
    assert contents(management, "outsider") == []


@pytest.mark.parametrize(
    ("route", "example"),
    [("join", '{"action": "join", "channel": "<name>"}'), ("leave", '{"action": "leave", "channel": "<name>"}'),
     ("getPresence", '{"action": "getPresence", "channel": "<name>"}')],
)
def test_a_channel_frame_that_is_not_an_object_is_shown_what_to_send(
    handler: Any, management: Any, people: None, members_table: Any, route: str, example: str
) -> None:
    response = send_frame(handler, route, "alice-1", "alice", body='["lobby"]')

    assert response == {"statusCode": 400, "body": f"Message body must be a JSON object like {example}."}
    assert members_table.scan()["Items"] == []
