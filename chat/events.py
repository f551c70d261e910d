"""Events out: what happens in the service, as EventBridge entries on the stage's bus
(EVENT_BUS_NAME; empty: events are off), for the app around it (push notifications, search,
moderation, analytics: docs/events.md). Source `serverless-websocket`; the DetailTypes below;
every Detail carries `eventId` (the same on every retry of the same event: a consumer drops
repeats by it) and `time` (ISO 8601 UTC, ms).

A stored message's `message.created` (and an edit's `message.edited`, a delete's `message.deleted`)
comes from the history table's change stream (chat/stream.py),
so it is sent even when the function that stored it dies right after. The other events are sent
from where they are decided; when PutEvents fails there, they go to the delivery queue and a
worker sends them (chat/worker.py): at least once, in no particular order.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.config import Config

from chat import aws, fanout, jobs
from chat.frames import iso
from chat.telemetry import count, logger

SOURCE = "serverless-websocket"
MESSAGE_CREATED = "message.created"
MESSAGE_EDITED, MESSAGE_DELETED = "message.edited", "message.deleted"
PRESENCE_ENTERED, PRESENCE_LEFT = "presence.entered", "presence.left"
CONNECTION_OPENED, CONNECTION_CLOSED = "connection.opened", "connection.closed"
CHANNEL_JOINED, CHANNEL_LEFT = "channel.joined", "channel.left"
USER_BANNED, USER_UNBANNED = "user.banned", "user.unbanned"
DETAIL_TYPES = (
    MESSAGE_CREATED,
    MESSAGE_EDITED,
    MESSAGE_DELETED,
    PRESENCE_ENTERED,
    PRESENCE_LEFT,
    CONNECTION_OPENED,
    CONNECTION_CLOSED,
    CHANNEL_JOINED,
    CHANNEL_LEFT,
    USER_BANNED,
    USER_UNBANNED,
)
CLOSE_REASONS = ("disconnect", "expired", "gone", "swept")
# PutEvents: at most 10 entries a call, each at most 256 KB (EventBridge's quotas).
ENTRIES_PER_CALL = jobs.EVENTS_PER_JOB
MAX_ENTRY_BYTES = 256 * 1024
# Content goes only while the entry stays this far under it: EventBridge's own count of an entry
# ("Calculating PutEvents event entry size") adds fields of its own.
ENTRY_MARGIN_BYTES = 4 * 1024
# Entries EventBridge failed are sent again (only they), this many times in all, with waits.
PUT_ATTEMPTS = 3
PUT_CONCURRENCY = 4


class EventsFailed(Exception):
    """Entries EventBridge would not take after PUT_ATTEMPTS; `entries` are those."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(entries)} events not taken")
        self.entries = entries


def bus() -> str:
    return os.environ.get("EVENT_BUS_NAME", "")


def enabled() -> bool:
    return bool(bus())


def entry(detail_type: str, event_id: str, detail: dict[str, Any], at_ms: int | None = None) -> dict[str, Any]:
    """One EventBridge entry; `content` is left out (with contentOmitted) when the entry would be
    over EventBridge's 256 KB."""
    at = at_ms if at_ms is not None else int(time.time() * 1000)
    document = {"eventId": event_id, "time": iso(at), **detail}
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    if _size(detail_type, text) > MAX_ENTRY_BYTES - ENTRY_MARGIN_BYTES and "content" in document:
        document = {**{k: v for k, v in document.items() if k != "content"}, "contentOmitted": True}
        text = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
    return {"Source": SOURCE, "DetailType": detail_type, "Detail": text, "EventBusName": bus()}


def _size(detail_type: str, detail: str) -> int:
    """An entry's size as EventBridge counts it: Source, DetailType, Detail (UTF-8), the time."""
    return len(SOURCE) + len(detail_type.encode()) + len(detail.encode("utf-8")) + 14


def event_id(*parts: Any) -> str:
    """A stable id from what makes an event this event: the same on every retry of it."""
    return hashlib.sha256("\0".join(str(part) for part in parts).encode("utf-8")).hexdigest()[:32]


def connection_opened(user: str | None, connection_id: str, connected_at_ms: int) -> dict[str, Any]:
    detail = {"user": user, "connectionId": connection_id, "connectedAt": iso(connected_at_ms)}
    return entry(CONNECTION_OPENED, event_id(CONNECTION_OPENED, connection_id), detail)


def connection_closed(user: str | None, connection_id: str, reason: str) -> dict[str, Any]:
    """Sent by whoever deleted the connection's row: once, whichever of them saw it end."""
    detail = {"user": user, "connectionId": connection_id, "reason": reason}
    return entry(CONNECTION_CLOSED, event_id(CONNECTION_CLOSED, connection_id), detail)


