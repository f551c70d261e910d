"""What every AWS adapter here shares: client settings that keep each call inside API
Gateway's 29 s, the errors a failed call raises, DynamoDB tables made once per container, and
the DynamoDB mechanics every adapter needs, written once: paging, a bounded batch read, and a
transaction whose cancellation says which condition failed.

A table's `meta.client` is the low-level client for the calls the table resource lacks
(TransactWriteItems, BatchGetItem); boto3 converts Python values to DynamoDB's typed form and
back on it, as it does on the table itself."""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Every AWS call gives up well inside API Gateway's 29 s integration limit, so the client
# gets a clear 5xx from us instead of a timeout (botocore's defaults are 60 s per read).
AWS_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
# What a failed AWS call raises: service errors (ClientError) and everything botocore raises
# before an answer arrives (BotoCoreError: no connection, timeouts, no credentials).
AWS_ERRORS = (BotoCoreError, ClientError)


@cache
def dynamodb_table(variable: str, default: str, config: Config = AWS_CLIENT_CONFIG) -> Any:
    """The table named by an environment variable, made once per container (and settings) and
    reused on warm starts; every table with the same settings shares one client."""
    return dynamodb_resource(config).Table(os.environ.get(variable, default))


@cache
def dynamodb_resource(config: Config) -> Any:
    resource = boto3.resource("dynamodb", config=config)
    with_error_classes(resource.meta.client)
    return resource


def dynamodb_client() -> Any:
    """The low-level DynamoDB client the tables share (TransactWriteItems, BatchGetItem)."""
    return dynamodb_resource(AWS_CLIENT_CONFIG).meta.client


@cache
def client(service: str, config: Config = AWS_CLIENT_CONFIG) -> Any:
    """One boto3 client per service (and settings) per container."""
    return with_error_classes(boto3.client(service, config=config))


def with_error_classes(made: Any) -> Any:
    """The client, its exception classes made now, in the thread that made it. botocore makes
    them on a client's first use, unsynchronized: threads using a new client at once can make two
    sets, and one thread's ConditionalCheckFailedException is then not the class its `except`
    names (a test's twenty connects at once saw it; the delivery pool posts from 32 threads)."""
    made.exceptions  # noqa: B018 - read for its side effect: botocore's lazy property fills in
    return made


# --- DynamoDB mechanics, written once -------------------------------------------------------

# BatchGetItem reads at most 100 keys a call.
BATCH_GET_KEYS = 100
# Rounds of BatchGetItem for one batch of keys while DynamoDB leaves some unprocessed (it does
# when throttled), with full-jitter waits doubling from BATCH_GET_BACKOFF_SECONDS up to
# BATCH_GET_MAX_BACKOFF_SECONDS between them; then it fails, naming the keys left.
BATCH_GET_ROUNDS = 10
BATCH_GET_BACKOFF_SECONDS = 0.01
BATCH_GET_MAX_BACKOFF_SECONDS = 0.5
# A transaction cancelled only because another one touched the same items (TransactionConflict)
# is tried again after 10 ms, 20 ms, ... when the caller allows more than one attempt.
CONFLICT_BACKOFF_SECONDS = 0.01


def all_pages(operation: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The items of a Scan or Query, following LastEvaluatedKey to the last page (a page stops
    at 1 MB)."""
    while True:
        page = operation(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def batch_get(
    table: Any, keys: list[dict[str, Any]], consistent: bool = False, projection: str | None = None
) -> list[dict[str, Any]]:
    """The items of one table at these keys (those that exist, in no particular order): 100 keys
    a BatchGetItem, keys DynamoDB leaves unprocessed asked for again after a backoff, at most
    BATCH_GET_ROUNDS rounds a batch, then a ClientError ("UnprocessedKeys")."""
    found: list[dict[str, Any]] = []
    unique = list({json.dumps(key, sort_keys=True, default=str): key for key in keys}.values())
    for start in range(0, len(unique), BATCH_GET_KEYS):
        request: dict[str, Any] = {"Keys": unique[start : start + BATCH_GET_KEYS]}
        if consistent:
            request["ConsistentRead"] = True
        if projection:
            request["ProjectionExpression"] = projection
        for attempt in range(BATCH_GET_ROUNDS):
            answer = table.meta.client.batch_get_item(RequestItems={table.name: request})
            found += answer["Responses"].get(table.name, [])
            left = (answer.get("UnprocessedKeys") or {}).get(table.name)
            if not left:
                break
            request = left
            if attempt + 1 < BATCH_GET_ROUNDS:
                time.sleep(
                    random.uniform(0, min(BATCH_GET_MAX_BACKOFF_SECONDS, BATCH_GET_BACKOFF_SECONDS * 2**attempt))
                )
        else:
            message = (
                f"BatchGetItem left {len(request['Keys'])} keys of {table.name} unread after {BATCH_GET_ROUNDS} rounds"
            )
            raise ClientError({"Error": {"Code": "UnprocessedKeys", "Message": message}}, "BatchGetItem")
    return found


class Cancelled(ClientError):
    """A TransactWriteItems DynamoDB cancelled, with its reasons: one per item, in order ("None"
    where the item was not the cause). Still a ClientError: uncaught, it is an AWS failure."""

    def __init__(self, error: ClientError) -> None:
        super().__init__(error.response, error.operation_name)
        self.reasons = [reason.get("Code") for reason in error.response.get("CancellationReasons", [])]

    def failed(self, index: int) -> bool:
        """Whether the condition of item `index` failed."""
        return index < len(self.reasons) and self.reasons[index] == "ConditionalCheckFailed"

    @property
    def condition_failed(self) -> bool:
        return "ConditionalCheckFailed" in self.reasons


def transact(items: list[dict[str, Any]], attempts: int = 1) -> None:
    """Write the items in one transaction, or raise Cancelled. A cancellation where no condition
    failed (another transaction on the same items: TransactionConflict) is tried again, up to
    `attempts` times in all, waiting CONFLICT_BACKOFF_SECONDS, doubling, between tries."""
    client = dynamodb_client()
    for attempt in range(attempts):
        try:
            client.transact_write_items(TransactItems=items)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            cancelled = Cancelled(error)
            if cancelled.condition_failed or attempt + 1 == attempts:
                raise cancelled from error
        time.sleep(CONFLICT_BACKOFF_SECONDS * 2**attempt)
