"""Lambda handlers for a serverless WebSocket chat: API Gateway WebSocket API + DynamoDB.

Part 1: connections, broadcast. Part 2: JWT auth on $connect, direct messages, history.
The same code runs on AWS and under serverless-offline (with moto as DynamoDB and SSM): only
the management API endpoint differs, and boto3 finds moto through ``AWS_ENDPOINT_URL_*``.
"""

from __future__ import annotations

import base64
import binascii
import functools
import itertools
import json
import math
import os
import random
import re
import threading
import time
import unicodedata
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Iterable, Iterator

import boto3
import jwt
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from boto3.dynamodb.conditions import Key
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Structured JSON logs and CloudWatch Embedded Metric Format, from Powertools for AWS Lambda.
SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "serverless-websocket")
logger = Logger(service=SERVICE, level=os.environ.get("LOG_LEVEL", "INFO"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ServerlessWebsocket"), service=SERVICE)

DEFAULT_CONNECTIONS_TABLE = "serverless-websocket-connections"
DEFAULT_MESSAGES_TABLE = "serverless-websocket-messages"
DEFAULT_DELIVERY_QUEUE = "serverless-websocket-delivery"
DEFAULT_OFFLINE_WEBSOCKET_PORT = "3001"
USER_INDEX = "user_id-index"
ROOM = "room"

# API Gateway closes every WebSocket connection after 2 hours, so an older row is stale.
CONNECTION_LIFETIME_SECONDS = 2 * 60 * 60
# API Gateway refuses to deliver a WebSocket message larger than 128 KB.
MAX_MESSAGE_BYTES = 128 * 1024
# Room kept in a history reply for everything around the messages ("with" is at most 128
# characters, 512 bytes), so that any message that was accepted also fits in one, alone.
HISTORY_ENVELOPE_BYTES = 1024
# json.dumps writes ", " between the messages of a history reply.
HISTORY_SEPARATOR_BYTES = 2
# Arrays and objects inside "content": far more than any chat message needs, far less than
# the ~1,000 levels at which Python's JSON encoder gives up (a deeper message could be stored
# but never sent back).
MAX_CONTENT_DEPTH = 64
# Python refuses to turn longer digit strings into ints (sys.get_int_max_str_digits()).
MAX_INTEGER_DIGITS = 4300
# Posts run in parallel so that one slow connection does not delay the others; bounded so
# that a large room does not mean one thread (and one socket) per connection.
BROADCAST_CONCURRENCY = int(os.environ.get("BROADCAST_CONCURRENCY", "32"))
# Rooms up to this many connections are posted to by sendMessage itself; larger ones go to the
# delivery workers through SQS (README: "Two delivery paths" says how this was chosen).
FANOUT_THRESHOLD = int(os.environ.get("FANOUT_THRESHOLD", "200"))
# Connection ids per SQS message (one job); a worker gets up to `batchSize` jobs at a time.
DELIVERY_BATCH_SIZE = int(os.environ.get("DELIVERY_BATCH_SIZE", "500"))
# Posts per second that all delivery workers together may make (API Gateway's account limit
# is 10,000 requests/s for every API and @connections call in the account and region), and
# how many workers run at once (the SQS event source's maximumConcurrency): each worker posts
# at most POSTING_BUDGET_PER_SECOND / DELIVERY_CONCURRENCY a second.
POSTING_BUDGET_PER_SECOND = float(os.environ.get("POSTING_BUDGET_PER_SECOND", "5000"))
DELIVERY_CONCURRENCY = int(os.environ.get("DELIVERY_CONCURRENCY", "5"))
# Throttled posts are tried this many times in all within one invocation, then (by workers)
# queued again; a job is tried MAX_DELIVERY_ATTEMPTS times before its failures are given up.
INLINE_THROTTLE_ROUNDS = 2
WORKER_THROTTLE_ROUNDS = 4
MAX_DELIVERY_ATTEMPTS = 4
# A worker starts a job only with this much time left, so it never stops half-way through.
WORKER_RESERVE_MS = 15_000
# SendMessageBatch: at most 256 KiB for all its messages together.
SQS_BATCH_BYTES = 256 * 1024
# Every AWS call gives up well inside API Gateway's 29 s integration limit, so the client
# gets a clear 5xx from us instead of a timeout (botocore's defaults are 60 s per read).
AWS_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
# What a failed AWS call raises: service errors (ClientError) and everything botocore raises
# before an answer arrives (BotoCoreError: no connection, timeouts, no credentials).
AWS_ERRORS = (BotoCoreError, ClientError)

# Tokens: HS256 only (so "none" and RS/HS confusion are refused), "exp" and "sub" required.
TOKEN_ALGORITHMS = ["HS256"]
TOKEN_LEEWAY_SECONDS = 30
# The secret is re-read from SSM this often, so a rotated secret takes effect without a deploy;
# when a re-read fails (SSM throttled or down), the known secret is used for up to an hour.
SECRET_CACHE_SECONDS = 300
SECRET_MAX_STALENESS_SECONDS = 3600
# Parameter Store allows 40 GetParameter a second by default: after a deploy or a network blip,
# thousands of reconnecting clients start cold authorizers at once. Four attempts with
# botocore's jittered backoff (up to 2, 4, 8 s for throttling) spread them out instead of
# refusing valid users, and still end inside the 29 s API Gateway waits.
SSM_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 4})
# Per connection: at most MESSAGE_RATE_PER_SECOND messages a second on average and MESSAGE_BURST
# at once (sendMessage, sendDirectMessage and getRecentMessages together); 0 turns it off.
MESSAGE_RATE_PER_SECOND = float(os.environ.get("MESSAGE_RATE_PER_SECOND", "5"))
MESSAGE_BURST = int(os.environ.get("MESSAGE_BURST", "10"))
MAX_USER_ID_LENGTH = 128
# Letters and symbols to Unicode that show nothing: the Hangul fillers and the blank Braille
# pattern. Separators (Z*) and control, format, private-use, unassigned characters (C*) are
# refused by category.
INVISIBLE_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
USER_ID_RULE = f'1 to {MAX_USER_ID_LENGTH} visible characters, no spaces, no invisible characters, no "#"'

