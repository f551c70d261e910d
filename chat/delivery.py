"""Posting to connections through API Gateway's management API: many at once from a bounded
pool, throttled posts tried again after a backoff, each post bounded in time."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from chat import aws
from chat.telemetry import count, logger

DEFAULT_OFFLINE_WEBSOCKET_PORT = "3001"
# Posts run in parallel so that one slow connection does not delay the others; bounded so
# that a large room does not mean one thread (and one socket) per connection.
BROADCAST_CONCURRENCY = int(os.environ.get("BROADCAST_CONCURRENCY", "32"))
# Throttled posts are tried this many times in all within one invocation, inline.
INLINE_THROTTLE_ROUNDS = 3
# One post's own time: one attempt of at most 2 s to connect and 3 s to read the answer (API
# Gateway answers a post in milliseconds). botocore retries nothing: a post whose answer timed
# out (or a 5xx) may have landed, and a blind retry would send the frame twice. Throttled posts
# (429: they did not land) are tried again by deliver() itself, after a backoff, in time.
POST_CONNECT_TIMEOUT_SECONDS = 2.0
POST_READ_TIMEOUT_SECONDS = 3.0

SENT, GONE, THROTTLED, FAILED, UNSENT = "sent", "gone", "throttled", "failed", "unsent"
# The outcomes whose connections are queued for the workers to post to again (fanout.retry_failed).
RETRIABLE = frozenset({FAILED, THROTTLED})
OUTCOME_METRICS = {
    SENT: "DeliveriesSent",
    GONE: "DeliveriesGone",
    THROTTLED: "DeliveriesThrottled",
    FAILED: "DeliveriesFailed",
    UNSENT: "DeliveriesDeferred",
}
# What API Gateway answers when the account's request rate is exceeded (HTTP 429).
THROTTLING_CODES = frozenset({"LimitExceededException", "ThrottlingException", "TooManyRequestsException", "429"})


def management_endpoint(request_context: dict[str, Any]) -> str:
    """Where to post to connections: the emulator offline; on AWS the API's own execute-api
    endpoint, which the template builds from the API id, region and partition suffix. Never
    the event's domainName: behind a custom domain that answers @connections with 403 ("No
    method found matching route"). The event's apiId is the fallback."""
    if os.environ.get("IS_OFFLINE"):
        port = os.environ.get("OFFLINE_WEBSOCKET_PORT", DEFAULT_OFFLINE_WEBSOCKET_PORT)
        return f"http://localhost:{port}"
    if os.environ.get("WEBSOCKET_API_ENDPOINT"):
        return os.environ["WEBSOCKET_API_ENDPOINT"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"https://{request_context['apiId']}.execute-api.{region}.{suffix}/{request_context['stage']}"


@cache
def management_client(endpoint: str) -> Any:
    """One client per endpoint, reused by every post and every warm invocation."""
    return aws.with_error_classes(
        boto3.client("apigatewaymanagementapi", endpoint_url=endpoint, config=management_client_config())
    )


def management_client_config() -> Config:
    """Bounded posts, never retried by botocore (POST_READ_TIMEOUT_SECONDS says why)."""
    return Config(
        max_pool_connections=BROADCAST_CONCURRENCY,
        connect_timeout=POST_CONNECT_TIMEOUT_SECONDS,
        read_timeout=POST_READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": 1},
    )


@cache
def post_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=BROADCAST_CONCURRENCY, thread_name_prefix="post")


def post_to_connections(endpoint: str, connection_ids: Iterable[str], payload: bytes) -> dict[str, str]:
    """Inline posting, for a small room or a DM's few connections: at once, throttled posts
    retried in this invocation."""
    return deliver(endpoint, connection_ids, payload, rounds=INLINE_THROTTLE_ROUNDS)


