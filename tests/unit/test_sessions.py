"""Every way a connection ends cleans up the same way (chat/sessions.py): here, a connection
closed because its token expired leaves its channels with a leave announced, as $disconnect
would have done; and cleaning up after a post found connections gone starts nothing past the
worker's deadline."""

from __future__ import annotations

import json
import time
from typing import Any

from chat import connections, presence, sessions
from tests.support.events import MANAGEMENT_ENDPOINT, action_body, connect_event, message_event
from tests.support.actions import send


def frame(handler: Any, route: str, connection_id: str, user: str, expires_at: int | None = None, **fields: Any) -> dict[str, Any]:
    return send(handler, route, connection_id, user, expires_at=expires_at, **fields)


def presence_events(management: Any, connection_id: str) -> list[tuple[str, str]]:
    return [(f["presenceChange"]["user"], f["presenceChange"]["state"]) for f in management.received(connection_id)
            if isinstance(f, dict) and "presenceChange" in f]


def test_a_connection_closed_for_its_expired_token_leaves_its_channels_with_a_leave(
    handler: Any, management: Any, connect: Any, workers: Any, frozen_clock: list[float]
) -> None:
    connect("carol-1", user="carol")
    assert frame(handler, "join", "carol-1", "carol", channel="lobby")["statusCode"] == 200
    expires = int(frozen_clock[0]) + 100
    assert handler.connection_manager(connect_event("alice-1", "alice", expires), None)["statusCode"] == 200
    assert frame(handler, "join", "alice-1", "alice", expires, channel="lobby")["statusCode"] == 200
    frozen_clock[0] = expires + 1

    refused = frame(handler, "sendMessage", "alice-1", "alice", expires, channel="lobby", content="late")
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()

    assert refused["statusCode"] == 401 and management.closed == ["alice-1"]
    assert presence_events(management, "carol-1") == [("carol", "enter"), ("alice", "enter"), ("alice", "leave")]
    assert workers.count(workers.dead_letters) == 0
    reply = json.loads(handler.get_presence(message_event("carol-1", action_body("getPresence", channel="lobby"), "getPresence", "carol"), None)["body"])
    assert [member["user"] for member in reply["presence"]["members"]] == ["carol"]


def test_cleaning_up_gone_connections_starts_no_delete_past_the_deadline(handler: Any, table: Any, frozen_clock: list[float]) -> None:
    connections.connect("gone", int(frozen_clock[0]) - connections.HANDSHAKE_GRACE_SECONDS - 1, "alice")

    sessions.forget(["gone"], MANAGEMENT_ENDPOINT, deadline=time.monotonic() - 1)  # a worker out of time
    assert [item["connection_id"] for item in table.scan()["Items"]] == ["gone"]  # left for the next 410 or its TTL

    sessions.forget(["gone"], MANAGEMENT_ENDPOINT, deadline=time.monotonic() + 60)
    assert table.scan()["Items"] == []