DEFAULT_HISTORY_LIMIT = 20
MAX_HISTORY_LIMIT = 100
MESSAGE_RETENTION_SECONDS = int(os.environ.get("MESSAGE_RETENTION_DAYS", "30")) * 24 * 60 * 60
CURSOR_PATTERN = re.compile(r"[0-9]{13}#[0-9a-f]{32}")

SEND_MESSAGE_EXAMPLE = '{"action": "sendMessage", "content": "..."}'
DIRECT_MESSAGE_EXAMPLE = '{"action": "sendDirectMessage", "to": "<user id>", "content": "..."}'
HISTORY_EXAMPLE = '{"action": "getRecentMessages", "with": "<user id>", "limit": 20}'

SENT, GONE, THROTTLED, FAILED = "sent", "gone", "throttled", "failed"
# What API Gateway answers when the account's request rate is exceeded (HTTP 429).
THROTTLING_CODES = frozenset({"LimitExceededException", "ThrottlingException", "TooManyRequestsException", "429"})

Response = dict[str, Any]


class BadMessage(ValueError):
    """A client sent something we cannot act on; the text is the reason shown to it."""

    def __init__(self, reason: str, status_code: int = 400) -> None:
        super().__init__(reason)
        self.status_code = status_code


class InvalidToken(ValueError):
    """The $connect request carries no usable token; the text goes to the log only."""


# --- observability -------------------------------------------------------------------------

# What an answer's status means, in the logs and the metrics.
OUTCOMES = {200: "accepted", 400: "rejected", 403: "rejected", 429: "rate_limited"}
OUTCOME_METRICS = {"accepted": "MessagesAccepted", "rejected": "MessagesRejected", "rate_limited": "MessagesRateLimited", "failed": "AwsErrors"}
# Routes whose answers count as messages (the rest only as errors).
MESSAGE_ROUTES = {"sendMessage", "sendDirectMessage", "getRecentMessages", "$default"}


def observed(entry_point: Callable[[dict, Any], Response]) -> Callable[[dict, Any], Response]:
    """One structured log line per invocation (route, connection, user, outcome) and its
    metrics, flushed in Embedded Metric Format: CloudWatch turns them into metrics, no API calls."""

    @functools.wraps(entry_point)
    def wrapper(event: dict, context: Any) -> Response:
        route = _start_invocation(event, context)
        started = time.perf_counter()
        try:
            response = entry_point(event, context)
            outcome = OUTCOMES.get(response["statusCode"], "failed")
            counted = route in MESSAGE_ROUTES and not (route == "getRecentMessages" and outcome == "accepted")
            if counted or outcome == "failed":
                metrics.add_metric(name=OUTCOME_METRICS[outcome], unit=MetricUnit.Count, value=1)
            logger.info("Handled", status_code=response["statusCode"], outcome=outcome, duration_ms=round((time.perf_counter() - started) * 1000, 1))
            return response
        finally:
            _flush_metrics()

    return wrapper


def _start_invocation(event: Any, context: Any, route: str | None = None) -> str | None:
    """Forget the last invocation's keys (containers are reused) and set this one's."""
    request = (event.get("requestContext") if isinstance(event, dict) else None) or {}
    route = route or request.get("routeKey")
    logger.clear_state()
    logger.append_keys(
        route=route,
        connection_id=request.get("connectionId"),
        user=_user_id(event) if isinstance(event, dict) else None,
        request_id=getattr(context, "aws_request_id", None),
    )
    return route


def _refused(method_arn: str) -> dict[str, Any]:
    metrics.add_metric(name="ConnectionsRefused", unit=MetricUnit.Count, value=1)
    logger.info("Handled", outcome="denied")
    return _policy("anonymous", "Deny", method_arn)


def count_outcomes(outcomes: dict[str, str]) -> None:
    for outcome, count in _summary(outcomes).items():
        if count:
            metrics.add_metric(name=DELIVERY_METRICS[outcome], unit=MetricUnit.Count, value=count)


DELIVERY_METRICS = {SENT: "DeliveriesSent", GONE: "DeliveriesGone", THROTTLED: "DeliveriesThrottled", FAILED: "DeliveriesFailed"}


def _flush_metrics() -> None:
    if metrics.metric_set:
        metrics.flush_metrics()


# --- entry points --------------------------------------------------------------------------


def authorize(event: dict, context: Any) -> dict[str, Any]:
    """$connect REQUEST authorizer: allow the connection only with a valid JWT.

    A Deny policy (API Gateway answers 403) rather than raising "Unauthorized", because
    serverless-offline turns a raised error into a 500 but honours a Deny the same way AWS does.
    """
    _start_invocation(event, context, "$connect authorizer")
    method_arn = event.get("methodArn", "*")
    try:
        user_id = verify_token(request_token(event), jwt_secret())
    except InvalidToken as error:
        logger.info("Refused connection: %s", error)
        return _refused(method_arn)
    except AWS_ERRORS:
        logger.exception("Could not read the token secret; refusing the connection")
        metrics.add_metric(name="AwsErrors", unit=MetricUnit.Count, value=1)
        return _refused(method_arn)
    finally:
        _flush_metrics()
    logger.append_keys(user=user_id)
    logger.info("Handled", outcome="allowed")
    return _policy(user_id, "Allow", method_arn, {"userId": user_id})


