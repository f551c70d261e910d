"""The sweeper, run every minute (an EventBridge schedule; offline, `make offline` invokes it):
it reads only the connections due for a look (the due index, one bucket of time at a time),
never the whole table, and for each one:

- its token has expired: told so, closed (DeleteConnection) and cleaned up as $disconnect would;
- its token expires in about a minute: sent {"tokenExpiring": {"at": ...}} (once);
- older than API Gateway's 2 hours: forgotten (API Gateway has closed it);
- due for a ghost check: asked after (GetConnection); if API Gateway answers 410, its
  $disconnect was lost: cleaned up (memberships, presence leave) as $disconnect would.

Then the row is moved to the bucket of its next look. Cost: docs/costs.md. Its calls to
@connections are paced to SWEEP_CALLS_PER_SECOND (a term of the route throttles' arithmetic), and
runs never overlap (serverless.yml: reserved concurrency 1, no retries).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from chat import channels, connections, delivery, frames, jobs, presence, sessions
from chat.telemetry import count, logger

# A row takes at most two calls (a post or GetConnection, then DeleteConnection).
SWEEP_CALLS_PER_SECOND = float(os.environ.get("SWEEP_CALLS_PER_SECOND", "100"))
CALLS_PER_ROW = 2
# Buckets looked at behind the current one, so a run that was late or failed is made up for.
LOOKBACK_BUCKETS = 10
# A pending leave is overdue this long after its grace: its check (an SQS message delayed by the
# grace) is late or lost.
OVERDUE_LEAVE_SECONDS = 60


def sweep(now: float | None = None) -> dict[str, int]:
    """One run: what was done, by kind."""
    now = time.time() if now is None else now
    endpoint = delivery.management_endpoint({})
    current = int(now) // connections.SWEEP_BUCKET_SECONDS
    due = [row for bucket in range(current - LOOKBACK_BUCKETS, current + 1) for row in connections.due_rows(bucket)]
    tally = finish_overdue_leaves(now, endpoint)  # first: none of the leaves this run begins
    pacer = delivery.Pacer(SWEEP_CALLS_PER_SECOND / CALLS_PER_ROW) if SWEEP_CALLS_PER_SECOND > 0 else None

    def paced(row: dict[str, Any]) -> str:
        if pacer is not None:
            pacer.wait()
        return look_at(row, now, endpoint)

    tally.update(delivery.post_pool().map(paced, due))
    for kind, number in tally.items():
        count(f"Swept{kind.title().replace(' ', '')}", number)
    logger.info("Swept %d connections", len(due), extra=dict(tally))
    return dict(tally)


def finish_overdue_leaves(now: float, endpoint: str) -> Counter[str]:
    """Leaves whose check never came (lost with the queue's retention, or in its dead-letter
    queue): a user listed with 0 connections, counted online, forever. Each is finished here as
    its check would have (announced, counted down), unless someone came back; the check and the
    sweeper racing is harmless: one conditional transaction ends a presence, once."""
    cutoff_ms = int((now - presence.LEAVE_GRACE_SECONDS - OVERDUE_LEAVE_SECONDS) * 1000)
    finished: Counter[str] = Counter()
    for channel, user, left_at in presence.overdue_leaves(cutoff_ms):
        if channels.confirm_leave(jobs.LeaveCheck(channel, user, left_at, endpoint)):
            finished["left"] += 1
    return finished


def look_at(row: dict[str, Any], now: float, endpoint: str) -> str:
    """What the sweep does for one due connection, and what that was."""
    connection_id = row["connection_id"]
    connected_at = int(row.get("connected_at", 0))
    expires_at = int(row["expires_at"]) if "expires_at" in row else None
    notified = bool(row.get("notified"))
    if expires_at is not None and expires_at <= now:
        sessions.end_expired(connection_id, endpoint)
        return "expired"
    if connected_at + connections.CONNECTION_LIFETIME_SECONDS <= now:
        delivery.close(endpoint, connection_id)
        sessions.end(connection_id, endpoint, "swept")
        return "too old"
    if expires_at is not None and not notified and expires_at - connections.EXPIRY_NOTICE_SECONDS <= now:
        if (
            delivery.post_to_connection(
                delivery.management_client(endpoint), connection_id, frames.token_expiring(expires_at)
            )
            == delivery.GONE
        ):
            sessions.end(connection_id, endpoint, "gone")
            return "gone"
        notified = True
        kind = "notified"
    elif delivery.get_connection(endpoint, connection_id) == delivery.GONE:
        sessions.end(connection_id, endpoint, "gone")
        return "gone"
    else:
        kind = "checked"
    next_look = connections.next_due(connected_at, expires_at, notified, int(now))
    connections.reschedule(
        connection_id, connections.due_bucket(max(next_look, int(now) + 1)), expires_at, notified or None
    )
    return kind
