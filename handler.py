"""Lambda handlers for a serverless WebSocket chat: API Gateway WebSocket API + DynamoDB.

The same code runs on AWS and under serverless-offline (with moto as DynamoDB): only the
management API endpoint differs, and boto3 finds a local DynamoDB through
``AWS_ENDPOINT_URL_DYNAMODB``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Any, Iterator

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

logger = logging.getLogger(__name__)
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))

DEFAULT_CONNECTIONS_TABLE = "serverless-websocket-connections"
DEFAULT_OFFLINE_WEBSOCKET_PORT = "3001"

# API Gateway closes every WebSocket connection after 2 hours, so an older row is stale.
CONNECTION_LIFETIME_SECONDS = 2 * 60 * 60
# API Gateway refuses to deliver a WebSocket message larger than 128 KB.
MAX_MESSAGE_BYTES = 128 * 1024
# Posts run in parallel so that one slow connection does not delay the others; bounded so
# that a large room does not mean one thread (and one socket) per connection.
BROADCAST_CONCURRENCY = int(os.environ.get("BROADCAST_CONCURRENCY", "32"))

SENT, GONE, FAILED = "sent", "gone", "failed"

Response = dict[str, Any]


class BadMessage(ValueError):
    """A client sent something we cannot broadcast; the text is the reason shown to it."""


# --- entry points --------------------------------------------------------------------------


def ping(event: dict, context: Any) -> Response:
    """GET /ping: a health check that touches nothing else."""
    return _response(200, "PONG!")


def connection_manager(event: dict, context: Any) -> Response:
    """$connect stores the connection, $disconnect forgets it."""
    request = event.get("requestContext") or {}
    event_type = request.get("eventType")
    connection_id = request.get("connectionId")
    if event_type not in ("CONNECT", "DISCONNECT") or not connection_id:
        logger.warning("Unrecognized eventType %s for connection %s", event_type, connection_id)
        return _response(500, "Unrecognized eventType.")
    try:
        if event_type == "CONNECT":
            handle_connect(connections_table(), connection_id, _request_epoch_seconds(request))
            return _response(200, "Connect successful.")
        handle_disconnect(connections_table(), connection_id)
        return _response(200, "Disconnect successful.")
    except ClientError:
        logger.exception("Could not %s connection %s", event_type.lower(), connection_id)
        return _response(500, f"{event_type.capitalize()} failed.")


def default_message(event: dict, context: Any) -> Response:
    """$default: any frame whose action matches no route (or that is not JSON at all)."""
    return _response(400, "Unrecognized WebSocket action.")


def send_message(event: dict, context: Any) -> Response:
    """sendMessage: broadcast the content to every open connection."""
    try:
        payload = build_broadcast_payload(event.get("body"))
    except BadMessage as error:
        logger.info("Rejected message from %s: %s", _connection_id(event), error)
        return _response(400, str(error))
    try:
        outcome = broadcast(connections_table(), management_client(management_endpoint(event)), payload)
    except ClientError:
        logger.exception("Broadcast from %s failed", _connection_id(event))
        return _response(500, "Message could not be sent.")
    logger.info("Broadcast from %s: %s", _connection_id(event), outcome)
    return _response(200, "Message sent to all connections.")


# --- connections table ---------------------------------------------------------------------


@lru_cache(maxsize=None)
def connections_table() -> Any:
    """The DynamoDB table, created once per container and reused on warm starts."""
    name = os.environ.get("CONNECTIONS_TABLE", DEFAULT_CONNECTIONS_TABLE)
    return boto3.resource("dynamodb").Table(name)


def handle_connect(table: Any, connection_id: str, now: int) -> None:
    """Store the connection with a TTL, so rows that $disconnect never removed expire."""
    table.put_item(
        Item={
            "connection_id": connection_id,
            "connected_at": now,
            "ttl": now + CONNECTION_LIFETIME_SECONDS,
        }
    )


def handle_disconnect(table: Any, connection_id: str) -> None:
    """Delete the row; deleting a row that is already gone is not an error."""
    table.delete_item(Key={"connection_id": connection_id})


def iter_connection_ids(table: Any) -> Iterator[str]:
    """Every stored connection id, across all Scan pages (a page stops at 1 MB)."""
    kwargs: dict[str, Any] = {"ProjectionExpression": "connection_id"}
    while True:
        page = table.scan(**kwargs)
        for item in page.get("Items", []):
            yield item["connection_id"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- messages ------------------------------------------------------------------------------


def build_broadcast_payload(body: str | None) -> bytes:
    """Validate a sendMessage body and return the exact bytes every connection will get."""
    if not isinstance(body, str) or not body.strip():
        raise BadMessage('Message body is empty: send {"action": "sendMessage", "content": "..."}.')
    try:
        message = json.loads(body)
    except (ValueError, RecursionError):
        raise BadMessage("Message body is not valid JSON.") from None
    if not isinstance(message, dict):
        raise BadMessage('Message body must be a JSON object like {"action": "sendMessage", "content": "..."}.')
    if message.get("content") is None:
        raise BadMessage('Message has no "content" (it is missing or null).')
    try:
        payload = json.dumps({"messages": [{"content": message["content"]}]}, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadMessage('Message "content" is not valid Unicode (it has a lone surrogate).') from None
    if len(payload) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"Message too large: {len(payload)} bytes, the limit is {MAX_MESSAGE_BYTES}.")
    return payload


# --- management API ------------------------------------------------------------------------


def management_endpoint(event: dict) -> str:
    """Where to post to connections: the API's own stage on AWS, the emulator offline."""
    if os.environ.get("IS_OFFLINE"):
        port = os.environ.get("OFFLINE_WEBSOCKET_PORT", DEFAULT_OFFLINE_WEBSOCKET_PORT)
        return f"http://localhost:{port}"
    request = event["requestContext"]
    return f"https://{request['domainName']}/{request['stage']}"


