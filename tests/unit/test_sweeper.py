"""The sweeper reads only what it must act on (the due index, one bucket at a time), finds
connections whose $disconnect never came (GetConnection answers 410) and cleans them up as
$disconnect would, presence leave included; it forgets rows older than API Gateway's 2 hours."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chat import connections, frames, presence, sweeper
from tests.support.events import MANAGEMENT_ENDPOINT, action_body, connect_event, message_event

START = int(time.time()) // 60 * 60


@pytest.fixture
def now(frozen_clock: list[float], monkeypatch: pytest.MonkeyPatch) -> list[float]:
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", MANAGEMENT_ENDPOINT)
    frozen_clock[0] = float(START)
    return frozen_clock


def open_connection(handler: Any, connection_id: str, user: str, expires_at: int | None = None, at: int = START) -> None:
    event = connect_event(connection_id, user, expires_at)
    event["requestContext"]["connectedAt"] = at * 1000
    assert handler.connection_manager(event, None)["statusCode"] == 200


@pytest.fixture
def reads(handler: Any) -> list[tuple[str, int]]:
    """(operation, items returned) of every Query and Scan on the connections table."""
    seen: list[tuple[str, int]] = []
    client = connections.table().meta.client
    for operation in ("Query", "Scan"):
        client.meta.events.register(f"after-call.dynamodb.{operation}", lambda parsed, op=operation, **_: seen.append((op, parsed.get("Count", 0))))
    return seen


def test_a_run_reads_only_the_connections_due(handler: Any, management: Any, now: list[float], reads: list[tuple[str, int]]) -> None:
    for n in range(150):  # tokens valid for hours: nothing to do for a long while
        open_connection(handler, f"calm-{n}", f"user{n}", START + 6 * 3600)
    for n in range(3):
        open_connection(handler, f"due-{n}", f"due{n}", START + 300)
    reads.clear()

    done = sweeper.sweep(START + 301)

    assert done == {"expired": 3}
    assert ("Scan", 0) not in reads and not [op for op, _ in reads if op == "Scan"]
    assert sum(count for _, count in reads) == 3  # the three due rows, not the 150 others
    assert sorted(management.closed) == ["due-0", "due-1", "due-2"]


def test_a_connection_whose_disconnect_was_lost_is_swept_and_its_leave_announced(
    handler: Any, management: Any, workers: Any, table: Any, now: list[float]
) -> None:
    for connection_id, user in (("carol-1", "carol"), ("dave-1", "dave")):
        open_connection(handler, connection_id, user)
        handler.join(message_event(connection_id, action_body("join", channel="lobby"), "join", user), None)
    management.answer("dave-1", 410)  # API Gateway closed it; no $disconnect came
    check_at = START + connections.GHOST_CHECK_SECONDS

    assert sweeper.sweep(check_at) == {"gone": 1, "checked": 1}
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()

    assert management.asked.count("dave-1") == 1
    assert "Item" not in table.get_item(Key={"connection_id": "dave-1"})
    leaves = [f["presenceChange"] for f in management.received("carol-1") if isinstance(f, dict) and "presenceChange" in f]
    assert leaves[-1] == {"channel": "lobby", "user": "dave", "state": "leave"}
    # carol answered: her next look is one ghost check later.
    row = table.get_item(Key={"connection_id": "carol-1"})["Item"]
    assert row["due_bucket"] == connections.due_bucket(START + 2 * connections.GHOST_CHECK_SECONDS)


def test_a_row_past_api_gateways_two_hours_is_forgotten(handler: Any, management: Any, table: Any, now: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connections, "GHOST_CHECK_SECONDS", 0)  # only the 2-hour limit brings it up
    open_connection(handler, "old", "olga")

    assert sweeper.sweep(START + connections.CONNECTION_LIFETIME_SECONDS + 1) == {"too old": 1}
    assert "Item" not in table.get_item(Key={"connection_id": "old"})


def test_a_late_run_makes_up_for_missed_ones(handler: Any, management: Any, now: list[float]) -> None:
    open_connection(handler, "c1", "alice", START + 120)

    done = sweeper.sweep(START + 120 + 5 * connections.SWEEP_BUCKET_SECONDS)  # five runs missed

    assert done == {"expired": 1} and management.closed == ["c1"]


def test_the_sweep_entry_point_logs_what_it_did(handler: Any, management: Any, now: list[float], capsys: Any) -> None:
    open_connection(handler, "c1", "alice", START + 100)
    now[0] = START + 200

    assert handler.sweep({}, None) == {"expired": 1}
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert any(line.get("message") == "Swept 1 connections" and line.get("expired") == 1 for line in lines)


@pytest.mark.parametrize("bucket_seconds", [60, 5])
def test_a_token_with_less_than_the_notice_left_is_noticed_at_connect_and_closed_by_the_sweeper(
    handler: Any, management: Any, workers: Any, now: list[float], monkeypatch: pytest.MonkeyPatch, bucket_seconds: int
) -> None:
    # Its notice was due 80 s before it connected: $connect sends it (through the delivery queue,
    # a moment later), and the row is filed under its expiry, for the sweeper to close it then.
    monkeypatch.setattr(connections, "SWEEP_BUCKET_SECONDS", bucket_seconds)
    open_connection(handler, "short-1", "erin", START + 10)
    workers.advance(5)
    workers.drain()

    noticed = sweeper.sweep(START + 1)
    closed = sweeper.sweep(START + 10 + bucket_seconds)

    assert noticed == {} and [f for f in management.received("short-1") if "tokenExpiring" in f] == [
        {"tokenExpiring": {"at": frames.iso((START + 10) * 1000)}}]
    assert closed == {"expired": 1} and management.closed == ["short-1"]


def presence_changes(management: Any, connection_id: str) -> list[dict[str, Any]]:
    return [f["presenceChange"] for f in management.received(connection_id) if isinstance(f, dict) and "presenceChange" in f]


def join_lobby(handler: Any, connection_id: str, user: str) -> None:
    assert handler.join(message_event(connection_id, action_body("join", channel="lobby"), "join", user), None)["statusCode"] == 200


def test_at_exactly_api_gateways_two_hours_a_connection_is_closed_and_its_leave_announced(
    handler: Any, management: Any, workers: Any, table: Any, now: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "GHOST_CHECK_SECONDS", 0)  # only the 2-hour limit brings it up
    open_connection(handler, "old", "olga")
    open_connection(handler, "carol-1", "carol", at=START + 3600)  # an hour younger: not due yet
    join_lobby(handler, "old", "olga")
    join_lobby(handler, "carol-1", "carol")

    assert sweeper.sweep(START + connections.CONNECTION_LIFETIME_SECONDS) == {"too old": 1}
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()

    assert management.closed == ["old"]  # DeleteConnection, on the API's own endpoint
    assert "Item" not in table.get_item(Key={"connection_id": "old"})
    assert presence_changes(management, "carol-1")[-1] == {"channel": "lobby", "user": "olga", "state": "leave"}
    assert workers.count(workers.dead_letters) == 0


def test_a_connection_found_gone_by_its_expiry_notice_is_cleaned_up_and_its_leave_announced(
    handler: Any, management: Any, workers: Any, table: Any, now: list[float]
) -> None:
    open_connection(handler, "carol-1", "carol")
    open_connection(handler, "erin-1", "erin", START + 300)  # its notice is due at START + 210
    join_lobby(handler, "carol-1", "carol")
    join_lobby(handler, "erin-1", "erin")
    management.answer("erin-1", 410)  # gone, and no $disconnect came

    assert sweeper.sweep(START + 240) == {"gone": 1}  # the SweptGone metric
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()

    assert "Item" not in table.get_item(Key={"connection_id": "erin-1"})
    assert presence_changes(management, "carol-1")[-1] == {"channel": "lobby", "user": "erin", "state": "leave"}
    assert workers.count(workers.dead_letters) == 0


def test_a_run_does_not_read_the_bucket_after_the_current_one(handler: Any, management: Any, now: list[float]) -> None:
    open_connection(handler, "erin-1", "erin", START + 200)  # its notice is due at START + 110: bucket START/60 + 2

    assert sweeper.sweep(START + 60) == {}  # the run of bucket START/60 + 1

    assert management.asked == [] and management.received("erin-1") == []


def lose_the_queued_checks(workers: Any) -> None:
    """Every message waiting in the delivery queue is gone (its retention ran out, or it reached
    the dead-letter queue): the presence leave checks among them never run."""
    import boto3

    boto3.client("sqs").purge_queue(QueueUrl=workers.queue)


def test_a_leave_whose_check_was_lost_is_finished_by_the_sweeper(
    handler: Any, management: Any, workers: Any, now: list[float]
) -> None:
    open_connection(handler, "carol-1", "carol")
    open_connection(handler, "dave-1", "dave")
    join_lobby(handler, "carol-1", "carol")
    join_lobby(handler, "dave-1", "dave")
    handler.leave(message_event("dave-1", action_body("leave", channel="lobby"), "leave", "dave"), None)
    lose_the_queued_checks(workers)
    in_grace = presence.page("lobby", None)[0]

    early = sweeper.sweep(START + presence.LEAVE_GRACE_SECONDS + sweeper.OVERDUE_LEAVE_SECONDS - 1)
    late = sweeper.sweep(START + presence.LEAVE_GRACE_SECONDS + sweeper.OVERDUE_LEAVE_SECONDS + 1)
    workers.drain()

    assert in_grace == [("carol", 1), ("dave", 0)] and early == {}
    assert late == {"left": 1}
    assert presence.page("lobby", None)[0] == [("carol", 1)] and presence.users_online("lobby") == 1
    assert presence_changes(management, "carol-1")[-1] == {"channel": "lobby", "user": "dave", "state": "leave"}
    assert sweeper.sweep(START + 1800) == {}  # once


def test_a_user_back_within_the_grace_is_not_finished_by_the_sweeper(
    handler: Any, management: Any, workers: Any, now: list[float]
) -> None:
    open_connection(handler, "dave-1", "dave")
    open_connection(handler, "dave-2", "dave")
    join_lobby(handler, "dave-1", "dave")
    handler.leave(message_event("dave-1", action_body("leave", channel="lobby"), "leave", "dave"), None)
    join_lobby(handler, "dave-2", "dave")  # back: the pending leave is off the leaving index
    lose_the_queued_checks(workers)

    assert sweeper.sweep(START + 1800) == {}
    assert presence.page("lobby", None)[0] == [("dave", 1)] and presence.users_online("lobby") == 1
