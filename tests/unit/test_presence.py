"""Presence: who is online in a channel, one entry per user however many connections; enter when
a user's first connection joins, leave when the last one is gone (after a 15 s grace in which a
reconnect produces neither), by every way a connection ends; events stop above a size."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import channels, conversations, history, jobs, members, presence
from tests.support.events import action_body, disconnect_event, message_event
from tests.support.helpers import interfering_transactions, stale_reads
from tests.support.actions import send


def frame(handler: Any, route: str, connection_id: str, user: str | None, **fields: Any) -> dict[str, Any]:
    return send(handler, route, connection_id, user, **fields)


def joined(handler: Any, connection_id: str, user: str, channel: str = "lobby") -> None:
    assert frame(handler, "join", connection_id, user, channel=channel)["statusCode"] == 200


def who(handler: Any, connection_id: str, user: str, channel: str = "lobby", **fields: Any) -> dict[str, Any]:
    response = frame(handler, "getPresence", connection_id, user, channel=channel, **fields)
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])["presence"]


def events(management: Any, connection_id: str, workers: Any) -> list[tuple[str, str]]:
    """The presence events a connection got: they go through the delivery workers (paced)."""
    workers.drain()
    return [(f["presenceChange"]["user"], f["presenceChange"]["state"]) for f in management.received(connection_id)
            if isinstance(f, dict) and "presenceChange" in f]


@pytest.fixture
def watcher(handler: Any, connect: Any) -> str:
    """carol, in the channel first: she hears everyone else's enter and leave."""
    connect("carol-1", user="carol")
    joined(handler, "carol-1", "carol")
    return "carol-1"


def test_one_user_on_three_connections_is_one_entry_one_enter_and_one_leave(
    handler: Any, management: Any, connect: Any, workers: Any, watcher: str
) -> None:
    connect("alice-1", "alice-2", "alice-3", user="alice")
    for connection_id in ("alice-1", "alice-2", "alice-3"):
        joined(handler, connection_id, "alice")

    assert who(handler, "carol-1", "carol") == {
        "channel": "lobby", "members": [{"user": "alice", "connections": 3}, {"user": "carol", "connections": 1}],
        "count": 2, "after": None,
    }
    assert events(management, watcher, workers) == [("carol", "enter"), ("alice", "enter")]

    frame(handler, "leave", "alice-1", "alice", channel="lobby")
    handler.connection_manager(disconnect_event("alice-2"), None)
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()
    assert events(management, watcher, workers) == [("carol", "enter"), ("alice", "enter")]  # one left: no event
    assert who(handler, "carol-1", "carol")["members"][0] == {"user": "alice", "connections": 1}

    handler.connection_manager(disconnect_event("alice-3"), None)  # the last one
    assert events(management, watcher, workers)[-1] == ("alice", "enter")  # not before the grace
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()

    assert events(management, watcher, workers) == [("carol", "enter"), ("alice", "enter"), ("alice", "leave")]
    assert who(handler, "carol-1", "carol") == {"channel": "lobby", "members": [{"user": "carol", "connections": 1}], "count": 1, "after": None}


def test_back_within_the_grace_is_neither_a_leave_nor_an_enter(
    handler: Any, management: Any, connect: Any, workers: Any, watcher: str
) -> None:
    connect("bob-1", user="bob")
    joined(handler, "bob-1", "bob")
    handler.connection_manager(disconnect_event("bob-1"), None)  # the phone drops
    workers.advance(presence.LEAVE_GRACE_SECONDS - 5)
    workers.drain()  # the check is not due yet
    connect("bob-2", user="bob")
    joined(handler, "bob-2", "bob")  # back, on a new connection, within the grace
    workers.advance(10)
    workers.drain()

    assert events(management, watcher, workers) == [("carol", "enter"), ("bob", "enter")]
    assert {"user": "bob", "connections": 1} in who(handler, "carol-1", "carol")["members"]


def test_back_after_the_leave_was_announced_is_an_enter_again(
    handler: Any, management: Any, connect: Any, workers: Any, watcher: str
) -> None:
    connect("bob-1", "bob-2", user="bob")
    joined(handler, "bob-1", "bob")
    frame(handler, "leave", "bob-1", "bob", channel="lobby")
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()
    joined(handler, "bob-2", "bob")

    assert events(management, watcher, workers)[1:] == [("bob", "enter"), ("bob", "leave"), ("bob", "enter")]
    assert who(handler, "carol-1", "carol")["count"] == 2


