"""The connections table: one row per open WebSocket connection, keyed by its id, with the
user it belongs to (the sparse `user_id-index` finds a user's connections), the channels it is
in, and its rate-limit state."""

from __future__ import annotations

from typing import Any, Iterator

from boto3.dynamodb.conditions import Key

from chat import aws

DEFAULT_CONNECTIONS_TABLE = "serverless-websocket-connections"
USER_INDEX = "user_id-index"
# API Gateway closes every WebSocket connection after 2 hours, so an older row is stale.
CONNECTION_LIFETIME_SECONDS = 2 * 60 * 60


def table() -> Any:
    return aws.dynamodb_table("CONNECTIONS_TABLE", DEFAULT_CONNECTIONS_TABLE)


def connect(connection_id: str, now: int, user_id: str | None = None) -> None:
    """Store the connection with a TTL, so rows that $disconnect never removed expire."""
    item: dict[str, Any] = {"connection_id": connection_id, "connected_at": now, "ttl": now + CONNECTION_LIFETIME_SECONDS}
    if user_id is not None:
        item["user_id"] = user_id  # anonymous rows stay out of the sparse user index
    table().put_item(Item=item)


def row(connection_id: str) -> dict[str, Any] | None:
    """The connection's row, read consistently; None if it has none."""
    return table().get_item(Key={"connection_id": connection_id}, ConsistentRead=True).get("Item")


def delete(connection_id: str) -> None:
    """Delete the row; deleting a row that is already gone is not an error."""
    table().delete_item(Key={"connection_id": connection_id})


def rows(connection_ids: list[str]) -> list[dict[str, Any]]:
    """The rows of these connections that exist (user and channels only), 100 to a BatchGetItem."""
    found: list[dict[str, Any]] = []
    resource = table().meta.client
    for start in range(0, len(connection_ids), 100):
        keys = [{"connection_id": cid} for cid in dict.fromkeys(connection_ids[start:start + 100])]
        request: dict[str, Any] = {table().name: {"Keys": keys, "ProjectionExpression": "connection_id, user_id, channels"}}
        while request:
            answer = resource.batch_get_item(RequestItems=request)
            found += [item for item in answer["Responses"].get(table().name, [])]
            request = answer.get("UnprocessedKeys") or {}
    return found


def delete_all(connection_ids: list[str]) -> None:
    """Delete these rows, 25 to a BatchWriteItem."""
    with table().batch_writer() as batch:
        for connection_id in dict.fromkeys(connection_ids):
            batch.delete_item(Key={"connection_id": connection_id})


def all_ids() -> Iterator[str]:
    """Every stored connection id, across all Scan pages (a page stops at 1 MB)."""
    for item in all_pages(table().scan, ProjectionExpression="connection_id"):
        yield item["connection_id"]


def user_connection_ids(user_id: str) -> Iterator[str]:
    """The open connections of one user: a Query on the user index, never a Scan."""
    for item in all_pages(table().query, IndexName=USER_INDEX, KeyConditionExpression=Key("user_id").eq(user_id)):
        yield item["connection_id"]


def all_pages(operation: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The items of a Scan or Query, following LastEvaluatedKey to the last page."""
    while True:
        page = operation(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