def channel_joined(channel: str, user: str, connection_id: str, at_ms: int) -> dict[str, Any]:
    detail = {"channel": channel, "user": user, "connectionId": connection_id}
    return entry(CHANNEL_JOINED, event_id(CHANNEL_JOINED, channel, connection_id, at_ms), detail, at_ms)


def channel_left(channel: str, user: str, connection_id: str, at_ms: int) -> dict[str, Any]:
    detail = {"channel": channel, "user": user, "connectionId": connection_id}
    return entry(CHANNEL_LEFT, event_id(CHANNEL_LEFT, channel, connection_id, at_ms), detail, at_ms)


def user_banned(
    user: str, channel: str | None, until_ms: int | None, reason: str | None, by: str, at_ms: int
) -> dict[str, Any]:
    """A ban (channel None: the whole service; until None: until lifted)."""
    detail = {
        "user": user,
        "channel": channel,
        "until": iso(until_ms) if until_ms is not None else None,
        "reason": reason,
        "by": by,
    }
    return entry(USER_BANNED, event_id(USER_BANNED, user, channel or "*", at_ms), detail, at_ms)


def user_unbanned(user: str, channel: str | None, by: str, at_ms: int) -> dict[str, Any]:
    detail = {"user": user, "channel": channel, "by": by}
    return entry(USER_UNBANNED, event_id(USER_UNBANNED, user, channel or "*", at_ms), detail, at_ms)


def presence_entered(channel: str, user: str, at_ms: int) -> dict[str, Any]:
    detail = {"channel": channel, "user": user}
    return entry(PRESENCE_ENTERED, event_id(PRESENCE_ENTERED, channel, user, at_ms), detail, at_ms)


def presence_left(channel: str, user: str, left_at_ms: int) -> dict[str, Any]:
    """left_at_ms is the pending leave's own time: a check and the sweeper finishing the same
    leave name the same event (only one of them can, but a retry of it keeps its id)."""
    return entry(PRESENCE_LEFT, event_id(PRESENCE_LEFT, channel, user, left_at_ms), {"channel": channel, "user": user})


def put(entries: list[dict[str, Any]]) -> None:
    """Send the entries, ENTRIES_PER_CALL a call, PUT_CONCURRENCY calls at once (a worker pruning
    hundreds of gone connections); the ones EventBridge failed, again, alone; those it still fails
    raise EventsFailed."""
    client = events_client()  # made here, not in the pool's threads: boto3 makes clients unsafely
    batches = [entries[start : start + ENTRIES_PER_CALL] for start in range(0, len(entries), ENTRIES_PER_CALL)]
    if len(batches) > 1:
        results = list(_pool().map(lambda batch: _put_batch(client, batch), batches))
    else:
        results = [_put_batch(client, batch) for batch in batches]
    failed = [entry for result in results for entry in result]
    if failed:
        raise EventsFailed(failed)


_pool_lock = threading.Lock()


@functools.cache
def _pool() -> ThreadPoolExecutor:
    with _pool_lock:
        return ThreadPoolExecutor(max_workers=PUT_CONCURRENCY, thread_name_prefix="events")


def _put_batch(client: Any, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pending = batch
    for attempt in range(PUT_ATTEMPTS):
        answer = client.put_events(Entries=pending)
        if not answer.get("FailedEntryCount"):
            return []
        pending = [sent for sent, result in zip(pending, answer["Entries"], strict=True) if result.get("ErrorCode")]
        count("EventsRetried", len(pending))
        if attempt + 1 < PUT_ATTEMPTS:
            time.sleep(random.uniform(0, 0.1 * 2**attempt))
    return pending


def emit(entries: Iterable[dict[str, Any]], deadline: float | None = None) -> None:
    """Send events decided here, at least once: what EventBridge does not take now goes to the
    delivery queue, for a worker to send (chat/worker.py); past `deadline` (time.monotonic(): a
    worker near its end) they go there at once. Never raises: what happened happened, and the
    route that decided it answers as it would without events."""
    try:
        found = list(entries)
        if not found or not enabled():
            return
        if deadline is not None and time.monotonic() >= deadline:
            later = found
        else:
            try:
                put(found)
                count("EventsSent", len(found))
                return
            except EventsFailed as failed:
                later = failed.entries
            except aws.AWS_ERRORS:
                logger.warning("Could not send %d events now; queueing them", len(found), exc_info=True)
                later = found
        fanout.queue_events(later)
    except Exception:  # EventBridge and the queue both failed, or a bug: logged and counted
        logger.exception("Lost events: neither EventBridge nor the delivery queue took them")
        count("EventsLost")


# PutEvents from a route or a worker: short waits, few attempts (it may fall back to the queue),
# so that an event never holds up what it tells of (API Gateway's 29 s, a worker's last seconds).
EVENTS_CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "total_max_attempts": 2})


def events_client() -> Any:
    return aws.client("events", EVENTS_CLIENT_CONFIG)
