"""The app's backend publishes (POST /publish, IAM-signed): a batch of up to 100 messages, each to
a channel, a user (a direct message from `sender`) or the room, stored and delivered as a client's
would be (chat/publisher.py), each answered on its own. The backend is trusted: no membership,
no token rules; `sender` is whoever it says, under the user id rules.

Messages to one conversation are stored in the order given; different conversations are handled
at once. A batch is not a transaction: a retry of the whole request with the same
clientMessageIds stores nothing twice. Room and channel messages go through the delivery workers
(paced to the posting budget, whatever their audience); direct messages are posted at once, so
the result can say whether the recipient got it live.
"""

from __future__ import annotations

import base64
import binascii
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

from chat import aws, delivery, frames, history, publisher
from chat.errors import Refusal
from chat.requests import parse_channel, parse_client_message_id, parse_request, require_content, require_user_id
from chat.telemetry import count, logger

MAX_MESSAGES = 100
MAX_BODY_BYTES = 1024 * 1024
# Conversations handled at once in one request (each its messages in order).
CONVERSATIONS_AT_ONCE = 8
# No message is started with less than this left of the invocation: it is answered "unavailable"
# (send it again), never left half done when Lambda ends the invocation.
RESERVE_MS = 5_000
PUBLISH_EXAMPLE = '{"messages": [{"channel": "<name>", "sender": "<user id>", "content": "..."}]}'
EXACTLY_ONE = 'Each message names exactly one of "channel", "to" or "room": true.'
NOT_TRIED = "Not tried: the request ran out of time. Send it again (a clientMessageId makes that safe)."


@dataclass(frozen=True)
class Outgoing:
    """One message of a batch, checked: where it goes, and the message to store."""

    target: publisher.Target
    named: dict[str, Any]
    message: dict[str, Any]


def publish(
    body: str | None, encoded: bool, caller: str | None, deadline: Callable[[], float]
) -> tuple[int, dict[str, Any]]:
    """(status, document) for one POST /publish: 200 with a result per message, or a refusal of
    the whole request. `caller`: the signed caller's ARN (None: unsigned); `deadline`: seconds
    left in the invocation."""
    try:
        if caller is None and not os.environ.get("IS_OFFLINE"):
            raise Refusal("forbidden", "POST /publish must be signed (AWS_IAM): the request carries no signed caller.")
        checked = _checked(_batch(body_text(body, encoded)))
    except Refusal as refusal:
        logger.info("Refused a publish from %s: %s", caller, refusal.text, extra={"code": refusal.code.name})
        return refusal.status, frames.error_document(refusal)
    endpoint = delivery.management_endpoint({})
    results: list[dict[str, Any] | None] = [None] * len(checked)
    groups: dict[str, list[int]] = {}
    for index, outgoing in enumerate(checked):
        if isinstance(outgoing, Outgoing):
            groups.setdefault(outgoing.target.conversation, []).append(index)
        else:
            results[index] = frames.error_document(outgoing)

    def run(indexes: list[int]) -> None:
        for index in indexes:  # one conversation: in the order given
            outgoing = checked[index]
            assert isinstance(outgoing, Outgoing)
            results[index] = _publish_one(outgoing, endpoint, deadline)

    list(_pool().map(run, groups.values()))
    answered = [result for result in results if result is not None]
    failed = sum(1 for result in answered if "error" in result)
    logger.info("Published", extra={"caller": caller or "local", "messages": len(answered), "failed": failed})
    count("MessagesPublished", len(answered) - failed)
    return 200, frames.publish_reply(answered, failed)


def body_text(body: str | None, encoded: bool) -> str:
    """The request's body as text, at most MAX_BODY_BYTES (413 beyond)."""
    raw: bytes
    if encoded:
        try:
            raw = base64.b64decode(body or "", validate=True)
        except (ValueError, binascii.Error):
            raise Refusal("bad_request", "The request body is not valid base64.") from None
    else:
        raw = (body or "").encode("utf-8", "surrogatepass")
    if len(raw) > MAX_BODY_BYTES:
        raise Refusal("payload_too_large", f"The request body is {len(raw)} bytes; at most {MAX_BODY_BYTES} are taken.")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise Refusal("bad_request", "The request body is not UTF-8 text.") from None