def test_a_leave_check_made_moot_by_a_return_is_done_with_quietly(
    handler: Any, management: Any, connect: Any, workers: Any, queues: dict[str, str], watcher: str
) -> None:
    connect("bob-1", "bob-2", user="bob")
    joined(handler, "bob-1", "bob")
    handler.connection_manager(disconnect_event("bob-1"), None)
    joined(handler, "bob-2", "bob")  # back within the grace: the check finds him there
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)

    workers.drain()

    assert [invocation["batchItemFailures"] for invocation in workers.invocations] == [[]]  # done, not failed
    assert workers.count(queues["DeliveryQueue"]) == 0 and workers.count(queues["DeliveryDeadLetterQueue"]) == 0
    assert events(management, watcher, workers) == [("carol", "enter"), ("bob", "enter")]


def test_a_user_in_the_grace_is_still_listed_with_no_connections(
    handler: Any, management: Any, connect: Any, workers: Any, watcher: str
) -> None:
    connect("bob-1", user="bob")
    joined(handler, "bob-1", "bob")
    handler.connection_manager(disconnect_event("bob-1"), None)

    assert who(handler, "carol-1", "carol")["members"][0] == {"user": "bob", "connections": 0}  # no leave announced yet


def test_a_connection_found_gone_leaves_its_channels_with_a_leave(
    handler: Any, management: Any, connect: Any, workers: Any, watcher: str, clock: list[float]
) -> None:
    connect("dave-1", user="dave")
    joined(handler, "dave-1", "dave")
    management.answer("dave-1", 410)  # gone, and no $disconnect came
    clock[0] += 60  # older than the handshake window

    assert frame(handler, "sendMessage", "carol-1", "carol", channel="lobby", content="anyone?")["statusCode"] == 200
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()

    assert events(management, watcher, workers)[-1] == ("dave", "leave")
    assert [m["user"] for m in who(handler, "carol-1", "carol")["members"]] == ["carol"]


@pytest.mark.parametrize("page_users", [2, 3])
def test_presence_is_sorted_by_user_and_paged(
    handler: Any, management: Any, connect: Any, monkeypatch: pytest.MonkeyPatch, page_users: int
) -> None:
    names = ["zoe", "ann", "김철수", "Bob", "mia"]
    for n, name in enumerate(names):
        connect(f"c{n}", user=name)
        joined(handler, f"c{n}", name)
    monkeypatch.setattr(presence, "PAGE_USERS", page_users)

    pages, after = [], None
    while True:
        page = who(handler, "c0", "zoe", **({"after": after} if after else {}))
        pages.append([m["user"] for m in page["members"]])
        assert page["count"] == 5
        after = page["after"]
        if after is None:
            break

    assert [user for page in pages for user in page] == sorted(names)
    assert all(len(page) <= page_users for page in pages)


def test_events_stop_above_the_size_but_presence_still_answers(
    handler: Any, management: Any, connect: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(channels, "PRESENCE_EVENTS_MAX_USERS", 2)
    for n in range(4):
        connect(f"u{n}", user=f"user{n}")
        joined(handler, f"u{n}", f"user{n}")

    assert events(management, "u0", workers) == [("user0", "enter"), ("user1", "enter")]  # then 3 > 2: silence
    assert who(handler, "u0", "user0")["count"] == 4


def test_presence_follows_the_channels_claim_and_needs_a_signed_in_connection(handler: Any, management: Any, connect: Any) -> None:
    event = message_event("x", action_body("getPresence", channel="secret"), "getPresence", "alice")
    event["requestContext"]["authorizer"]["channels"] = json.dumps(["public"])

    assert handler.get_presence(event, None) == {"statusCode": 403, "body": 'Your token does not allow channel "secret".'}
    anonymous = handler.get_presence(message_event("y", action_body("getPresence", channel="lobby"), "getPresence"), None)
    assert anonymous["statusCode"] == 403


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({}, '"channel" must be a channel name'), ({"channel": "a b"}, '"channel" must be a channel name'),
     ({"channel": "ok", "after": 7}, '"after" must be the "after" of an earlier getPresence reply')],
    ids=["no-channel", "bad-channel", "bad-after"],
)
def test_bad_presence_requests_are_refused(handler: Any, fields: dict[str, Any], reason: str) -> None:
    response = frame(handler, "getPresence", "c", "alice", **fields)

    assert response["statusCode"] == 400 and reason in response["body"]


def test_a_malformed_leave_check_goes_to_the_dead_letter_queue(handler: Any, workers: Any) -> None:
    workers.send_raw(json.dumps({"v": 1, "kind": "presence-leave", "channel": "lobby", "user": "x"}))  # no left_at, no endpoint
    for _ in range(6):
        workers.drain()
        workers.advance(400)

    assert workers.count(workers.dead_letters) == 1


