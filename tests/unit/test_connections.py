"""The connections table's schedule: when the sweeper next looks at a connection (its expiry
notice, its close, its hourly ghost check), kept right by a renewal and by the sweep itself, so
no connection is looked at too late (a missed notice, a ghost that stays) or too often."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chat import connections, frames, members, sweeper
from tests.support.actions import renew
from tests.support.events import (
    MANAGEMENT_ENDPOINT,
    action_body,
    connect_event,
    exp_of,
    message_event,
    token,
)
from tests.support.helpers import only_the_first_key_each_time, pages_of, stale_reads

# The clock these tests stand still at and move: today, so that PyJWT (which reads the real
# clock) agrees with the service about which tokens are valid. A whole minute: sweep buckets.
START = int(time.time()) // 60 * 60
OPENED = START + 1000


@pytest.fixture
def now(frozen_clock: list[float], monkeypatch: pytest.MonkeyPatch) -> list[float]:
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", MANAGEMENT_ENDPOINT)  # the sweeper's, from the template
    frozen_clock[0] = float(OPENED)
    return frozen_clock


def open_connection(handler: Any, connection_id: str, user: str | None = None, expires_at: int | None = None) -> None:
    event = connect_event(connection_id, user, expires_at)
    event["requestContext"]["connectedAt"] = OPENED * 1000
    assert handler.connection_manager(event, None)["statusCode"] == 200


def notices(management: Any, connection_id: str) -> list[Any]:
    return [frame for frame in management.received(connection_id) if isinstance(frame, dict) and "tokenExpiring" in frame]


def test_a_renewal_keeps_the_ghost_checks_hourly_from_when_the_connection_opened(
    handler: Any, management: Any, jwt_secret: str, now: list[float]
) -> None:
    first = OPENED + 3000
    open_connection(handler, "c1", "alice", first)
    now[0] = OPENED + 1800
    assert renew(handler, "c1", "alice", first, token(jwt_secret, "alice", expires_in=7200))["statusCode"] == 200

    sweeper.sweep(OPENED + connections.GHOST_CHECK_SECONDS + 30)  # an hour after it opened, not after the renewal

    assert management.asked == ["c1"]


def test_a_renewal_brings_the_expiry_notice_again_before_the_new_expiry(
    handler: Any, management: Any, jwt_secret: str, now: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connections, "GHOST_CHECK_SECONDS", 0)  # no hourly look that would find it anyway
    first = OPENED + 150
    open_connection(handler, "c1", "alice", first)
    sweeper.sweep(first - 30)
    assert notices(management, "c1") == [{"tokenExpiring": {"at": frames.iso(first * 1000)}}]
    later = token(jwt_secret, "alice", expires_in=7200)
    assert renew(handler, "c1", "alice", first, later)["statusCode"] == 200

    sweeper.sweep(exp_of(later) - 30)

    assert notices(management, "c1")[1:] == [{"tokenExpiring": {"at": frames.iso(exp_of(later) * 1000)}}]
    assert management.closed == []


def test_the_expiry_notice_is_sent_once_even_when_a_ghost_check_comes_between_it_and_the_expiry(
    handler: Any, management: Any, now: list[float]
) -> None:
    expires = OPENED + connections.GHOST_CHECK_SECONDS + 50  # notice 90 s before; the ghost check 50 s before
    open_connection(handler, "c1", "alice", expires)
    sweeper.sweep(expires - 80)
    assert len(notices(management, "c1")) == 1

    sweeper.sweep(expires - 25)  # the ghost check's bucket

    assert management.asked == ["c1"]
    assert len(notices(management, "c1")) == 1


def test_an_anonymous_connection_is_asked_after_once_an_hour_not_at_every_run(handler: Any, management: Any, now: list[float]) -> None:
    open_connection(handler, "anon")
    check = OPENED + connections.GHOST_CHECK_SECONDS

    for minute in range(5):  # the runs after the check's bucket still look 10 buckets back
        sweeper.sweep(check + 30 + 60 * minute)

    assert management.asked == ["anon"]


def test_a_renewal_of_a_connection_whose_row_is_gone_is_refused_and_writes_nothing(
    handler: Any, management: Any, table: Any, jwt_secret: str, now: list[float]
) -> None:
    first = OPENED + 3000
    open_connection(handler, "c1", "alice", first)
    table.delete_item(Key={"connection_id": "c1"})  # pruned, or its $disconnect ran

    response = renew(handler, "c1", "alice", first, token(jwt_secret, "alice", expires_in=7200))

    assert response["statusCode"] == 403 and "nothing was renewed" in response["body"]
    assert "Item" not in table.get_item(Key={"connection_id": "c1"})


def test_a_sweep_that_read_the_row_before_a_renewal_does_not_undo_the_renewals_schedule(
    handler: Any, management: Any, table: Any, jwt_secret: str, now: list[float]
) -> None:
    first = OPENED + 3000
    open_connection(handler, "c1", "alice", first)
    assert renew(handler, "c1", "alice", first, token(jwt_secret, "alice", expires_in=7200))["statusCode"] == 200
    renewed = table.get_item(Key={"connection_id": "c1"})["Item"]["due_bucket"]

    # The sweep read the row (expiring at `first`) before the renewal, and moves it after.
    connections.reschedule("c1", renewed + 100, seen_expiry=first, notified=True)

    row = table.get_item(Key={"connection_id": "c1"})["Item"]
    assert row["due_bucket"] == renewed and "notified" not in row


# --- gone connections: the handshake window, and partial reads ---------------------------


def test_only_rows_older_than_the_handshake_window_are_gone_or_pruned(handler: Any, table: Any, frozen_clock: list[float]) -> None:
    now = int(frozen_clock[0])
    ages = {"old": connections.HANDSHAKE_GRACE_SECONDS + 1, "at-the-edge": connections.HANDSHAKE_GRACE_SECONDS, "young": 1}
    for connection_id, age in ages.items():
        connections.connect(connection_id, now - age, "alice")

    assert [row["connection_id"] for row in connections.gone_rows(list(ages))] == ["old"]
    connections.prune(list(ages))

    assert sorted(item["connection_id"] for item in table.scan()["Items"]) == ["at-the-edge", "young"]


def test_gone_connections_are_all_cleaned_up_when_dynamodb_reads_their_rows_a_few_at_a_time(
    handler: Any, management: Any, table: Any, clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    gone = [f"gone-{n}" for n in range(3)]
    for connection_id in ["sender", *gone]:
        assert handler.connection_manager(connect_event(connection_id), None)["statusCode"] == 200
    for connection_id in gone:
        management.answer(connection_id, 410)
    clock[0] += 60  # past the handshake window
    asked = only_the_first_key_each_time(connections.table().meta.client, monkeypatch)

    response = handler.send_message(message_event("sender", action_body("sendMessage", content="hi")), None)

    assert response["statusCode"] == 200 and asked == [1, 3, 2, 1]  # the room's head, then the rows a key at a time
    assert [item["connection_id"] for item in table.scan()["Items"]] == ["sender"]


def test_more_gone_connections_than_one_batch_read_are_all_cleaned_up(handler: Any, table: Any, frozen_clock: list[float]) -> None:
    from chat import sessions

    now = int(frozen_clock[0])
    gone = [f"gone-{n:03d}" for n in range(150)]  # BatchGetItem reads at most 100 keys
    for connection_id in gone:
        connections.connect(connection_id, now - 3600, "alice")

    sessions.forget(gone, MANAGEMENT_ENDPOINT)

    assert table.scan()["Items"] == []


def test_a_users_connections_are_counted_across_pages_and_only_as_far_as_asked(
    handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for connection_id, user in [*((f"a{n}", "alice") for n in range(7)), ("b1", "bob")]:
        connections.connect(connection_id, START, user)  # rows as $connect writes them, past its cap of 5
    pages = pages_of(1, connections.table().meta.client, monkeypatch)

    assert connections.count_user_connections("alice") == 7 and len(pages) == 7  # a page each
    pages.clear()
    assert connections.count_user_connections("alice", stop_at=5) == 5 and len(pages) == 5  # the cap reached: no more reads


def test_deleting_a_gone_connections_row_is_one_short_attempt(handler: Any) -> None:
    # Pruning may run in the last seconds of a worker's invocation (PRUNE_CLIENT_CONFIG).
    config = connections.prune_table().meta.client.meta.config

    assert (config.connect_timeout, config.read_timeout, config.retries) == (1, 1, {"mode": "standard", "total_max_attempts": 1})
    assert connections.prune_table().name == connections.table().name


def test_a_connection_at_its_channel_cap_is_told_so_though_reads_may_lag(
    handler: Any, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect("a1", user="alice")
    monkeypatch.setattr(members, "MAX_CHANNELS_PER_CONNECTION", 1)

    def join(channel: str) -> dict[str, Any]:
        return handler.join(message_event("a1", action_body("join", channel=channel), "join", "alice"), None)

    assert join("lobby")["statusCode"] == 200
    stale_reads(connections.table().meta.client, monkeypatch)

    assert join("kitchen") == {"statusCode": 400, "body": members.TOO_MANY_CHANNELS}  # not "reconnect": the row is there
