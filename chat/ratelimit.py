"""How much one user may do, in the limits table: GCRA, the token bucket kept as one number per
bucket, spent with one conditional write (a refused frame costs exactly that write); a budget of
frames per user, and one of connects; and the user's connection slots, one conditional item per
open connection, so that the cap on a user's connections holds however many connect at once."""

from __future__ import annotations

import os
import time
from typing import Any

from chat import aws
from chat.errors import Refusal

DEFAULT_LIMITS_TABLE = "serverless-websocket-limits"
# One connection's budget: MESSAGE_RATE_PER_SECOND frames a second on average and
# MESSAGE_BURST at once (every frame a client sends counts: sendMessage, sendDirectMessage,
# getRecentMessages, refused ones and $default too); 0 turns the limit off.
MESSAGE_RATE_PER_SECOND = float(os.environ.get("MESSAGE_RATE_PER_SECOND", "5"))
MESSAGE_BURST = int(os.environ.get("MESSAGE_BURST", "10"))
# A signed-in user has one budget, shared by all their connections, of this many connections'
# worth: a phone and a laptop need not share one connection's, but five tabs (or reconnecting)
# no longer get five. An anonymous connection (no authorizer) has one connection's budget.
USER_SHARE = 2
# Connects per user: each runs the authorizer, $connect and later $disconnect, so opening and
# closing connections in a loop is a flood of its own (645 in 20 s from one token). A reconnect
# storm after a network blip is a few at once; 0 turns the limit off.
CONNECT_RATE_PER_SECOND = float(os.environ.get("CONNECT_RATE_PER_SECOND", "1"))
CONNECT_BURST = int(os.environ.get("CONNECT_BURST", "10"))
# Open connections per user: refused at $connect beyond this (a phone, a laptop, a few tabs).
MAX_CONNECTIONS_PER_USER = int(os.environ.get("MAX_CONNECTIONS_PER_USER", "5"))
# A bucket idle this long is full again, so DynamoDB may forget it (TTL).
IDLE_BUCKET_SECONDS = 3600


def table() -> Any:
    return aws.dynamodb_table("LIMITS_TABLE", DEFAULT_LIMITS_TABLE)


def budget(user: str | None) -> tuple[float, int]:
    """(frames a second, frames at once) for a user, or for an anonymous connection."""
    share = USER_SHARE if user is not None else 1
    return MESSAGE_RATE_PER_SECOND * share, MESSAGE_BURST * share


def rate_limited_reason(user: str | None) -> str:
    rate, burst = budget(user)
    who = "per user, all your connections together" if user is not None else "per connection"
    return (
        f"Too many messages: at most {rate:g} a second ({burst} at once) {who}. This one was not sent; wait a moment."
    )


def enforce(user: str | None, connection_id: str | None) -> None:
    """Spend one frame of the sender's budget, or refuse it (429, rate_limited). The bucket is the
    user's (all their connections share it, and reconnecting does not refill it), or an
    anonymous connection's own. A bucket that does not exist yet is a full one, never
    "unlimited"."""
    rate, burst = budget(user)
    key = f"user#{user}" if user is not None else f"connection#{connection_id}" if connection_id else None
    if key is None:
        return  # no caller at all (a direct invocation): nothing to charge
    if not spend(key, rate, burst):
        raise Refusal("rate_limited", rate_limited_reason(user))


# Typing frames' own budget (chat/typing.py): never the message budget, so typing cannot keep a
# user from sending; small, because each forwarded one is a post to every member.
TYPING_RATE_PER_SECOND = float(os.environ.get("TYPING_RATE_PER_SECOND", "2"))
TYPING_BURST = int(os.environ.get("TYPING_BURST", "5"))


def enforce_typing(user: str | None, connection_id: str | None) -> None:
    """Spend one typing frame of the user's (or an anonymous connection's) typing budget, or
    refuse it (429, rate_limited)."""
    key = f"typing-frames#{user}" if user is not None else f"typing-frames#connection#{connection_id}"
    if not spend(key, TYPING_RATE_PER_SECOND, TYPING_BURST):
        raise Refusal(
            "rate_limited",
            f"Too many typing frames: at most {TYPING_RATE_PER_SECOND:g} a second ({TYPING_BURST} at once). "
            "This one was dropped; typing frames never spend your message budget.",
        )