VALID_CHECK = {"v": 1, "kind": "presence-leave", "channel": "lobby", "user": "bob", "left_at": 1_764_000_000_000,
               "endpoint": "https://abc123.execute-api.us-east-1.amazonaws.com/dev"}


def test_a_well_formed_leave_check_is_read_back_as_it_was_queued() -> None:
    check = jobs.parse(json.dumps(VALID_CHECK))

    assert check == jobs.LeaveCheck("lobby", "bob", 1_764_000_000_000, VALID_CHECK["endpoint"])
    assert json.loads(check.to_body()) == VALID_CHECK


@pytest.mark.parametrize(
    "change",
    [{"v": 2}, {"extra": 1}, {"endpoint": "ftp://abc123.example.com"}, {"endpoint": None}, {"channel": "no spaces"},
     {"channel": 7}, {"user": ""}, {"user": "x" * 129}, {"user": 7}, {"left_at": 0}, {"left_at": True}, {"left_at": "1"}],
    ids=["version", "extra-field", "endpoint-scheme", "no-endpoint", "bad-channel", "channel-not-text", "empty-user",
         "long-user", "user-not-text", "left-at-zero", "left-at-bool", "left-at-text"],
)
def test_a_malformed_leave_check_is_refused_whatever_else_is_right(change: dict[str, Any]) -> None:
    # The queue is the service's own, but a poisoned check must not post presence events
    # anywhere (its endpoint is where they would go) nor end anyone's presence.
    with pytest.raises(ValueError):
        jobs.parse(json.dumps({**VALID_CHECK, **change}))


@pytest.mark.parametrize(
    "change",
    [{"user": "x"}, {"user": "x" * 128}, {"left_at": 1}, {"endpoint": "http://localhost:3001"}],
    ids=["one-letter-user", "longest-user", "first-millisecond", "offline-endpoint"],
)
def test_a_leave_check_at_the_edges_of_well_formed_is_read_back(change: dict[str, Any]) -> None:
    # User ids are 1 to 128 characters (chat/users.py); `make offline` posts to localhost.
    assert jobs.parse(json.dumps({**VALID_CHECK, **change})) == jobs.LeaveCheck(**{
        "channel": "lobby", "user": "bob", "left_at": 1_764_000_000_000, "endpoint": VALID_CHECK["endpoint"], **change})


def test_a_leave_check_missing_a_field_is_refused() -> None:
    with pytest.raises(ValueError):
        jobs.parse(json.dumps({name: value for name, value in VALID_CHECK.items() if name != "left_at"}))


def test_a_presence_event_is_stamped_with_the_time_it_happened(
    handler: Any, management: Any, connect: Any, workers: Any, frozen_clock: list[float]
) -> None:
    """The stamp is the sent_at_ms of its delivery jobs, from which the workers' DeliveryLag is measured."""
    frozen_clock[0] = 1_764_000_123.456
    connect("dave-1", user="dave")

    joined(handler, "dave-1", "dave")

    (job,) = workers.pending_jobs()
    assert json.loads(job.payload)["presenceChange"] == {"channel": "lobby", "user": "dave", "state": "enter"}
    assert job.sent_at_ms == 1_764_000_123_456


def test_presence_of_a_channel_nobody_joined_is_empty(handler: Any, connect: Any) -> None:
    connect("a1", user="alice")

    assert who(handler, "a1", "alice", channel="empty") == {"channel": "empty", "members": [], "count": 0, "after": None}


def test_a_join_is_in_presence_at_once_though_reads_may_lag(handler: Any, connect: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    connect("a1", user="alice")
    joined(handler, "a1", "alice")
    for table in (presence.table(), conversations.table()):  # the members, and their count
        stale_reads(table.meta.client, monkeypatch)

    page = who(handler, "a1", "alice")
    assert (page["members"], page["count"]) == ([{"user": "alice", "connections": 1}], 1)


def test_a_join_racing_the_users_first_join_counts_both_connections_and_the_user_once(
    handler: Any, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect("a1", "a2", user="alice")
    joined(handler, "a1", "alice")
    # a2 read alice as absent (its "more" and "back" failed) just before a1's enter was written.
    interfering_transactions(members.table().meta.client, monkeypatch, times=2, reason="ConditionalCheckFailed", at=2)

    assert members.join("lobby", "a2", "alice") == presence.MORE  # its enter fails too: a2 is one more

    assert who(handler, "a1", "alice")["members"] == [{"user": "alice", "connections": 2}]
    assert who(handler, "a1", "alice")["count"] == 1
