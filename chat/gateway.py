"""API Gateway's side of every entry point: what its events say (who is calling, on which
connection) and the replies it expects, with one log line and the metrics per invocation."""

from __future__ import annotations

import contextlib
import functools
import time
from typing import Any, Callable, Iterator

from chat import ratelimit
from chat.aws import AWS_ERRORS
from chat.callers import connection_id, user_id
from chat.requests import BadMessage
from chat.telemetry import count, flush_metrics, logger

Response = dict[str, Any]

# What an answer's status means, in the logs and the metrics.
OUTCOMES = {200: "accepted", 400: "rejected", 403: "rejected", 429: "rate_limited"}
OUTCOME_METRICS = {"accepted": "MessagesAccepted", "rejected": "MessagesRejected", "rate_limited": "MessagesRateLimited", "failed": "AwsErrors"}
# Routes whose answers count as messages (the rest only as errors).
MESSAGE_ROUTES = {"sendMessage", "sendDirectMessage", "getRecentMessages", "$default"}


def lifecycle_event(event: dict) -> str | None:
    """CONNECT or DISCONNECT for a connection's $connect or $disconnect; None for anything else."""
    request = event.get("requestContext") or {}
    return request.get("eventType") if request.get("connectionId") else None


def connected_at(event: dict) -> int:
    """When the connection opened, in epoch seconds: API Gateway gives milliseconds, DynamoDB
    TTL wants seconds."""
    request = event.get("requestContext") or {}
    millis = request.get("connectedAt") or request.get("requestTimeEpoch")
    return int(millis) // 1000 if millis else int(time.time())


def unrecognized_event(event: dict) -> Response:
    request = event.get("requestContext") or {}
    logger.warning("Unrecognized eventType %s for connection %s", request.get("eventType"), request.get("connectionId"))
    return response(500, "Unrecognized eventType.")


def response(status_code: int, body: str) -> Response:
    return {"statusCode": status_code, "body": body}


def answer(event: dict, work: Callable[[], str | None], failure: str, what: str) -> Response:
    """Run a route's work and turn its outcome into the reply: its text (200; None: nothing is
    sent back), the reason a request was refused (4xx), or `failure` (500) when AWS failed,
    with the traceback logged as "<what> from <connection> failed"."""
    try:
        text = work()
        return response(200, text) if text is not None else {"statusCode": 200}
    except BadMessage as error:
        logger.info("Rejected message from %s: %s", connection_id(event), error)
        return response(error.status_code, str(error))
    except AWS_ERRORS:
        logger.exception("%s from %s failed", what, connection_id(event))
        return response(500, failure)


def route(failure: str, what: str) -> Callable[[Callable[[dict, Any], str | None]], Callable[[dict, Any], Response]]:
    """A WebSocket route's entry point from the function that does its work and returns the
    text for the sender: observed, every frame charged to the sender's rate limit before
    anything else (a refused frame costs as much as an accepted one: a flood of junk is a
    flood), and answered as `answer` does."""

    def decorate(work: Callable[[dict, Any], str | None]) -> Callable[[dict, Any], Response]:
        @observed
        @functools.wraps(work)
        def entry_point(event: dict, context: Any) -> Response:
            return answer(event, lambda: _charged(event) or work(event, context), failure, what)

        return entry_point

    return decorate


def _charged(event: dict) -> None:
    ratelimit.enforce(user_id(event), connection_id(event))


def observed(entry_point: Callable[[dict, Any], Response]) -> Callable[[dict, Any], Response]:
    """One structured log line per invocation of a WebSocket route (route, connection, user,
    status, outcome, duration) and its metrics, flushed when it ends."""

    @functools.wraps(entry_point)
    def wrapper(event: dict, context: Any) -> Response:
        with invocation(event, context) as route:
            started = time.perf_counter()
            reply = entry_point(event, context)
            outcome = OUTCOMES.get(reply["statusCode"], "failed")
            counted = route in MESSAGE_ROUTES and not (route == "getRecentMessages" and outcome == "accepted")
            if counted or outcome == "failed":
                count(OUTCOME_METRICS[outcome])
            logger.info("Handled", status_code=reply["statusCode"], outcome=outcome, duration_ms=round((time.perf_counter() - started) * 1000, 1))
            return reply

    return wrapper


@contextlib.contextmanager
def invocation(event: Any, context: Any, route: str | None = None) -> Iterator[str | None]:
    """Forget the last invocation's log keys (containers are reused), set this one's, and
    flush its metrics at the end, whatever happens."""
    request = (event.get("requestContext") if isinstance(event, dict) else None) or {}
    route = route or request.get("routeKey")
    logger.clear_state()
    logger.append_keys(
        route=route,
        connection_id=request.get("connectionId"),
        user=user_id(event) if isinstance(event, dict) else None,
        request_id=getattr(context, "aws_request_id", None),
    )
    try:
        yield route
    finally:
        flush_metrics()