def charge_connect(user: str | None) -> None:
    """At $connect: spend one of the user's connects, or refuse it (429, rate_limited)."""
    if user is not None and not spend(f"connect#{user}", CONNECT_RATE_PER_SECOND, CONNECT_BURST):
        raise Refusal(
            "rate_limited",
            f"Too many connects: {user} may connect at most {CONNECT_RATE_PER_SECOND:g} times a second "
            f"({CONNECT_BURST} at once). Wait a moment and connect again.",
        )


def spend(key: str, rate: float, burst: int) -> bool:
    """Spend one from the bucket `key` (GCRA: `tat`, in ms, is when it is full again): True if
    there was one. One conditional write for a bucket that is idle or new (the usual case) and
    for one that is empty (a refusal costs no more than the write that refuses it: DynamoDB hands
    back the item a failed condition saw); a second only for a bucket part-spent within its
    burst. A refusal whose writes took longer than a frame's interval (the invocation stalled
    between reading the clock and writing) is judged once more at the time now: by its old
    clock, a bucket the other frames spent meanwhile looked emptier than it is. rate 0: no limit."""
    if rate <= 0:
        return True
    interval = max(1, round(1000 / rate))
    now = _now_ms()
    if _spend_at(key, interval, burst, now):
        return True
    later = _now_ms()
    return later - now >= interval and _spend_at(key, interval, burst, later)


def _spend_at(key: str, interval: int, burst: int, now: int) -> bool:
    """Spend one from the bucket as of `now` (ms): one or two conditional writes."""
    expires = now // 1000 + burst * interval // 1000 + IDLE_BUCKET_SECONDS
    limits = table()
    try:
        limits.update_item(
            Key={"bucket": key},
            UpdateExpression="SET tat = :next, #ttl = :ttl",
            ConditionExpression="attribute_not_exists(tat) OR tat <= :now",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={":next": now + interval, ":now": now, ":ttl": expires},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return True
    except limits.meta.client.exceptions.ConditionalCheckFailedException as failed:
        seen = (failed.response.get("Item") or {}).get("tat", {}).get("N")
    limit = now + (burst - 1) * interval
    if seen is not None and int(seen) > limit:
        return False  # empty: refused by the write that found it so
    try:
        limits.update_item(
            Key={"bucket": key},
            UpdateExpression="SET tat = tat + :interval, #ttl = :ttl",
            ConditionExpression="tat <= :limit",
            ExpressionAttributeNames={"#ttl": "ttl"},
            ExpressionAttributeValues={":interval": interval, ":limit": limit, ":ttl": expires},
        )
        return True
    except limits.meta.client.exceptions.ConditionalCheckFailedException:
        return False  # emptied meanwhile by another frame of the same user


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- connection slots --------------------------------------------------------------------------


def slots(user: str) -> list[str]:
    """The keys of a user's connection slots, tried in order at $connect."""
    return [f"slot#{user}#{n}" for n in range(MAX_CONNECTIONS_PER_USER)]


def slot_claim_item(slot: str, connection_id: str, now: int, until: int) -> dict[str, Any]:
    """The transaction item that takes a free slot for a connection: free when it holds none, or
    one whose connection has certainly closed (API Gateway's 2 hours are past: `until`)."""
    return {
        "Put": {
            "TableName": table().name,
            "Item": {"bucket": slot, "connection_id": connection_id, "until": until, "ttl": until},
            "ConditionExpression": "attribute_not_exists(connection_id) OR #until <= :now",
            "ExpressionAttributeNames": {"#until": "until"},
            "ExpressionAttributeValues": {":now": now},
        }
    }


def release_slot(slot: str, connection_id: str) -> None:
    """The connection is gone: its slot is free (unless another connection holds it by now)."""
    try:
        table().delete_item(
            Key={"bucket": slot},
            ConditionExpression="connection_id = :connection",
            ExpressionAttributeValues={":connection": connection_id},
        )
    except table().meta.client.exceptions.ConditionalCheckFailedException:
        pass


def too_many_connections(user: str) -> Refusal:
    return Refusal(
        "too_many_connections",
        f"Too many connections: {user} already has {MAX_CONNECTIONS_PER_USER} open, the most one user may have. "
        "Close one and connect again.",
    )