def ping(event: dict, context: Any) -> Response:
    """GET /ping: a health check that touches nothing else. Plain text: "PONG!" is not JSON,
    and API Gateway's proxy integration would otherwise label it application/json."""
    return {**_response(200, "PONG!"), "headers": {"Content-Type": "text/plain; charset=utf-8"}}


@observed
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
            handle_connect(connections_table(), connection_id, _request_epoch_seconds(request), _user_id(event))
            return _response(200, "Connect successful.")
        handle_disconnect(connections_table(), connection_id)
        return _response(200, "Disconnect successful.")
    except AWS_ERRORS:
        logger.exception("Could not %s connection %s", event_type.lower(), connection_id)
        return _response(500, f"{event_type.capitalize()} failed.")


@observed
def default_message(event: dict, context: Any) -> Response:
    """$default: any frame whose action matches no route (or that is not JSON at all)."""
    return _response(400, "Unrecognized WebSocket action.")


@observed
def send_message(event: dict, context: Any) -> Response:
    """sendMessage: store the message in the room's history, then broadcast it to everyone."""
    started = time.perf_counter()
    try:
        request = parse_request(event.get("body"), SEND_MESSAGE_EXAMPLE)
        message = new_message(require_content(request), sender=_user_id(event))
        payload = encode_delivery(message)
        table = connections_table()
        enforce_rate_limit(table, _connection_id(event))
        store_message(messages_table(), ROOM, message)
        summary = broadcast(table, management_endpoint(event), iter_connection_ids(table), payload, message)
    except BadMessage as error:
        return _rejected(event, error)
    except AWS_ERRORS:
        logger.exception("Broadcast from %s failed", _connection_id(event))
        return _response(500, "Message could not be sent.")
    metrics.add_metric(name="BroadcastDuration", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000)
    logger.info("Broadcast from %s", _connection_id(event), **summary)
    return _response(200, "Message sent to all connections.")


@observed
def send_direct_message(event: dict, context: Any) -> Response:
    """sendDirectMessage: store it in the pair's history, then deliver it to both users' other
    connections; the sender learns whether the recipient got it live."""
    sender = _user_id(event)
    recipient = None
    try:
        if sender is None:
            raise BadMessage("Direct messages need a signed-in connection: connect with a token.", 403)
        request = parse_request(event.get("body"), DIRECT_MESSAGE_EXAMPLE)
        recipient = require_user_id(request.get("to"), "to")
        if recipient == sender:
            raise BadMessage("You cannot send a direct message to yourself.")
        message = new_message(require_content(request), sender=sender, to=recipient)
        payload = encode_delivery(message)
        table = connections_table()
        enforce_rate_limit(table, _connection_id(event))
        store_message(messages_table(), dm_conversation(sender, recipient), message)
        recipient_ids = list(iter_user_connection_ids(table, recipient))
        this_connection = _connection_id(event)
        own_ids = [cid for cid in iter_user_connection_ids(table, sender) if cid != this_connection]
        outcomes = post_to_connections(table, management_client(management_endpoint(event)), recipient_ids + own_ids, payload)
    except BadMessage as error:
        return _rejected(event, error)
    except AWS_ERRORS:
        logger.exception("Direct message from %s to %s failed", sender, recipient)
        return _response(500, "Direct message could not be sent.")
    logger.info("Direct message from %s to %s", sender, recipient, **_summary(outcomes))
    if any(outcomes[cid] == SENT for cid in recipient_ids):
        return _response(200, f"Direct message delivered to {recipient}.")
    return _response(200, f"{recipient} is not connected: the message was stored and will be in their history.")


@observed
def get_recent_messages(event: dict, context: Any) -> Response:
    """getRecentMessages: the last N messages of the room or of one of the requester's own
    direct conversations, oldest first, sent back to the requester only."""
    requester = _user_id(event)
    conversation = ROOM
    now = time.time()
    try:
        request = parse_request(event.get("body"), HISTORY_EXAMPLE)
        other = request.get("with")
        if other is not None:
            if requester is None:
                raise BadMessage("Direct message history needs a signed-in connection: connect with a token.", 403)
            other = require_user_id(other, "with")
            if other == requester:
                raise BadMessage('You have no direct conversation with yourself: leave out "with" for the room.')
        # The conversation is derived from the requester's own identity: nobody can name
        # another pair's conversation.
        conversation = dm_conversation(requester, other) if other else ROOM
        limit = parse_limit(request.get("limit"))
        before = parse_cursor(request.get("before"))
        enforce_rate_limit(connections_table(), _connection_id(event))
        items, more = load_recent(messages_table(), conversation, limit, before, now)
    except BadMessage as error:
        return _rejected(event, error)
    except AWS_ERRORS:
        logger.exception("History of %s for %s failed", conversation, _connection_id(event))
        return _response(500, "History could not be loaded.")
    return _response(200, encode_history(other, items, more, now))


# --- tokens --------------------------------------------------------------------------------


def request_token(event: dict) -> str:
    """The token from ?token=... (browsers cannot set WebSocket headers) or Authorization: Bearer."""
    token = (event.get("queryStringParameters") or {}).get("token")
    if token:
        return token
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    scheme, _, credentials = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    raise InvalidToken("no token in the query string or an Authorization: Bearer header")