@lru_cache(maxsize=None)
def management_client(endpoint: str) -> Any:
    """One client per endpoint, reused by every post and every warm invocation."""
    config = Config(
        max_pool_connections=BROADCAST_CONCURRENCY,
        connect_timeout=3,
        read_timeout=5,
        retries={"mode": "standard", "max_attempts": 3},
    )
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)


@lru_cache(maxsize=None)
def _post_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=BROADCAST_CONCURRENCY, thread_name_prefix="post")


def post_to_connection(client: Any, connection_id: str, payload: bytes) -> str:
    """Post one message; report SENT, GONE (the client left) or FAILED (anything else)."""
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=payload)
        return SENT
    except client.exceptions.GoneException:
        return GONE
    except ClientError as error:
        # serverless-offline answers a bare HTTP 410 with no body: the code is just '410'.
        if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 410:
            return GONE
        logger.exception("Could not post to connection %s", connection_id)
        return FAILED


def broadcast(table: Any, client: Any, payload: bytes) -> dict[str, int]:
    """Post the payload to every connection and delete the ones that are gone."""
    connection_ids = iter_connection_ids(table)
    outcomes: dict[str, int] = {SENT: 0, GONE: 0, FAILED: 0}
    gone: list[str] = []
    results = _post_pool().map(lambda cid: (cid, post_to_connection(client, cid, payload)), connection_ids)
    for connection_id, outcome in results:
        outcomes[outcome] += 1
        if outcome == GONE:
            gone.append(connection_id)
    for connection_id in gone:
        logger.info("Deleting gone connection %s", connection_id)
        handle_disconnect(table, connection_id)
    return outcomes


# --- helpers -------------------------------------------------------------------------------


def _response(status_code: int, body: str) -> Response:
    return {"statusCode": status_code, "body": body}


def _connection_id(event: dict) -> str | None:
    return (event.get("requestContext") or {}).get("connectionId")


def _request_epoch_seconds(request: dict) -> int:
    """API Gateway gives milliseconds; DynamoDB TTL wants seconds."""
    millis = request.get("connectedAt") or request.get("requestTimeEpoch")
    return int(millis) // 1000 if millis else int(time.time())