def _batch(text: str) -> list[Any]:
    request = parse_request(text, PUBLISH_EXAMPLE)
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise Refusal("bad_request", f'The body must have a non-empty "messages" list: {PUBLISH_EXAMPLE}')
    if len(messages) > MAX_MESSAGES:
        raise Refusal(
            "bad_request", f"At most {MAX_MESSAGES} messages a request, not {len(messages)}: send them in batches."
        )
    if not all(isinstance(message, dict) for message in messages):
        raise Refusal("bad_request", f'Every item of "messages" must be a JSON object like {PUBLISH_EXAMPLE[14:-2]}.')
    return messages


def _checked(messages: list[dict[str, Any]]) -> list[Outgoing | Refusal]:
    """Each message checked by the rules of sendMessage and sendDirectMessage, or why not."""
    found: list[Outgoing | Refusal] = []
    for request in messages:
        try:
            found.append(_outgoing(request))
        except Refusal as refusal:
            found.append(refusal)
    return found


def _outgoing(request: dict[str, Any]) -> Outgoing:
    named = [name for name in ("channel", "to", "room") if request.get(name) is not None]
    if len(named) != 1 or ("room" in named and request["room"] is not True):
        raise Refusal("bad_request", EXACTLY_ONE)
    sender = require_user_id(request.get("sender"), "sender")
    content = require_content(request)
    client_message_id = parse_client_message_id(request.get("clientMessageId"))
    channel = parse_channel(request.get("channel"))
    recipient = require_user_id(request["to"], "to") if "to" in named else None
    if recipient == sender:
        raise Refusal("bad_request", "You cannot send a direct message to yourself.")
    message = history.new_message(
        content, sender, channel=channel, to=recipient, client_message_id=client_message_id, origin="publish"
    )
    frames.check_size(message)
    if recipient is not None:
        return Outgoing(publisher.Target(pair=(sender, recipient)), {"to": recipient}, message)
    if channel is not None:
        return Outgoing(publisher.Target(channel=channel), {"channel": channel}, message)
    return Outgoing(publisher.Target(), {"room": True}, message)


def _publish_one(outgoing: Outgoing, endpoint: str, deadline: Callable[[], float]) -> dict[str, Any]:
    if deadline() * 1000 < RESERVE_MS:
        return frames.error_document(Refusal("unavailable", NOT_TRIED))
    sender = outgoing.message["sender"]
    try:
        published = publisher.publish(outgoing.target, outgoing.message, sender, endpoint, paced=True, source="publish")
    except Refusal as refusal:
        return frames.error_document(refusal)
    except aws.AWS_ERRORS:
        logger.exception("Publishing to %s failed", outgoing.target.conversation)
        return frames.error_document(Refusal("unavailable", "The message could not be stored: send it again."))
    except Exception:  # a bug: this message is answered, the others go on
        logger.exception("Publishing to %s failed unexpectedly", outgoing.target.conversation)
        count("UnexpectedErrors")
        return frames.error_document(Refusal("internal", "The message could not be published."))
    online = published.recipient_online if outgoing.target.pair is not None else None
    return frames.acknowledgement(
        outgoing.named, published.message, published.appended.duplicate, published.delivery, online
    )


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=CONVERSATIONS_AT_ONCE, thread_name_prefix="publish")


def seconds_left(lambda_context: Any) -> Callable[[], float]:
    """The time left in the invocation, read when asked (a minute without a context)."""
    if lambda_context is None or not hasattr(lambda_context, "get_remaining_time_in_millis"):
        started = time.monotonic()
        return lambda: 60.0 - (time.monotonic() - started)
    return lambda: float(lambda_context.get_remaining_time_in_millis()) / 1000