def verify_token(token: str, secret: str) -> str:
    """The user id (`sub`) of a valid token, or InvalidToken saying why not."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=TOKEN_ALGORITHMS,
            leeway=TOKEN_LEEWAY_SECONDS,
            options={"require": ["exp", "sub"]},
        )
    except (jwt.InvalidTokenError, UnicodeError) as error:  # a lone surrogate cannot even be encoded
        raise InvalidToken(f"{type(error).__name__}: {error}") from None
    user_id = normalize_user_id(claims["sub"])
    if user_id is None:
        raise InvalidToken("the token's sub is not a valid user id")
    return user_id


# Parameter name -> (secret, when it was read): one entry per container.
_secrets: dict[str, tuple[str, float]] = {}


def jwt_secret() -> str:
    """The signing secret from SSM, cached per container for SECRET_CACHE_SECONDS; a secret
    already known is kept (for SECRET_MAX_STALENESS_SECONDS) when a re-read fails, so an SSM
    outage or throttling does not lock out users."""
    name = os.environ.get("JWT_SECRET_PARAMETER", "")
    if not name:
        raise InvalidToken("JWT_SECRET_PARAMETER is not set: no secret to verify tokens with")
    now = _now()
    known = _secrets.get(name)
    if known and now - known[1] < SECRET_CACHE_SECONDS:
        return known[0]
    try:
        secret = ssm_client().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except AWS_ERRORS:
        if known and now - known[1] < SECRET_MAX_STALENESS_SECONDS:
            logger.warning("Could not refresh the token secret; using the one read %d s ago", now - known[1], exc_info=True)
            return known[0]
        raise
    _secrets[name] = (secret, now)
    return secret


def _now() -> float:
    return time.time()


@lru_cache(maxsize=None)
def ssm_client() -> Any:
    return boto3.client("ssm", config=SSM_CLIENT_CONFIG)


def _policy(principal_id: str, effect: str, resource: str, context: dict[str, str] | None = None) -> dict[str, Any]:
    policy: dict[str, Any] = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context:
        policy["context"] = context
    return policy


# --- connections table ---------------------------------------------------------------------


@lru_cache(maxsize=None)
def connections_table() -> Any:
    """The DynamoDB table, created once per container and reused on warm starts."""
    name = os.environ.get("CONNECTIONS_TABLE", DEFAULT_CONNECTIONS_TABLE)
    return boto3.resource("dynamodb", config=AWS_CLIENT_CONFIG).Table(name)


def handle_connect(table: Any, connection_id: str, now: int, user_id: str | None = None) -> None:
    """Store the connection with a TTL, so rows that $disconnect never removed expire."""
    item: dict[str, Any] = {"connection_id": connection_id, "connected_at": now, "ttl": now + CONNECTION_LIFETIME_SECONDS}
    if user_id is not None:
        item["user_id"] = user_id  # anonymous rows stay out of the sparse user index
    table.put_item(Item=item)


def handle_disconnect(table: Any, connection_id: str) -> None:
    """Delete the row; deleting a row that is already gone is not an error."""
    table.delete_item(Key={"connection_id": connection_id})


def enforce_rate_limit(table: Any, connection_id: str | None) -> None:
    """GCRA, the token bucket as one number per connection row: `tat`, the time (ms) at which
    the connection's bucket is full again. One conditional write per message, no read: the
    first write applies to an idle connection, the second to one within its burst; when both
    conditions fail the connection is over its limit (or has no row, and is not limited)."""
    if MESSAGE_RATE_PER_SECOND <= 0 or not connection_id:
        return
    interval = max(1, round(1000 / MESSAGE_RATE_PER_SECOND))
    now = int(time.time() * 1000)
    key = {"connection_id": connection_id}
    attempts = (
        ("SET tat = :next", "attribute_exists(connection_id) AND (attribute_not_exists(tat) OR tat <= :now)",
         {":next": now + interval, ":now": now}),
        ("SET tat = tat + :interval", "attribute_exists(connection_id) AND tat <= :limit",
         {":interval": interval, ":limit": now + (MESSAGE_BURST - 1) * interval}),
    )
    for update, condition, values in attempts:
        try:
            table.update_item(Key=key, UpdateExpression=update, ConditionExpression=condition, ExpressionAttributeValues=values)
            return
        except table.meta.client.exceptions.ConditionalCheckFailedException:
            continue
    if "Item" not in table.get_item(Key=key, ProjectionExpression="connection_id"):
        return  # no row (already pruned, or an event from a test): nothing to limit
    raise BadMessage(RATE_LIMITED, 429)


RATE_LIMITED = (
    f"Too many messages: at most {MESSAGE_RATE_PER_SECOND:g} a second ({MESSAGE_BURST} at once) per connection. "
    "This one was not sent; wait a moment."
)


def iter_connection_ids(table: Any) -> Iterator[str]:
    """Every stored connection id, across all Scan pages (a page stops at 1 MB)."""
    for item in _all_pages(table.scan, ProjectionExpression="connection_id"):
        yield item["connection_id"]


def iter_user_connection_ids(table: Any, user_id: str) -> Iterator[str]:
    """The open connections of one user: a Query on the user index, never a Scan."""
    for item in _all_pages(table.query, IndexName=USER_INDEX, KeyConditionExpression=Key("user_id").eq(user_id)):
        yield item["connection_id"]


def _all_pages(operation: Any, **kwargs: Any) -> Iterator[dict[str, Any]]:
    """The items of a Scan or Query, following LastEvaluatedKey to the last page."""
    while True:
        page = operation(**kwargs)
        yield from page.get("Items", [])
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- requests ------------------------------------------------------------------------------


def parse_request(body: str | None, example: str) -> dict[str, Any]:
    """The frame as a JSON object, or a BadMessage that shows the sender an example."""
    if not isinstance(body, str) or not body.strip():
        raise BadMessage(f"Message body is empty: send {example}.")
    try:
        request = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except BadMessage:
        raise
    except RecursionError:
        raise BadMessage(TOO_DEEP) from None
    except ValueError:
        raise BadMessage("Message body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise BadMessage(f"Message body must be a JSON object like {example}.")
    return request


TOO_DEEP = f'Message is nested too deeply: "content" may have at most {MAX_CONTENT_DEPTH} levels of arrays and objects.'
NOT_FINITE = "Message has a number that is not finite (NaN, Infinity, or too large for a double such as 1e400)."


def _refuse_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity, which are not JSON: json.dumps would write them back
    # bare, and a browser's JSON.parse fails on the broadcast and on every history page after.
    raise BadMessage(NOT_FINITE)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadMessage(NOT_FINITE)
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise BadMessage(f"Message has a number with more than {MAX_INTEGER_DIGITS} digits.")
    return int(text)


def require_content(request: dict[str, Any]) -> Any:
    content = request.get("content")
    if content is None:
        raise BadMessage('Message has no "content" (it is missing or null).')
    if nesting_depth(content, MAX_CONTENT_DEPTH) > MAX_CONTENT_DEPTH:
        raise BadMessage(TOO_DEEP)
    return content


def nesting_depth(value: Any, stop_above: int) -> int:
    """Levels of arrays and objects in a parsed JSON value, counted without recursion (a value
    can be nearly as deep as the parser allows); stops early once past `stop_above`."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > stop_above:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest


