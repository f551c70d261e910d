"""Channel membership: which connections are in which channel.

The members table holds one item per channel and member, keyed (channel, "<user>#<connection>"),
so a channel's members are one paginated Query, sorted by user. The connection's own row holds
the set of its channels, so $disconnect finds them without a Scan, and caps how many it may join.
A join or leave writes both in one transaction, so they cannot disagree.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chat import aws, connections, presence
from chat.errors import Refusal

DEFAULT_MEMBERS_TABLE = "serverless-websocket-members"
# Channels one connection may be in at once (Centrifugo's default is 128, Ably's 200).
MAX_CHANNELS_PER_CONNECTION = 100
TOO_MANY_CHANNELS = f"A connection may be in at most {MAX_CHANNELS_PER_CONNECTION} channels: leave one first."
NOT_CONNECTED = "This connection is not registered (it may be closing): reconnect, then join again."
# A transaction that conflicts with another one on the same items is tried this often in all.
TRANSACTION_ATTEMPTS = 3


def table() -> Any:
    return aws.dynamodb_table("MEMBERS_TABLE", DEFAULT_MEMBERS_TABLE)


def member_key(user_id: str, connection_id: str) -> str:
    """User first, so a channel's members come back sorted by user (user ids have no "#")."""
    return f"{user_id}#{connection_id}"


def join(channel: str, connection_id: str, user_id: str) -> str:
    """Add the connection to the channel, and count it in the user's presence, in one
    transaction: which presence.ARRIVALS applied ("enter": the user came online), or "already"
    (joining again changes nothing)."""
    now = int(time.time())
    member = {
        "channel": channel,
        "member": member_key(user_id, connection_id),
        "connection_id": connection_id,
        "user_id": user_id,
        "joined_at": now,
        "ttl": now + connections.CONNECTION_LIFETIME_SECONDS,
    }
    for _ in range(3):  # another connection of the user may change its presence meanwhile
        for kind in presence.ARRIVALS:
            try:
                aws.transact(
                    [
                        {
                            "Put": {
                                "TableName": table().name,
                                "Item": member,
                                "ConditionExpression": "attribute_not_exists(#member)",
                                "ExpressionAttributeNames": {"#member": "member"},
                            }
                        },  # a reserved word
                        connections.channel_added_item(connection_id, channel, MAX_CHANNELS_PER_CONNECTION),
                        *presence.arrival(channel, user_id, kind, now * 1000),
                    ],
                    attempts=TRANSACTION_ATTEMPTS,
                )
                return kind
            except aws.Cancelled as cancelled:
                if not cancelled.condition_failed:
                    raise
                if cancelled.failed(0):
                    return "already"
                if cancelled.failed(1):
                    if connections.row(connection_id) is None:
                        raise Refusal("not_registered", NOT_CONNECTED) from None
                    raise Refusal("too_many_channels", TOO_MANY_CHANNELS) from None
    raise ClientError(
        {"Error": {"Code": "PresenceContention", "Message": f"presence of {user_id} in {channel} kept changing"}},
        "Join",
    )


def leave(channel: str, connection_id: str, user_id: str, update_row: bool = True) -> tuple[str, int]:
    """Take the connection out of the channel, and out of the user's presence: which
    presence.DEPARTURES applied ("last": a leave is pending) and when, or "none" (it was not a
    member). With update_row, the connection row's set of channels too (not when the row is
    being deleted anyway)."""
    key = {"channel": channel, "member": member_key(user_id, connection_id)}
    row_update = connections.channel_removed_item(connection_id, channel)
    for _ in range(3):
        for kind in presence.DEPARTURES:
            now_ms = int(time.time() * 1000)
            items = [
                {
                    "Delete": {
                        "TableName": table().name,
                        "Key": key,
                        "ConditionExpression": "attribute_exists(#member)",
                        "ExpressionAttributeNames": {"#member": "member"},
                    }
                }
            ]
            items += [row_update] if update_row else []
            try:
                aws.transact(
                    [*items, *presence.departure(channel, user_id, kind, now_ms)], attempts=TRANSACTION_ATTEMPTS
                )
                return kind, now_ms
            except aws.Cancelled as cancelled:
                if not cancelled.condition_failed:
                    raise
                if cancelled.failed(0):
                    return "none", now_ms
                if update_row and cancelled.failed(1):
                    update_row = False  # no row (closing): nothing to update on it
    # No presence to count down (written by an older version, or lost): the member still goes.
    table().delete_item(Key=key)
    return "none", int(time.time() * 1000)


def is_member(channel: str, connection_id: str, user_id: str) -> bool:
    key = {"channel": channel, "member": member_key(user_id, connection_id)}
    return "Item" in table().get_item(Key=key, ConsistentRead=True, ProjectionExpression="connection_id")


def member_ids(channel: str, page_size: int | None = None) -> Iterator[str]:
    """Every connection in the channel: a paginated Query, read consistently, so a connection
    whose join was acknowledged is among them. `page_size`: items per page, for a caller that
    reads only the first few."""
    query = table().query
    for item in aws.all_pages(
        query,
        KeyConditionExpression=Key("channel").eq(channel),
        ProjectionExpression="connection_id",
        ConsistentRead=True,
        **({"Limit": page_size} if page_size else {}),
    ):
        yield item["connection_id"]


def user_connection_ids(channel: str, user_id: str) -> list[str]:
    """The user's connections in the channel (their member keys start with the user: member_key)."""
    query = table().query
    items = aws.all_pages(
        query,
        KeyConditionExpression=Key("channel").eq(channel) & Key("member").begins_with(f"{user_id}#"),
        ProjectionExpression="connection_id",
        ConsistentRead=True,
    )
    return [item["connection_id"] for item in items]


class Departure(NamedTuple):
    """A connection taken out of a channel: `kind` is which presence.DEPARTURES applied."""

    channel: str
    user: str
    connection_id: str
    kind: str
    left_at: int


def remove_memberships(rows: Iterable[dict[str, Any]]) -> list[Departure]:
    """Take connections whose rows are going away out of every channel their row lists: one
    Departure each (presence.LAST where it was the user's last connection in the channel)."""
    departures = []
    for row in rows:
        user = row.get("user_id")
        for channel in row.get("channels", ()):
            if user is None:
                continue  # anonymous connections cannot join
            kind, left_at = leave(channel, row["connection_id"], user, update_row=False)
            if kind != "none":
                departures.append(Departure(channel, user, row["connection_id"], kind, left_at))
    return departures
