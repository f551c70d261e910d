"""API Gateway's side of every entry point: what its events say (who is calling, on which
connection) and the replies it expects, with one log line and the metrics per invocation.

Every route is answered, whatever happens: its reply, a refusal (chat/errors.py), or a 500 when
AWS failed or anything unexpected was raised. A frame with a `ref` gets exactly one JSON reply
carrying it (frames.with_ref / frames.refusal_with_ref); a frame without one is answered in the
plain form clients have always had."""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable, Iterator
from typing import Any

from chat import frames, ratelimit, sessions, tokens
from chat.aws import AWS_ERRORS
from chat.callers import caller, connection_id, user_id
from chat.errors import Refusal
from chat.requests import read_ref
from chat.telemetry import count, flush_metrics, logger

Response = dict[str, Any]
JSON = "application/json; charset=utf-8"

# What an answer's status means, in the logs and the metrics.
OUTCOMES = {200: "accepted", 400: "rejected", 401: "rejected", 403: "rejected", 410: "rejected", 429: "rate_limited"}
OUTCOME_METRICS = {
    "accepted": "MessagesAccepted",
    "rejected": "MessagesRejected",
    "rate_limited": "MessagesRateLimited",
    "failed": "AwsErrors",
}
# Routes whose answers count as messages (the rest only as errors).
MESSAGE_ROUTES = {"sendMessage", "sendDirectMessage", "getRecentMessages", "$default"}


def lifecycle_event(event: dict[str, Any]) -> str | None:
    """CONNECT or DISCONNECT for a connection's $connect or $disconnect; None for anything else."""
    request = event.get("requestContext") or {}
    return request.get("eventType") if request.get("connectionId") else None


def connected_at(event: dict[str, Any]) -> int:
    """When the connection opened, in epoch seconds: API Gateway gives milliseconds, DynamoDB
    TTL wants seconds."""
    request = event.get("requestContext") or {}
    millis = request.get("connectedAt") or request.get("requestTimeEpoch")
    return int(millis) // 1000 if millis else int(time.time())


def with_subprotocol(event: dict[str, Any], reply: Response) -> Response:
    """$connect's answer selects our subprotocol when the client offered it (with its token as
    another: chat/tokens.py), as the WebSocket handshake requires; API Gateway passes the header
    on ("Set up a $connect route that requires a WebSocket subprotocol")."""
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    if reply.get("statusCode") == 200 and tokens.SUBPROTOCOL in tokens.subprotocols(
        headers.get("sec-websocket-protocol")
    ):
        return {**reply, "headers": {"Sec-WebSocket-Protocol": tokens.SUBPROTOCOL}}
    return reply


def unrecognized_event(event: dict[str, Any]) -> Response:
    request = event.get("requestContext") or {}
    logger.warning("Unrecognized eventType %s for connection %s", request.get("eventType"), request.get("connectionId"))
    return response(500, "Unrecognized eventType.")


def response(status_code: int, body: str) -> Response:
    return {"statusCode": status_code, "body": body}


def json_response(status_code: int, document: dict[str, Any]) -> Response:
    """An HTTP API answer: a JSON document, labelled as one."""
    return {**response(status_code, frames.encode(document).decode("utf-8")), "headers": {"Content-Type": JSON}}


def signed_caller(event: dict[str, Any]) -> str | None:
    """The ARN of the IAM principal that signed an HTTP request (AWS_IAM), None if unsigned."""
    identity = (event.get("requestContext") or {}).get("identity") or {}
    arn = identity.get("userArn")
    return arn if isinstance(arn, str) and arn else None


def answer(
    event: dict[str, Any],
    work: Callable[[], frames.Reply],
    failure: str,
    what: str,
    charge: Callable[[], None] = lambda: None,
) -> Response:
    """Charge the frame, then run a route's work and turn its outcome into the reply: its
    document or text (200; None: nothing is sent back), the refusal (its status), or `failure`
    (500) when AWS failed or anything else was raised, with the traceback logged as "<what> from
    <connection> failed". A frame with a `ref` is answered as one JSON reply carrying it."""
    found = read_ref(event.get("body"))
    ref = found if isinstance(found, str) else None
    json_reply = found is not None
    try:
        charge()
        if isinstance(found, Refusal):
            raise found
        reply = work()
    except Refusal as refusal:
        logger.info("Rejected message from %s: %s", connection_id(event), refusal, code=refusal.code.name)
        return _refused(refusal, json_reply, ref)
    except AWS_ERRORS:
        logger.exception("%s from %s failed", what, connection_id(event))
        return _refused(Refusal("unavailable", failure), json_reply, ref)
    except Exception:  # a bug: still answered (a route left without an answer looks like a hang)
        logger.exception("%s from %s failed unexpectedly", what, connection_id(event))
        count("UnexpectedErrors")
        return _refused(Refusal("internal", failure), json_reply, ref)
    if reply is None:
        return {"statusCode": 200}
    body = frames.with_ref(ref, reply) if json_reply else frames.reply_body(reply)
    return response(200, body or "")


def _refused(refusal: Refusal, json_reply: bool, ref: str | None) -> Response:
    return response(refusal.status, frames.refusal_with_ref(ref, refusal) if json_reply else refusal.text)


def route(
    failure: str, what: str, budget: Callable[[str | None, str | None], None] = ratelimit.enforce
) -> Callable[[Callable[[dict[str, Any], Any], frames.Reply]], Callable[[dict[str, Any], Any], Response]]:
    """A WebSocket route's entry point from the function that does its work and returns what
    the sender is answered: observed; every frame refused if the connection's token has expired,
    and charged to the sender's rate limit before anything else (a refused frame costs as much
    as an accepted one: a flood of junk is a flood; `budget`: which, the messages' unless said);
    answered as `answer` does."""

    def decorate(work: Callable[[dict[str, Any], Any], frames.Reply]) -> Callable[[dict[str, Any], Any], Response]:
        @observed
        @functools.wraps(work)
        def entry_point(event: dict[str, Any], context: Any) -> Response:
            return answer(event, lambda: work(event, context), failure, what, charge=lambda: _charged(event, budget))

        return entry_point

    return decorate


def _charged(event: dict[str, Any], budget: Callable[[str | None, str | None], None]) -> None:
    """A frame on a connection whose token has expired is refused (and the connection closed);
    any other frame is charged to the sender's rate limit (`budget`)."""
    sessions.require_live(caller(event))
    budget(user_id(event), connection_id(event))


def observed(entry_point: Callable[[dict[str, Any], Any], Response]) -> Callable[[dict[str, Any], Any], Response]:
    """One structured log line per invocation of a WebSocket route (route, connection, user,
    status, outcome, duration) and its metrics, flushed when it ends."""

    @functools.wraps(entry_point)
    def wrapper(event: dict[str, Any], context: Any) -> Response:
        with invocation(event, context) as route:
            started = time.perf_counter()
            reply = entry_point(event, context)
            outcome = OUTCOMES.get(reply["statusCode"], "failed")
            counted = route in MESSAGE_ROUTES and not (route == "getRecentMessages" and outcome == "accepted")
            if counted or outcome == "failed":
                count(OUTCOME_METRICS[outcome])
            logger.info(
                "Handled",
                status_code=reply["statusCode"],
                outcome=outcome,
                duration_ms=round((time.perf_counter() - started) * 1000, 1),
            )
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