def require_user_id(value: Any, field: str) -> str:
    user_id = normalize_user_id(value)
    if user_id is None:
        raise BadMessage(f'"{field}" must be a user id: {USER_ID_RULE}.')
    return user_id


def normalize_user_id(value: Any) -> str | None:
    """The id in NFC, so the two spellings of "가" (one code point, or two jamo) are one user;
    None if it is not a valid user id."""
    if not isinstance(value, str):
        return None
    user_id = unicodedata.normalize("NFC", value)
    return user_id if is_valid_user_id(user_id) else None


def is_valid_user_id(value: Any) -> bool:
    """An id as stored: NFC, 1-128 characters that all show, no "#" (ids are part of DynamoDB
    keys: "dm#alice#bob"). Lookalikes made of blanks or invisible characters cannot exist."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_USER_ID_LENGTH
        and "#" not in value
        and unicodedata.is_normalized("NFC", value)
        and not unicodedata.category(value[0]).startswith("M")  # no bare combining mark first
        and all(_is_visible(character) for character in value)
    )


def _is_visible(character: str) -> bool:
    return unicodedata.category(character)[0] not in "ZC" and character not in INVISIBLE_CHARACTERS


def parse_limit(value: Any) -> int:
    if value is None:
        return DEFAULT_HISTORY_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HISTORY_LIMIT:
        raise BadMessage(f'"limit" must be a whole number from 1 to {MAX_HISTORY_LIMIT}.')
    return value


def parse_cursor(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not CURSOR_PATTERN.fullmatch(value):
        raise BadMessage('"before" must be the "before" value of an earlier history reply.')
    return value


# --- messages ------------------------------------------------------------------------------


def new_message(content: Any, sender: str | None, to: str | None = None) -> dict[str, Any]:
    """A message with its identity: a unique id and the time it was sent."""
    message: dict[str, Any] = {"content": content, "id": uuid.uuid4().hex, "sent_at_ms": int(time.time() * 1000)}
    if sender is not None:
        message["sender"] = sender
    if to is not None:
        message["to"] = to
    return message


def public_message(message: dict[str, Any], full: bool) -> dict[str, Any]:
    """What clients see. Anonymous live messages stay {"content": ...}, as in part 1."""
    if not full:
        return {"content": message["content"]}
    shown = {"content": message["content"], "sender": message.get("sender"), "sent_at": _iso(message["sent_at_ms"]), "id": message["id"]}
    if "to" in message:
        shown["to"] = message["to"]
    return shown


def encode_delivery(message: dict[str, Any]) -> bytes:
    """The exact bytes every recipient gets, within API Gateway's 128 KB message limit, both
    now and later, alone, in a history reply (the same budget encode_history applies)."""
    payload = _encode({"messages": [public_message(message, full="sender" in message)]})
    in_history = len(_encode(public_message(message, full=True))) + HISTORY_ENVELOPE_BYTES
    size = max(len(payload), in_history)
    if size > MAX_MESSAGE_BYTES:
        raise BadMessage(f"Message too large: {size} bytes with its envelope, the limit is {MAX_MESSAGE_BYTES}.")
    return payload


def encode_history(other: str | None, items: list[dict[str, Any]], more: bool, now: float) -> str:
    """The history reply: as many of the newest messages as fit in one 128 KB frame, oldest
    first, and a cursor for the older ones when there are any.

    A stored item that is expired or cannot be sent is passed over (and a broken one logged),
    never the reason the reply fails: the cursor still moves past it.
    """
    budget = room = MAX_MESSAGE_BYTES - HISTORY_ENVELOPE_BYTES
    shown: list[dict[str, Any]] = []
    consumed = 0
    for item in items:  # newest first
        entry = history_entry(item, now)
        if entry is not None:
            message, size = entry
            cost = size + (HISTORY_SEPARATOR_BYTES if shown else 0)
            if size > room:
                logger.warning("Skipped stored message %s: %d bytes never fit in a history reply", item["sort_key"], size)
            elif cost > budget:
                more = True  # it goes first on the next page
                break
            else:
                budget -= cost
                shown.append(message)
        consumed += 1
    # Older messages exist (or may) when the Query stopped at its Limit or some did not fit.
    cursor = items[consumed - 1]["sort_key"] if more and consumed else None
    document = {"history": {"with": other, "messages": shown[::-1], "before": cursor}}
    return _encode(document).decode("utf-8")


def history_entry(item: dict[str, Any], now: float) -> tuple[dict[str, Any], int] | None:
    """A stored item as a history entry and its encoded size; None if it has expired (DynamoDB
    deletes expired items only eventually) or cannot be encoded (logged)."""
    try:
        if "ttl" in item and int(item["ttl"]) <= now:
            return None
        message = public_message(stored_to_message(item), full=True)
        return message, len(_encode(message))
    except (KeyError, TypeError, ValueError, RecursionError) as error:
        logger.warning("Skipped stored message %s: %s: %s", item.get("sort_key"), type(error).__name__, error)
        return None


def _encode(document: Any) -> bytes:
    try:
        return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadMessage('Message "content" is not valid Unicode (it has a lone surrogate).') from None


# --- messages table ------------------------------------------------------------------------


@lru_cache(maxsize=None)
def messages_table() -> Any:
    name = os.environ.get("MESSAGES_TABLE", DEFAULT_MESSAGES_TABLE)
    return boto3.resource("dynamodb", config=AWS_CLIENT_CONFIG).Table(name)


def dm_conversation(user_a: str, user_b: str) -> str:
    """One conversation per pair, whoever writes first: the ids sorted."""
    first, second = sorted((user_a, user_b))
    return f"dm#{first}#{second}"


def store_message(table: Any, conversation: str, message: dict[str, Any]) -> None:
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
    table.put_item(Item=item)


def stored_to_message(item: dict[str, Any]) -> dict[str, Any]:
    message = {"content": json.loads(item["content_json"]), "id": item["id"], "sent_at_ms": int(item["sent_at_ms"])}
    for field in ("sender", "to"):
        if field in item:
            message[field] = item[field]
    return message


def load_recent(
    table: Any, conversation: str, limit: int, before: str | None, now: float
) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` items older than `before` and younger than the retention, newest first;
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
    page = table.query(**kwargs)
    return page.get("Items", []), "LastEvaluatedKey" in page


# --- delivery ------------------------------------------------------------------------------


def management_endpoint(event: dict) -> str:
    """Where to post to connections: the emulator offline; on AWS the API's own execute-api
    endpoint, which the template builds from the API id, region and partition suffix. Never
    the event's domainName: behind a custom domain that answers @connections with 403 ("No
    method found matching route"). The event's apiId is the fallback."""
    if os.environ.get("IS_OFFLINE"):
        port = os.environ.get("OFFLINE_WEBSOCKET_PORT", DEFAULT_OFFLINE_WEBSOCKET_PORT)
        return f"http://localhost:{port}"
    if os.environ.get("WEBSOCKET_API_ENDPOINT"):
        return os.environ["WEBSOCKET_API_ENDPOINT"]
    request = event["requestContext"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{request['apiId']}.execute-api.{region}.{suffix}/{request['stage']}"


@lru_cache(maxsize=None)
def management_client(endpoint: str) -> Any:
    """One client per endpoint, reused by every post and every warm invocation."""
    config = Config(
        max_pool_connections=BROADCAST_CONCURRENCY,
        connect_timeout=3,
        read_timeout=5,
        retries={"mode": "standard", "total_max_attempts": 3},
    )
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=config)


