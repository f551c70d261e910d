"""How much one user may send, and on how many connections: GCRA, the token bucket kept as one
number per user in the limits table, checked with one conditional write per frame; and a cap
on a user's open connections, checked at $connect."""

from __future__ import annotations

import os
import time
from typing import Any

from chat import aws, connections
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
    anonymous connection's own. `tat` is the time (ms) at which the bucket is full again. No
    read: the first write applies to an idle (or never seen) bucket, creating it; the second
    to one within its burst; when both conditions fail the sender is over its limit. A bucket
    that does not exist yet is a full one, never "unlimited"."""
    rate, burst = budget(user)
    if rate <= 0:
        return
    key = f"user#{user}" if user is not None else f"connection#{connection_id}" if connection_id else None
    if key is None:
        return  # no caller at all (a direct invocation): nothing to charge
    interval = max(1, round(1000 / rate))
    now = int(time.time() * 1000)
    expires = now // 1000 + burst * interval // 1000 + IDLE_BUCKET_SECONDS
    attempts = (
        (
            "SET tat = :next, #ttl = :ttl",
            "attribute_not_exists(tat) OR tat <= :now",
            {":next": now + interval, ":now": now, ":ttl": expires},
        ),
        (
            "SET tat = tat + :interval, #ttl = :ttl",
            "tat <= :limit",
            {":interval": interval, ":limit": now + (burst - 1) * interval, ":ttl": expires},
        ),
    )
    limits = table()
    for update, condition, values in attempts:
        try:
            limits.update_item(
                Key={"bucket": key},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#ttl": "ttl"},
                ExpressionAttributeValues=values,
            )
            return
        except limits.meta.client.exceptions.ConditionalCheckFailedException:
            continue
    raise Refusal("rate_limited", rate_limited_reason(user))


def admit_connection(user: str | None) -> None:
    """At $connect: refuse (429) a user who already has MAX_CONNECTIONS_PER_USER open
    connections. Counted with a Query on the user index (two connects racing may both pass;
    a row whose $disconnect was lost counts until a post to it answers 410 and prunes it)."""
    if user is None or MAX_CONNECTIONS_PER_USER <= 0:
        return
    open_now = connections.count_user_connections(user, stop_at=MAX_CONNECTIONS_PER_USER)
    if open_now >= MAX_CONNECTIONS_PER_USER:
        raise Refusal(
            "too_many_connections",
            f"Too many connections: {user} already has {MAX_CONNECTIONS_PER_USER} open, the most one user may have. "
            "Close one and connect again.",
        )
