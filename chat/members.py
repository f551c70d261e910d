"""Channel membership: which connections are in which channel.

The members table holds one item per channel and member, keyed (channel, "<user>#<connection>"),
so a channel's members are one paginated Query, sorted by user. The connection's own row holds
the set of its channels, so $disconnect finds them without a Scan, and caps how many it may join.
A join or leave writes both in one transaction, so they cannot disagree.
"""

from __future__ import annotations

import time
from typing import Any, Iterable, Iterator

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError

from chat import aws, connections
from chat.requests import BadMessage

DEFAULT_MEMBERS_TABLE = "serverless-websocket-members"
# Channels one connection may be in at once (Centrifugo's default is 128, Ably's 200).
MAX_CHANNELS_PER_CONNECTION = 100
TOO_MANY_CHANNELS = f"A connection may be in at most {MAX_CHANNELS_PER_CONNECTION} channels: leave one first."
NOT_CONNECTED = "This connection is not registered (it may be closing): reconnect, then join again."


def table() -> Any:
    return aws.dynamodb_table("MEMBERS_TABLE", DEFAULT_MEMBERS_TABLE)


def member_key(user_id: str, connection_id: str) -> str:
    """User first, so a channel's members come back sorted by user (user ids have no "#")."""
    return f"{user_id}#{connection_id}"


def join(channel: str, connection_id: str, user_id: str) -> None:
    """Add the connection to the channel; joining again changes nothing."""
    now = int(time.time())
    member = {
        "channel": channel, "member": member_key(user_id, connection_id), "connection_id": connection_id,
        "user_id": user_id, "joined_at": now, "ttl": now + connections.CONNECTION_LIFETIME_SECONDS,
    }
    try:
        _transact([
            {"Put": {"TableName": table().name, "Item": member}},
            {"Update": {
                "TableName": connections.table().name,
                "Key": {"connection_id": connection_id},
                "UpdateExpression": "ADD channels :channel",
                "ConditionExpression": "attribute_exists(connection_id) AND (attribute_not_exists(channels) "
                                       "OR size(channels) < :max OR contains(channels, :name))",
                "ExpressionAttributeValues": {":channel": {channel}, ":max": MAX_CHANNELS_PER_CONNECTION, ":name": channel},
            }},
        ])
    except _Cancelled:
        if connections.row(connection_id) is None:
            raise BadMessage(NOT_CONNECTED, 410) from None
        raise BadMessage(TOO_MANY_CHANNELS) from None


def leave(channel: str, connection_id: str, user_id: str) -> None:
    """Take the connection out of the channel; leaving a channel one is not in changes nothing."""
    remove = {"Delete": {"TableName": table().name, "Key": {"channel": channel, "member": member_key(user_id, connection_id)}}}
    try:
        _transact([remove, {"Update": {
            "TableName": connections.table().name,
            "Key": {"connection_id": connection_id},
            "UpdateExpression": "DELETE channels :channel",
            "ConditionExpression": "attribute_exists(connection_id)",  # never create a row
            "ExpressionAttributeValues": {":channel": {channel}},
        }}])
    except _Cancelled:
        table().delete_item(Key={"channel": channel, "member": member_key(user_id, connection_id)})


def is_member(channel: str, connection_id: str, user_id: str) -> bool:
    key = {"channel": channel, "member": member_key(user_id, connection_id)}
    return "Item" in table().get_item(Key=key, ConsistentRead=True, ProjectionExpression="connection_id")


def member_ids(channel: str) -> Iterator[str]:
    """Every connection in the channel: a paginated Query, read consistently, so a connection
    whose join was acknowledged is among them."""
    query = table().query
    for item in connections.all_pages(query, KeyConditionExpression=Key("channel").eq(channel),
                                      ProjectionExpression="connection_id", ConsistentRead=True):
        yield item["connection_id"]


def remove_memberships(rows: Iterable[dict[str, Any]]) -> None:
    """Delete the member items of connections whose rows are gone (their user and channels)."""
    keys = [
        {"channel": channel, "member": member_key(row.get("user_id", ""), row["connection_id"])}
        for row in rows for channel in row.get("channels", ())
    ]
    if keys:
        with table().batch_writer() as batch:
            for key in keys:
                batch.delete_item(Key=key)


class _Cancelled(Exception):
    """A transaction's condition failed."""


def _transact(items: list[dict[str, Any]], attempts: int = 3) -> None:
    """Write the items in one transaction. A conflict with another transaction on the same
    items is tried again; a failed condition raises _Cancelled."""
    for attempt in range(attempts):
        try:
            table().meta.client.transact_write_items(TransactItems=items)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]
            if "ConditionalCheckFailed" in reasons:
                raise _Cancelled(reasons) from error
            if attempt + 1 == attempts:
                raise
            time.sleep(0.01 * 2**attempt)