@lru_cache(maxsize=None)
def _post_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=BROADCAST_CONCURRENCY, thread_name_prefix="post")


def broadcast(table: Any, endpoint: str, connection_ids: Iterable[str], payload: bytes, message: dict[str, Any]) -> dict[str, int]:
    """Small rooms are posted to here, at once (the lowest latency); larger ones are cut into
    batches for the delivery workers, through SQS, so no room is bounded by one invocation."""
    ids = iter(connection_ids)
    first = list(itertools.islice(ids, FANOUT_THRESHOLD + 1))
    if len(first) <= FANOUT_THRESHOLD:
        return _summary(post_to_connections(table, management_client(endpoint), first, payload))
    batches = _batches(itertools.chain(first, ids), DELIVERY_BATCH_SIZE)
    return enqueue(DeliveryJob(message["id"], endpoint, payload, batch, sent_at_ms=message["sent_at_ms"]) for batch in batches)


def deliver(
    table: Any,
    client: Any,
    connection_ids: Iterable[str],
    payload: bytes,
    rounds: int = 1,
    pace: Pacer | None = None,
    deadline: float | None = None,
) -> dict[str, str]:
    """Post the payload to each connection concurrently; post again, after a backoff, to
    those API Gateway throttled (up to `rounds` times in all, while there is time); delete
    the ones that are gone. Returns each connection's outcome."""
    outcomes: dict[str, str] = {}
    pending = list(connection_ids)
    for attempt in range(rounds):
        results = dict(_post_pool().map(lambda cid: (cid, post_to_connection(client, cid, payload, pace)), pending))
        outcomes.update(results)
        pending = [cid for cid, outcome in results.items() if outcome == THROTTLED]
        wait = _backoff(attempt)
        if not pending or attempt + 1 == rounds or (deadline is not None and time.monotonic() + wait > deadline):
            break
        logger.warning("API Gateway throttled %d posts; retrying in %.2f s", len(pending), wait)
        time.sleep(wait)
    prune(table, [cid for cid, outcome in outcomes.items() if outcome == GONE])
    count_outcomes(outcomes)
    return outcomes


