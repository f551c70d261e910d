"""The connections table: one row per open WebSocket connection, keyed by its id, with the
user it belongs to (the sparse `user_id-index` finds a user's connections), the channels it is
in, and its rate-limit state."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import Executor
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.config import Config

from chat import aws
from chat.telemetry import logger

DEFAULT_CONNECTIONS_TABLE = "serverless-websocket-connections"
USER_INDEX = "user_id-index"
# The sweeper's index: the connections due for a look in one bucket of time (below).
DUE_INDEX = "due-index"
DUE = "due_bucket"
# Sweep buckets, in seconds: the sweeper runs once a minute and reads the buckets up to now.
SWEEP_BUCKET_SECONDS = int(os.environ.get("SWEEP_BUCKET_SECONDS", "60"))
# The notice that a token expires goes this long before ("about a minute": the sweep that sends
# it runs up to a bucket later).
EXPIRY_NOTICE_SECONDS = 90
# How often a connection is asked after (GetConnection), to find one whose $disconnect never
# came; 0: only when its token expires and at API Gateway's 2 hours (docs/costs.md).
GHOST_CHECK_SECONDS = int(os.environ.get("GHOST_CHECK_MINUTES", "60")) * 60
# API Gateway closes every WebSocket connection after 2 hours, so an older row is stale.
CONNECTION_LIFETIME_SECONDS = 2 * 60 * 60
# $connect writes the row before API Gateway has finished the handshake, and a post to the
# connection answers 410 until it has. AWS: "Until execution of the integration associated
# with the $connect route is completed, the upgrade request is pending and the actual
# connection will not be established" (WebSocket $connect/$disconnect route keys); an
# integration may run up to 29 s. So a 410 on a row younger than this does not prune it: the
# connection may be about to open. A row that really is gone goes at the next 410 after that.
HANDSHAKE_GRACE_SECONDS = 30
# Deleting gone rows is best effort and may run near the end of a worker's invocation: one
# short attempt each (a row not deleted now is deleted at its next 410, or expires).
PRUNE_CLIENT_CONFIG = Config(connect_timeout=1, read_timeout=1, retries={"mode": "standard", "total_max_attempts": 1})


def table() -> Any:
    return aws.dynamodb_table("CONNECTIONS_TABLE", DEFAULT_CONNECTIONS_TABLE)


def prune_table() -> Any:
    return aws.dynamodb_table("CONNECTIONS_TABLE", DEFAULT_CONNECTIONS_TABLE, PRUNE_CLIENT_CONFIG)


def connect(
    connection_id: str,
    now: int,
    user_id: str | None = None,
    expires_at: int | None = None,
    slot: str | None = None,
    claim: dict[str, Any] | None = None,
    notified: bool = False,
) -> None:
    """Store the connection with a TTL, so rows that $disconnect never removed expire, when its
    token expires, and when the sweeper is next due to look at it. With `claim` (the transaction
    item of the user's connection `slot`: chat/ratelimit.py), in one transaction with it: aws.Cancelled
    when the slot is taken."""
    item: dict[str, Any] = {
        "connection_id": connection_id,
        "connected_at": now,
        "ttl": now + CONNECTION_LIFETIME_SECONDS,
    }
    if user_id is not None:
        item["user_id"] = user_id  # anonymous rows stay out of the sparse user index
    if expires_at is not None:
        item["expires_at"] = expires_at
    item[DUE] = _first_due_bucket(now, expires_at, now, notified)
    if notified:
        item["notified"] = True  # the expiry notice is on its way (chat/sessions.py)
    if slot is not None:
        item["slot"] = slot
    if claim is None:
        table().put_item(Item=item)
    else:
        aws.transact([{"Put": {"TableName": table().name, "Item": item}}, claim])


def renew(connection_id: str, expires_at: int, now: int) -> bool:
    """The connection's token now expires later: the notice may be sent again, the sweep is
    rescheduled. False if there is no row, or it already expires as late or later."""
    try:
        table().update_item(
            Key={"connection_id": connection_id},
            UpdateExpression="SET expires_at = :exp, #due = :due REMOVE notified",
            ConditionExpression="attribute_exists(connection_id) "
            "AND (attribute_not_exists(expires_at) OR expires_at < :exp)",
            ExpressionAttributeNames={"#due": DUE},
            ExpressionAttributeValues={
                ":exp": expires_at,
                ":due": _first_due_bucket(_connected_at(connection_id), expires_at, now),
            },
        )
        return True
    except table().meta.client.exceptions.ConditionalCheckFailedException:
        return False


def next_due(connected_at: int, expires_at: int | None, notified: bool, now: int) -> int:
    """When the sweeper must next look at a connection (epoch seconds): to send the expiry
    notice, to close it when its token expires, to forget it past API Gateway's 2 hours, or to
    ask API Gateway whether it is still there (every GHOST_CHECK_SECONDS)."""
    times = [connected_at + CONNECTION_LIFETIME_SECONDS]
    if expires_at is not None:
        times.append(expires_at if notified else expires_at - EXPIRY_NOTICE_SECONDS)
    if GHOST_CHECK_SECONDS > 0:
        checks_done = max(0, now - connected_at) // GHOST_CHECK_SECONDS
        times.append(connected_at + (checks_done + 1) * GHOST_CHECK_SECONDS)
    return min(times)


def due_bucket(when: int) -> int:
    """The sweep bucket that holds a time: the first run at or after it finds the row."""
    return -(-when // SWEEP_BUCKET_SECONDS)


def _first_due_bucket(connected_at: int, expires_at: int | None, now: int, notified: bool = False) -> int:
    """The bucket of a new schedule (a connect, a renewal). A first look already past is filed
    under now: a run looks back only sweeper.LOOKBACK_BUCKETS, so a past bucket may never be
    read again."""
    return due_bucket(max(now, next_due(connected_at, expires_at, notified, now)))


def due_rows(bucket: int) -> Iterator[dict[str, Any]]:
    """The rows due in one sweep bucket: a Query on the due index, never a Scan."""
    yield from aws.all_pages(table().query, IndexName=DUE_INDEX, KeyConditionExpression=Key(DUE).eq(bucket))


def reschedule(connection_id: str, bucket: int, seen_expiry: int | None, notified: bool | None = None) -> None:
    """Move the row to a later bucket (and note the notice), unless a renewal changed its expiry
    meanwhile (it rescheduled the row itself)."""
    update, values = "SET #due = :due", {":due": bucket}
    if notified:
        update += ", notified = :yes"
        values[":yes"] = True
    condition = "attribute_exists(connection_id)"
    if seen_expiry is not None:
        condition += " AND expires_at = :seen"
        values[":seen"] = seen_expiry
    try:
        table().update_item(
            Key={"connection_id": connection_id},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames={"#due": DUE},
            ExpressionAttributeValues=values,
        )
    except table().meta.client.exceptions.ConditionalCheckFailedException:
        pass  # renewed (and rescheduled) or gone meanwhile


def _connected_at(connection_id: str) -> int:
    found = row(connection_id)
    return int(found["connected_at"]) if found and "connected_at" in found else int(time.time())


def row(connection_id: str) -> dict[str, Any] | None:
    """The connection's row, read consistently; None if it has none."""
    item: dict[str, Any] | None = (
        table().get_item(Key={"connection_id": connection_id}, ConsistentRead=True).get("Item")
    )
    return item


def delete(connection_id: str) -> dict[str, Any] | None:
    """Delete the row, and return what it held (None if it was already gone: not an error)."""
    old: dict[str, Any] | None = (
        table().delete_item(Key={"connection_id": connection_id}, ReturnValues="ALL_OLD").get("Attributes")
    )
    return old


def gone_rows(connection_ids: list[str]) -> list[dict[str, Any]]:
    """The rows of connections that answered 410, except those younger than
    HANDSHAKE_GRACE_SECONDS: they may be about to open (their 410 is the handshake's)."""
    cutoff = int(time.time()) - HANDSHAKE_GRACE_SECONDS
    return [row for row in rows(connection_ids) if int(row.get("connected_at", 0)) < cutoff]


def rows(connection_ids: list[str]) -> list[dict[str, Any]]:
    """The rows of these connections that exist (what cleaning up needs of them)."""
    keys = [{"connection_id": cid} for cid in connection_ids]
    return aws.batch_get(table(), keys, projection="connection_id, user_id, channels, connected_at, slot")


def channel_added_item(connection_id: str, channel: str, most: int) -> dict[str, Any]:
    """The transaction item that adds a channel to the row's set (chat/members.py: join): it
    fails when there is no row (the connection is closing) or it already has `most` channels."""
    return {
        "Update": {
            "TableName": table().name,
            "Key": {"connection_id": connection_id},
            "UpdateExpression": "ADD channels :channel",
            "ConditionExpression": "attribute_exists(connection_id) "
            "AND (attribute_not_exists(channels) OR size(channels) < :max)",
            "ExpressionAttributeValues": {":channel": {channel}, ":max": most},
        }
    }


def channel_removed_item(connection_id: str, channel: str) -> dict[str, Any]:
    """The transaction item that takes a channel out of the row's set: it fails when there is
    no row (never creating one)."""
    return {
        "Update": {
            "TableName": table().name,
            "Key": {"connection_id": connection_id},
            "UpdateExpression": "DELETE channels :channel",
            "ConditionExpression": "attribute_exists(connection_id)",
            "ExpressionAttributeValues": {":channel": {channel}},
        }
    }


def all_ids(page_size: int | None = None) -> Iterator[str]:
    """Every stored connection id, across all Scan pages (a page stops at 1 MB). `page_size`:
    items per page, for a caller that reads only the first few."""
    for item in aws.all_pages(
        table().scan, ProjectionExpression="connection_id", **({"Limit": page_size} if page_size else {})
    ):
        yield item["connection_id"]


def user_connection_ids(user_id: str) -> Iterator[str]:
    """The open connections of one user: a Query on the user index, never a Scan."""
    for item in aws.all_pages(table().query, IndexName=USER_INDEX, KeyConditionExpression=Key("user_id").eq(user_id)):
        yield item["connection_id"]


def count_user_connections(user_id: str, stop_at: int | None = None) -> int:
    """How many open connections one user has (a COUNT Query on the user index), stopping
    once `stop_at` is reached."""
    total = 0
    kwargs: dict[str, Any] = {
        "IndexName": USER_INDEX,
        "KeyConditionExpression": Key("user_id").eq(user_id),
        "Select": "COUNT",
    }
    while True:
        page = table().query(**kwargs)
        total += int(page["Count"])
        if "LastEvaluatedKey" not in page or (stop_at is not None and total >= stop_at):
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def prune(connection_ids: list[str], deadline: float | None = None, pool: Executor | None = None) -> list[str]:
    """Delete the rows of connections that answered 410, except those younger than
    HANDSHAKE_GRACE_SECONDS (one conditional DeleteItem each, so the age is checked by
    DynamoDB itself; on `pool` when given). None is started after `deadline`
    (time.monotonic()). A failure is logged, not raised: the message was delivered, the next
    410 prunes the row again, and it expires by TTL anyway. Returns the ids whose rows it deleted
    (not those another cleanup deleted first: that one frees the slot and says the connection closed)."""
    if not connection_ids:
        return []
    cutoff = int(time.time()) - HANDSHAKE_GRACE_SECONDS

    def forget(connection_id: str) -> str:
        if deadline is not None and time.monotonic() >= deadline:
            return "skipped"
        try:
            answer = prune_table().delete_item(
                Key={"connection_id": connection_id},
                ConditionExpression="attribute_not_exists(connected_at) OR connected_at < :cutoff",
                ExpressionAttributeValues={":cutoff": cutoff},
                ReturnValues="ALL_OLD",
            )
            # No old item: $disconnect or the sweeper deleted it first, and that one ends it.
            return "deleted" if "Attributes" in answer else "absent"
        except prune_table().meta.client.exceptions.ConditionalCheckFailedException:
            return "young"
        except aws.AWS_ERRORS:
            logger.exception("Could not delete gone connection %s", connection_id)
            return "failed"

    results = list(pool.map(forget, connection_ids) if pool is not None else map(forget, connection_ids))
    tally = {outcome: results.count(outcome) for outcome in ("deleted", "absent", "young", "skipped", "failed")}
    logger.info("Deleting %d gone connections", len(connection_ids), extra=tally)
    if tally["failed"]:
        logger.error("Could not delete %d gone connections", tally["failed"])
    return [cid for cid, outcome in zip(connection_ids, results, strict=True) if outcome == "deleted"]
