"""Who is online in a channel: one item per user in the presence table, counting that user's
connections in the channel, and per channel the number of users online.

A user enters when their first connection joins and leaves when their last one is gone, not once
per tab. The transitions are found by DynamoDB itself: each join or leave writes, in the same
transaction as the member item, one of a few conditional updates (below), and the one whose
condition held says what happened. The last connection's departure does not end presence at
once: the item stays, with `connections` 0 and `left_at`, and a check queued for
LEAVE_GRACE_SECONDS later (an SQS message with a delay) ends it, and announces the leave, only if
nobody came back meanwhile. A user back within the grace produces neither leave nor enter
(Ably's grace period is 15 s).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from typing import Any

from boto3.dynamodb.conditions import Key

from chat import aws, conversations, fanout, history
from chat.jobs import LeaveCheck

DEFAULT_PRESENCE_TABLE = "serverless-websocket-presence"
LEAVE_GRACE_SECONDS = int(os.environ.get("PRESENCE_GRACE_SECONDS", "15"))
# Users in one getPresence reply; more are paged with "after".
PAGE_USERS = 100
# Users whose leave is pending, by when it began (sparse: only while `leaving` is set).
LEAVING_INDEX = "leaving-index"
LEAVING_SHARDS = 10

# The ways a join can change presence, tried in this order: another connection of a user who is
# online; the first connection back while a leave is pending (silent); the first connection of a
# user who is not online (an enter).
MORE, BACK, ENTER = "more", "back", "enter"
ARRIVALS = (MORE, BACK, ENTER)
# And a departure: not the user's last connection; the last one (a leave, after the grace).
FEWER, LAST = "fewer", "last"
DEPARTURES = (FEWER, LAST)


def table() -> Any:
    return aws.dynamodb_table("PRESENCE_TABLE", DEFAULT_PRESENCE_TABLE)


def arrival(channel: str, user: str, kind: str, now_ms: int) -> list[dict[str, Any]]:
    """The transaction items for one of ARRIVALS; its condition holds only in that situation."""
    key = {"channel": channel, "user": user}
    if kind == MORE:
        return [_update(key, "ADD connections :one", "connections >= :one", {":one": 1})]
    if kind == BACK:
        return [
            _update(
                key, "SET connections = :one REMOVE left_at, leaving", "connections = :zero", {":one": 1, ":zero": 0}
            )
        ]
    return [
        {
            "Put": {
                "TableName": table().name,
                "Item": {**key, "connections": 1, "since": now_ms},
                "ConditionExpression": "attribute_not_exists(#user)",
                "ExpressionAttributeNames": {"#user": "user"},
            }
        },
        conversations.presence_count_item(history.channel_conversation(channel), 1),
    ]


def departure(channel: str, user: str, kind: str, now_ms: int) -> list[dict[str, Any]]:
    """The transaction items for one of DEPARTURES."""
    key = {"channel": channel, "user": user}
    if kind == FEWER:
        return [_update(key, "ADD connections :less", "connections > :one", {":less": -1, ":one": 1})]
    return [
        _update(
            key,
            "SET connections = :zero, left_at = :now, leaving = :shard",
            "connections = :one",
            {":zero": 0, ":one": 1, ":now": now_ms, ":shard": leaving_shard(channel)},
        )
    ]


def confirm_leave(channel: str, user: str, left_at: int) -> bool:
    """End the user's presence if nobody came back since `left_at`: True when it did (announce
    the leave), False when a connection came back (or it was already ended)."""
    try:
        aws.transact(
            [
                {
                    "Delete": {
                        "TableName": table().name,
                        "Key": {"channel": channel, "user": user},
                        "ConditionExpression": "connections = :zero AND left_at = :left",
                        "ExpressionAttributeValues": {":zero": 0, ":left": left_at},
                    }
                },
                conversations.presence_count_item(history.channel_conversation(channel), -1),
            ]
        )
        return True
    except aws.Cancelled:
        return False


def leaving_shard(channel: str) -> str:
    """The leaving-index partition a channel's pending leaves are filed under: spread over
    LEAVING_SHARDS partitions, so no one partition of the index takes every leave's write."""
    return str(zlib.crc32(channel.encode("utf-8")) % LEAVING_SHARDS)


def overdue_leaves(before_ms: int) -> Iterator[tuple[str, str, int]]:
    """(channel, user, left_at) of every leave still pending that began before `before_ms`: its
    check is overdue (the queue lost it, or it went to the dead-letter queue). The sparse
    leaving-index holds only users whose last connection went, one Query per shard."""
    for shard in range(LEAVING_SHARDS):
        query = table().query
        for item in aws.all_pages(
            query,
            IndexName=LEAVING_INDEX,
            KeyConditionExpression="leaving = :shard AND left_at < :before",
            ExpressionAttributeValues={":shard": str(shard), ":before": before_ms},
        ):
            yield item["channel"], item["user"], int(item["left_at"])


def users_online(channel: str) -> int:
    """Read consistently, so getPresence's count agrees with its members, read the same way."""
    return conversations.presence_count(history.channel_conversation(channel))


def page(channel: str, after: str | None, limit: int | None = None) -> tuple[list[tuple[str, int]], str | None]:
    """Up to `limit` users of the channel, sorted by user id, after `after`: [(user, its
    connections)], and the user to go on after (None: that was the last page). Users whose
    leave is pending are listed, with 0 connections: no leave has been announced yet."""
    kwargs: dict[str, Any] = {
        "KeyConditionExpression": Key("channel").eq(channel),
        "Limit": limit or PAGE_USERS,
        "ConsistentRead": True,
    }
    if after is not None:
        kwargs["ExclusiveStartKey"] = {"channel": channel, "user": after}
    answer = table().query(**kwargs)
    users = [(item["user"], int(item["connections"])) for item in answer.get("Items", [])]
    more = "LastEvaluatedKey" in answer and bool(users)
    return users, users[-1][0] if more else None


def schedule_leave_check(check: LeaveCheck) -> None:
    """Queue the check to run after the grace (SQS DelaySeconds: up to 900)."""
    fanout.sqs_client().send_message(
        QueueUrl=fanout.queue_url(), MessageBody=check.to_body(), DelaySeconds=LEAVE_GRACE_SECONDS
    )


def _update(key: dict[str, str], expression: str, condition: str, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": table().name,
            "Key": key,
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
        }
    }