def post_to_connection(client: Any, connection_id: str, payload: bytes, pace: Pacer | None = None) -> str:
    """Post one message; report SENT, GONE (the client left), THROTTLED (API Gateway's
    account limit) or FAILED (anything else)."""
    if pace is not None:
        pace.wait()
    try:
        client.post_to_connection(ConnectionId=connection_id, Data=payload)
        return SENT
    except client.exceptions.GoneException:
        return GONE
    except ClientError as error:
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        # serverless-offline answers a bare HTTP 410 with no body: the code is just '410'.
        if status == 410:
            return GONE
        if status == 429 or error.response.get("Error", {}).get("Code") in THROTTLING_CODES:
            return THROTTLED
        logger.exception("Could not post to connection %s", connection_id)
        return FAILED
    except BotoCoreError:
        logger.exception("Could not post to connection %s", connection_id)
        return FAILED


def post_to_connections(table: Any, client: Any, connection_ids: Iterable[str], payload: bytes) -> dict[str, str]:
    """Inline posting, for a small room or a DM's few connections: at once, throttled posts
    retried in this invocation, the gone ones deleted."""
    return deliver(table, client, connection_ids, payload, rounds=INLINE_THROTTLE_ROUNDS)


def prune(table: Any, connection_ids: list[str]) -> None:
    """Delete the rows of connections that are gone, 25 to a request. A failure here is
    logged, not raised: the message was delivered, and the rows expire by TTL anyway."""
    if not connection_ids:
        return
    logger.info("Deleting %d gone connections", len(connection_ids))
    try:
        with table.batch_writer() as batch:
            for connection_id in connection_ids:
                batch.delete_item(Key={"connection_id": connection_id})
    except AWS_ERRORS:
        logger.exception("Could not delete %d gone connections", len(connection_ids))


class Pacer:
    """Spreads one container's posts to at most `rate` a second: the delivery workers' share
    of the account's posting budget (POSTING_BUDGET_PER_SECOND / DELIVERY_CONCURRENCY)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + self.interval
        if slot > now:
            time.sleep(slot - now)


@lru_cache(maxsize=None)
def worker_pacer() -> Pacer:
    return Pacer(POSTING_BUDGET_PER_SECOND / DELIVERY_CONCURRENCY)


def retry_delay_seconds(attempt: int) -> int:
    """How long a job's failed connections wait in the queue: 10 s, 20 s, 40 s (SQS: <= 900)."""
    return min(900, 5 * 2**attempt)


def _backoff(attempt: int) -> float:
    """Full jitter, as AWS recommends for throttling: a random wait up to 0.2 s, 0.4 s, 0.8 s..."""
    return random.uniform(0, min(2.0, 0.2 * 2**attempt))


# --- delivery workers (SQS) ----------------------------------------------------------------


class PoisonJob(ValueError):
    """An SQS record that is not a delivery job: it fails until it lands in the DLQ."""


class NotStarted(RuntimeError):
    """Too little time left to deliver this job: it goes back to the queue untouched."""


@dataclass(frozen=True)
class DeliveryJob:
    """One message to post to one batch of connections: the body of one SQS message."""

    message_id: str
    endpoint: str
    payload: bytes
    connections: tuple[str, ...]
    attempt: int = 1
    sent_at_ms: int = 0  # when the message was sent, for the DeliveryLag metric

    def to_body(self) -> str:
        # The payload as base64: SQS bodies may not hold every character JSON text can (U+FFFF).
        return json.dumps({
            "v": 1,
            "message_id": self.message_id,
            "endpoint": self.endpoint,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "connections": list(self.connections),
            "attempt": self.attempt,
            "sent_at_ms": self.sent_at_ms,
        })

    @classmethod
    def from_body(cls, body: str) -> DeliveryJob:
        try:
            document = json.loads(body)
            job = cls(
                message_id=str(document["message_id"]),
                endpoint=document["endpoint"],
                payload=base64.b64decode(document["payload"], validate=True),
                connections=tuple(document["connections"]),
                attempt=int(document["attempt"]),
                sent_at_ms=int(document.get("sent_at_ms", 0)),
            )
        except (ValueError, TypeError, KeyError, binascii.Error) as error:
            raise PoisonJob(f"not a delivery job: {type(error).__name__}: {error}") from None
        if not (isinstance(job.endpoint, str) and job.endpoint.startswith(("https://", "http://localhost:"))):
            raise PoisonJob(f"not a delivery job: bad endpoint {job.endpoint!r}")
        if not job.connections or not all(isinstance(cid, str) and cid for cid in job.connections):
            raise PoisonJob("not a delivery job: connections must be a list of ids")
        return job


_batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver_messages(event: dict, context: Any) -> dict[str, Any]:
    """The delivery worker: each SQS record is one message for one batch of connections.
    Powertools reports the records that failed, and SQS retries only those."""
    _start_invocation(event, context, "delivery worker")
    try:
        return process_partial_response(event=event, record_handler=deliver_record, processor=_batch_processor, context=context)
    finally:
        _flush_metrics()


def deliver_record(record: SQSRecord, lambda_context: Any = None) -> None:
    try:
        deliver_job(DeliveryJob.from_body(record.body), lambda_context)
    except PoisonJob as error:
        logger.error("Record %s (receive %s) fails: %s", record.message_id, record.attributes.approximate_receive_count, error)
        raise
    except NotStarted as error:
        logger.warning("Record %s goes back to the queue untouched: %s", record.message_id, error)
        raise
    except Exception:
        logger.exception("Record %s fails", record.message_id)
        raise


