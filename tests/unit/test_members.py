"""Membership kept right when things happen out of order: a connection leaves its channels (and
the user's presence) even when its row is already gone or its presence item is missing, a
membership lives no longer than its connection could, and a join or leave that another writer
interferes with is tried again a bounded number of times (moto never interferes: the tests
below make DynamoDB's cancellations themselves)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from chat import connections, members, presence
from tests.support.events import action_body, message_event
from tests.support.helpers import interfering_transactions, stale_reads
from tests.support.actions import send


def frame(handler: Any, route: str, connection_id: str, user: str, **fields: Any) -> dict[str, Any]:
    return send(handler, route, connection_id, user, **fields)


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

    departures = members.remove_memberships([row])

    # the last one: a leave is pending
    assert departures == [members.Departure("lobby", "alice", "a1", presence.LAST, int(frozen_clock[0] * 1000))]
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


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds members waits between tries, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr(members.time, "sleep", slept.append)
    return slept


def alice_online_then_interfered(connect: Any, monkeypatch: pytest.MonkeyPatch, times: int) -> list[list[dict[str, Any]]]:
    """alice in the lobby on a1, with a2 yet to join, whose next `times` transactions conflict."""
    connect("a1", "a2", user="alice")
    assert members.join("lobby", "a1", "alice") == presence.ENTER
    return interfering_transactions(members.table().meta.client, monkeypatch, times=times)


def test_a_join_that_conflicts_with_another_transaction_is_tried_again_after_a_short_wait(
    handler: Any, connect: Any, tables: dict[str, Any], monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> None:
    calls = alice_online_then_interfered(connect, monkeypatch, times=2)

    assert members.join("lobby", "a2", "alice") == presence.MORE

    assert len(calls) == 3 and calls[0] == calls[2]  # the same transaction, the third time through
    assert waits == [0.01, 0.02]  # backing off, doubling
    assert members.is_member("lobby", "a2", "alice") and online(tables, "alice") == 2


def test_a_join_that_keeps_conflicting_fails_after_three_tries(
    handler: Any, connect: Any, tables: dict[str, Any], monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> None:
    calls = alice_online_then_interfered(connect, monkeypatch, times=3)

    with pytest.raises(ClientError) as raised:
        members.join("lobby", "a2", "alice")

    assert raised.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert len(calls) == 3 and waits == [0.01, 0.02]  # no wait after the last try


def test_a_join_refused_for_another_reason_is_not_tried_again(
    handler: Any, connect: Any, monkeypatch: pytest.MonkeyPatch, aws_failure: Any, waits: list[float]
) -> None:
    connect("a1", user="alice")
    throttled = ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "TransactWriteItems")
    aws_failure(members.table().meta.client, "TransactWriteItems", throttled)

    with pytest.raises(ClientError) as raised:
        members.join("lobby", "a1", "alice")

    assert raised.value is throttled and waits == []


def test_a_join_whose_presence_keeps_changing_gives_up_with_presence_contention(
    handler: Any, connect: Any, tables: dict[str, Any], monkeypatch: pytest.MonkeyPatch, waits: list[float]
) -> None:
    connect("a1", user="alice")
    # Another connection of alice's changes her presence item (the transaction's third) each time.
    calls = interfering_transactions(members.table().meta.client, monkeypatch, times=100, reason="ConditionalCheckFailed", at=2)

    with pytest.raises(ClientError) as raised:
        members.join("lobby", "a1", "alice")

    assert raised.value.response["Error"] == {"Code": "PresenceContention", "Message": "presence of alice in lobby kept changing"}
    assert raised.value.operation_name == "Join"
    tried = [call[2].get("Update", call[2].get("Put", {})).get("ConditionExpression") for call in calls]
    assert tried == ["connections >= :one", "connections = :zero", "attribute_not_exists(#user)"] * 3  # each way, three times
    assert waits == [] and not members.is_member("lobby", "a1", "alice")


def test_a_leave_whose_presence_keeps_changing_still_takes_the_member_out(
    handler: Any, connect: Any, tables: dict[str, Any], monkeypatch: pytest.MonkeyPatch, frozen_clock: list[float]
) -> None:
    connect("a1", user="alice")
    assert members.join("lobby", "a1", "alice") == presence.ENTER
    calls = interfering_transactions(members.table().meta.client, monkeypatch, times=100, reason="ConditionalCheckFailed", at=2)

    assert members.leave("lobby", "a1", "alice") == ("none", int(frozen_clock[0] * 1000))

    assert len(calls) == 6  # both ways, three times, then the member alone
    assert not members.is_member("lobby", "a1", "alice") and list(members.member_ids("lobby")) == []


def test_a_join_is_seen_at_once_by_the_next_send_though_reads_may_lag(
    handler: Any, connect: Any, management: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect("a1", user="alice")
    connect("b1", user="bob")
    for connection_id, user in (("a1", "alice"), ("b1", "bob")):
        assert frame(handler, "join", connection_id, user, channel="lobby")["statusCode"] == 200
    stale_reads(members.table().meta.client, monkeypatch)  # the joins were just acknowledged

    sent = handler.send_message(message_event("a1", action_body("sendMessage", channel="lobby", content="hi"), "sendMessage", "alice"), None)

    assert sent["statusCode"] == 200, sent["body"]  # alice is a member: her join is read back
    assert [m["content"] for frame_ in management.received("b1") for m in frame_["messages"]] == ["hi"]  # bob is among the members