def deliver(
    endpoint: str,
    connection_ids: Iterable[str],
    payload: bytes,
    rounds: int = 1,
    pace: Pacer | None = None,
    deadline: float | None = None,
) -> dict[str, str]:
    """Post the payload to each connection concurrently; post again, after a backoff, to
    those API Gateway throttled (up to `rounds` times in all, while there is time). Returns
    each connection's outcome: the caller forgets the ones that are gone (sessions.forget).

    `deadline` (time.monotonic()) is checked before every post, not every round: a post that
    would start after it is not made (UNSENT), so the caller can hand those on untouched."""
    client = management_client(endpoint)
    outcomes: dict[str, str] = {}
    pending = list(connection_ids)
    for attempt in range(rounds):
        results = dict(post_pool().map(lambda cid: (cid, post_in_time(client, cid, payload, pace, deadline)), pending))
        outcomes.update(results)
        pending = [cid for cid, outcome in results.items() if outcome == THROTTLED]
        wait = backoff(attempt)
        if not pending or attempt + 1 == rounds or (deadline is not None and time.monotonic() + wait > deadline):
            break
        logger.warning("API Gateway throttled %d posts; retrying in %.2f s", len(pending), wait)
        time.sleep(wait)
    for outcome, number in summary(outcomes).items():
        if number:
            count(OUTCOME_METRICS[outcome], number)
    return outcomes


def post_in_time(client: Any, connection_id: str, payload: bytes, pace: Pacer | None, deadline: float | None) -> str:
    """Post, unless the deadline has passed by the time this post's turn comes (checked
    before the pacer's wait, so a skipped post takes no slot of the budget)."""
    if deadline is not None and time.monotonic() >= deadline:
        return UNSENT
    if pace is not None:
        pace.wait()
    return post_to_connection(client, connection_id, payload)


def post_to_connection(client: Any, connection_id: str, payload: bytes) -> str:
    """Post one message; report SENT, GONE (the client left), THROTTLED (API Gateway's
    account limit) or FAILED (anything else)."""
    return _outcome(
        lambda: client.post_to_connection(ConnectionId=connection_id, Data=payload), client, connection_id, "post to"
    )


def get_connection(endpoint: str, connection_id: str) -> str:
    """GetConnection: SENT if API Gateway still has the connection, GONE if not (410)."""
    client = management_client(endpoint)
    return _outcome(lambda: client.get_connection(ConnectionId=connection_id), client, connection_id, "ask after")


def close(endpoint: str, connection_id: str) -> str:
    """DeleteConnection: API Gateway closes the connection (then runs $disconnect, best effort).
    SENT when it did, GONE when it was already closed."""
    client = management_client(endpoint)
    return _outcome(lambda: client.delete_connection(ConnectionId=connection_id), client, connection_id, "close")


def _outcome(call: Any, client: Any, connection_id: str, what: str) -> str:
    """One management API call's outcome: GoneException or a bare 410 before any ClientError."""
    try:
        call()
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
        logger.exception("Could not %s connection %s", what, connection_id)
        return FAILED
    except BotoCoreError:
        logger.exception("Could not %s connection %s", what, connection_id)
        return FAILED


def gone(outcomes: dict[str, str]) -> list[str]:
    """The connections that are gone (the client left without a $disconnect we saw)."""
    return [cid for cid, outcome in outcomes.items() if outcome == GONE]


def summary(outcomes: dict[str, str]) -> dict[str, int]:
    """How many connections had each outcome, for the log line (`unsent` only when any was)."""
    counts = {outcome: list(outcomes.values()).count(outcome) for outcome in (SENT, GONE, THROTTLED, FAILED)}
    unsent = list(outcomes.values()).count(UNSENT)
    return {**counts, UNSENT: unsent} if unsent else counts


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


def backoff(attempt: int) -> float:
    """Full jitter, as AWS recommends for throttling: a random wait up to 0.2 s, 0.4 s, 0.8 s..."""
    return random.uniform(0, min(2.0, 0.2 * 2**attempt))