def deliver_job(job: DeliveryJob, lambda_context: Any = None) -> None:
    """Deliver one job. Once posting has started the record never fails (a retry of the whole
    record would post twice to the connections already served): the connections that failed
    are queued again, alone, as a new job."""
    started = time.perf_counter()
    deadline = None
    if lambda_context is not None:
        spare_ms = lambda_context.get_remaining_time_in_millis() - WORKER_RESERVE_MS
        if spare_ms < 0:
            raise NotStarted(f"only {spare_ms + WORKER_RESERVE_MS} ms left")
        deadline = time.monotonic() + spare_ms / 1000
    outcomes = deliver(
        connections_table(), management_client(job.endpoint), job.connections, job.payload,
        rounds=WORKER_THROTTLE_ROUNDS, pace=worker_pacer(), deadline=deadline,
    )
    failed = tuple(cid for cid, outcome in outcomes.items() if outcome in (FAILED, THROTTLED))
    logger.info("Delivery of %s (attempt %d)", job.message_id, job.attempt, **_summary(outcomes))
    metrics.add_metric(name="DeliveryJobDuration", unit=MetricUnit.Milliseconds, value=(time.perf_counter() - started) * 1000)
    if job.sent_at_ms:
        metrics.add_metric(name="DeliveryLag", unit=MetricUnit.Milliseconds, value=max(0, time.time() * 1000 - job.sent_at_ms))
    if failed:
        retry_failed(job, failed)


def retry_failed(job: DeliveryJob, failed: tuple[str, ...]) -> None:
    """Queue the failed connections again, after a delay that grows with each attempt."""
    if job.attempt >= MAX_DELIVERY_ATTEMPTS:
        logger.error("Gave up delivering %s to %d connections after %d attempts", job.message_id, len(failed), job.attempt)
        return
    retry = DeliveryJob(job.message_id, job.endpoint, job.payload, failed, job.attempt + 1, job.sent_at_ms)
    try:
        sqs_client().send_message(
            QueueUrl=delivery_queue_url(), MessageBody=retry.to_body(), DelaySeconds=retry_delay_seconds(job.attempt)
        )
    except AWS_ERRORS:
        logger.exception("Could not queue %s again for %d connections; they miss it", job.message_id, len(failed))


def enqueue(jobs: Iterable[DeliveryJob]) -> dict[str, int]:
    """Send the jobs to the delivery queue, up to 10 (and 256 KB) per SendMessageBatch, each
    batch as soon as it is full: the workers start on the first jobs while the rest of the
    room is still being read. Raises if any batch could not be sent."""
    sends: list[Future] = []
    bodies: list[str] = []
    size = jobs_sent = connections = 0
    for job in jobs:
        body = job.to_body()
        if len(bodies) == 10 or size + len(body) > SQS_BATCH_BYTES:
            sends.append(_post_pool().submit(_send_batch, bodies))
            bodies, size = [], 0
        bodies.append(body)
        size += len(body)
        jobs_sent += 1
        connections += len(job.connections)
    if bodies:
        sends.append(_post_pool().submit(_send_batch, bodies))
    for send in sends:
        send.result()
    return {"queued": connections, "jobs": jobs_sent}


def _send_batch(bodies: list[str]) -> None:
    entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies)]
    for _ in range(3):
        failed = sqs_client().send_message_batch(QueueUrl=delivery_queue_url(), Entries=entries).get("Failed", [])
        if not failed:
            return
        retry = {entry["Id"] for entry in failed if not entry.get("SenderFault")}
        if len(retry) < len(failed):
            raise ClientError({"Error": {"Code": "SendMessageBatchFailed", "Message": str(failed)}}, "SendMessageBatch")
        entries = [entry for entry in entries if entry["Id"] in retry]
    raise ClientError({"Error": {"Code": "SendMessageBatchFailed", "Message": "entries still failing"}}, "SendMessageBatch")


@lru_cache(maxsize=None)
def sqs_client() -> Any:
    return boto3.client("sqs", config=AWS_CLIENT_CONFIG)


@lru_cache(maxsize=None)
def delivery_queue_url() -> str:
    """Looked up by name once per container: offline, a queue URL in the environment cannot be
    built from the template (serverless-offline leaves Ref unresolved)."""
    name = os.environ.get("DELIVERY_QUEUE_NAME", DEFAULT_DELIVERY_QUEUE)
    return sqs_client().get_queue_url(QueueName=name)["QueueUrl"]


def _batches(items: Iterable[str], size: int) -> Iterator[tuple[str, ...]]:
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch


# --- helpers -------------------------------------------------------------------------------


def _response(status_code: int, body: str) -> Response:
    return {"statusCode": status_code, "body": body}


def _connection_id(event: dict) -> str | None:
    return (event.get("requestContext") or {}).get("connectionId")


def _user_id(event: dict) -> str | None:
    """The user the $connect authorizer verified; API Gateway passes its context on every
    route of the connection. None for anonymous connections (no authorizer)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    user_id = authorizer.get("userId")
    return user_id if is_valid_user_id(user_id) else None


def _rejected(event: dict, error: BadMessage) -> Response:
    logger.info("Rejected message from %s: %s", _connection_id(event), error)
    return _response(error.status_code, str(error))


def _summary(outcomes: dict[str, str]) -> dict[str, int]:
    return {outcome: list(outcomes.values()).count(outcome) for outcome in (SENT, GONE, THROTTLED, FAILED)}


def _iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _request_epoch_seconds(request: dict) -> int:
    """API Gateway gives milliseconds; DynamoDB TTL wants seconds."""
    millis = request.get("connectedAt") or request.get("requestTimeEpoch")
    return int(millis) // 1000 if millis else int(time.time())
