"""The messages table: every message kept for its conversation's history (the room, or one
pair's direct messages), stored before it is delivered, read back newest first."""

from __future__ import annotations

import json
import os
import time
import uuid
from typing import Any

from boto3.dynamodb.conditions import Key

from chat import aws, frames
from chat.telemetry import logger

DEFAULT_MESSAGES_TABLE = "serverless-websocket-messages"
ROOM = "room"
MESSAGE_RETENTION_SECONDS = int(os.environ.get("MESSAGE_RETENTION_DAYS", "30")) * 24 * 60 * 60

# A message as read back for a history reply: (its cursor, what the client is shown or None if
# it cannot be shown, the size of that in bytes).
Entry = tuple[str, "dict[str, Any] | None", int]


def table() -> Any:
    return aws.dynamodb_table("MESSAGES_TABLE", DEFAULT_MESSAGES_TABLE)


def new_message(content: Any, sender: str | None, to: str | None = None) -> dict[str, Any]:
    """A message with its identity: a unique id and the time it was sent."""
    message: dict[str, Any] = {"content": content, "id": uuid.uuid4().hex, "sent_at_ms": int(time.time() * 1000)}
    if sender is not None:
        message["sender"] = sender
    if to is not None:
        message["to"] = to
    return message


def dm_conversation(user_a: str, user_b: str) -> str:
    """One conversation per pair, whoever writes first: the ids sorted."""
    first, second = sorted((user_a, user_b))
    return f"dm#{first}#{second}"


def store(conversation: str, message: dict[str, Any]) -> None:
    """Persist before delivering, so a failed delivery loses nothing."""
    item = {
        "conversation": conversation,
        # Time first so a Query returns messages in order; the id keeps keys unique.
        "sort_key": f"{message['sent_at_ms']:013d}#{message['id']}",
        "id": message["id"],
        "sent_at_ms": message["sent_at_ms"],
        # Any JSON value is allowed as content; stored as text it comes back exactly.
        "content_json": json.dumps(message["content"], ensure_ascii=False),
        "ttl": message["sent_at_ms"] // 1000 + MESSAGE_RETENTION_SECONDS,
    }
    for field in ("sender", "to"):
        if field in message:
            item[field] = message[field]
    table().put_item(Item=item)


def stored_to_message(item: dict[str, Any]) -> dict[str, Any]:
    message = {"content": json.loads(item["content_json"]), "id": item["id"], "sent_at_ms": int(item["sent_at_ms"])}
    for field in ("sender", "to"):
        if field in item:
            message[field] = item[field]
    return message


def load_recent(conversation: str, limit: int, before: str | None, now: float) -> tuple[list[Entry], bool]:
    """Up to `limit` messages older than `before` and younger than the retention, newest first;
    and whether older ones may exist. A Query with a Limit: never a Scan, never more than
    asked for, never an item past its retention (DynamoDB's TTL deletes only eventually)."""
    oldest_kept = f"{int((now - MESSAGE_RETENTION_SECONDS) * 1000):013d}"
    if before is not None and before <= oldest_kept:
        return [], False  # also: DynamoDB refuses a start key outside the key condition
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": Key("conversation").eq(conversation) & Key("sort_key").gt(oldest_kept),
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if before:
        kwargs["ExclusiveStartKey"] = {"conversation": conversation, "sort_key": before}
    page = table().query(**kwargs)
    return [entry(item, now) for item in page.get("Items", [])], "LastEvaluatedKey" in page


def entry(item: dict[str, Any], now: float) -> Entry:
    """A stored item as a history entry; without a message if it has expired (DynamoDB deletes
    expired items only eventually) or cannot be read back (logged)."""
    try:
        if "ttl" in item and int(item["ttl"]) <= now:
            return item["sort_key"], None, 0
        return (item["sort_key"], *frames.shown_with_size(stored_to_message(item)))
    except (KeyError, TypeError, ValueError, RecursionError) as error:
        logger.warning("Skipped stored message %s: %s: %s", item.get("sort_key"), type(error).__name__, error)
        return item.get("sort_key", ""), None, 0
