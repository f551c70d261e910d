"""Membership kept right when things happen out of order: a connection leaves its channels (and
the user's presence) even when its row is already gone or its presence item is missing, and a
membership lives no longer than its connection could."""

from __future__ import annotations

from typing import Any

from chat import connections, members, presence
from tests.events import action_body, message_event


def frame(handler: Any, route: str, connection_id: str, user: str, **fields: Any) -> dict[str, Any]:
    entry_point = {"join": handler.join, "leave": handler.leave}[route]
    return entry_point(message_event(connection_id, action_body(route, **fields), route, user), None)


def online(tables: dict[str, Any], user: str, channel: str = "lobby") -> int | None:
    """The user's count of connections in the channel's presence, None when not present."""
    item = tables["PresenceTable"].get_item(Key={"channel": channel, "user": user}).get("Item")
    return None if item is None else int(item["connections"])


def test_closing_a_connection_whose_row_is_already_gone_still_takes_it_out_of_its_channels(
    handler: Any, connect: Any, tables: dict[str, Any], frozen_clock: list[float]
) -> None:
    connect("a1", user="alice")
    assert frame(handler, "join", "a1", "alice", channel="lobby")["statusCode"] == 200
    row = connections.row("a1")
    connections.delete("a1")  # a $disconnect and the sweeper clean up the same connection at once

    pending = members.remove_memberships([row])

    assert pending == [("lobby", "alice", int(frozen_clock[0] * 1000))]  # the last one: a leave is pending
    assert not members.is_member("lobby", "a1", "alice") and online(tables, "alice") == 0


def test_leaving_from_a_connection_whose_row_was_pruned_still_leaves(handler: Any, connect: Any, tables: dict[str, Any]) -> None:
    connect("a1", user="alice")
    assert frame(handler, "join", "a1", "alice", channel="lobby")["statusCode"] == 200
    connections.delete("a1")

    assert frame(handler, "leave", "a1", "alice", channel="lobby")["statusCode"] == 200

    assert not members.is_member("lobby", "a1", "alice") and online(tables, "alice") == 0


def test_a_member_with_no_presence_item_still_leaves(handler: Any, connect: Any, tables: dict[str, Any]) -> None:
    connect("a1", user="alice")
    assert frame(handler, "join", "a1", "alice", channel="lobby")["statusCode"] == 200
    tables["PresenceTable"].delete_item(Key={"channel": "lobby", "user": "alice"})  # written before presence existed

    assert frame(handler, "leave", "a1", "alice", channel="lobby")["statusCode"] == 200

    assert not members.is_member("lobby", "a1", "alice")
    assert list(members.member_ids("lobby")) == []


def test_a_users_second_connection_joins_as_more_of_the_same_user(handler: Any, connect: Any, tables: dict[str, Any]) -> None:
    connect("a1", "a2", user="alice")

    assert members.join("lobby", "a1", "alice") == presence.ENTER
    assert members.join("lobby", "a2", "alice") == presence.MORE
    assert members.join("lobby", "a2", "alice") == "already"

    assert sorted(members.member_ids("lobby")) == ["a1", "a2"] and online(tables, "alice") == 2


def test_a_membership_expires_with_its_connection(handler: Any, connect: Any, tables: dict[str, Any], frozen_clock: list[float]) -> None:
    connect("a1", user="alice")  # connected at the frozen clock's time (tests/events.py)
    assert frame(handler, "join", "a1", "alice", channel="lobby")["statusCode"] == 200

    (member,) = tables["MembersTable"].scan()["Items"]
    row = tables["ConnectionsTable"].get_item(Key={"connection_id": "a1"})["Item"]
    # DynamoDB's TTL forgets both when API Gateway has closed the connection, if nothing else did.
    assert member["ttl"] == row["ttl"] and int(member["ttl"]) - int(row["connected_at"]) == connections.CONNECTION_LIFETIME_SECONDS
