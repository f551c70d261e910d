"""The Lambda entry points of a serverless WebSocket chat (API Gateway WebSocket API + Lambda +
DynamoDB): every function serverless.yml names, in the order a connection meets them.

Each takes its event apart, calls the `chat` package, and turns the outcome into the reply API
Gateway expects; the work itself lives in the package, one module per concern (chat/__init__.py
lists them). The same code runs on AWS and under serverless-offline with moto.
"""

from __future__ import annotations

from typing import Any

from chat import (
    backend,
    changes,
    channels,
    example_review,
    indicators,
    messaging,
    moderation,
    operators,
    ratelimit,
    reads,
    recovery,
    sessions,
    stream,
    sweeper,
    tokens,
    worker,
)
from chat.callers import caller
from chat.frames import Reply
from chat.gateway import (
    Response,
    answer,
    connected_at,
    invocation,
    json_response,
    lifecycle_event,
    observed,
    response,
    route,
    signed_caller,
    unrecognized_event,
    with_subprotocol,
)


def ping(event: dict[str, Any], context: Any) -> Response:
    """GET /ping: a health check that touches nothing else. Plain text: "PONG!" is not JSON,
    and API Gateway's proxy integration would otherwise label it application/json. It ends
    with a newline, as text does, so `curl` leaves the shell's prompt on a line of its own."""
    return {**response(200, "PONG!\n"), "headers": {"Content-Type": "text/plain; charset=utf-8"}}


def authorize(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """$connect REQUEST authorizer: allow the connection only with a valid JWT."""
    with invocation(event, context, "$connect authorizer"):
        return tokens.authorize(event)


@observed
def connection_manager(event: dict[str, Any], context: Any) -> Response:
    """$connect stores the connection, $disconnect forgets it."""
    event_type = lifecycle_event(event)
    if event_type == "CONNECT":
        return with_subprotocol(
            event,
            answer(
                event, lambda: sessions.open_session(caller(event), connected_at(event)), "Connect failed.", "Connect"
            ),
        )
    if event_type == "DISCONNECT":
        return answer(event, lambda: sessions.close_session(caller(event)), "Disconnect failed.", "Disconnect")
    return unrecognized_event(event)


@route(failure="Message could not be handled.", what="Unrecognized frame")
def default_message(event: dict[str, Any], context: Any) -> Reply:
    """$default: any frame whose action matches no route (or that is not JSON at all): refused,
    and charged to the sender's rate limit. Offline only, the heartbeat that a MOCK route
    answers on AWS: with nothing."""
    return messaging.unrecognized(event.get("body"))


@route(failure="Message could not be sent.", what="Broadcast")
def send_message(event: dict[str, Any], context: Any) -> Reply:
    """sendMessage: store the message as its conversation's next seq, then send it to everyone
    in the room, or to the members of its channel."""
    return messaging.send_message(caller(event), event.get("body"))


@route(failure="Direct message could not be sent.", what="Direct message")
def send_direct_message(event: dict[str, Any], context: Any) -> Reply:
    """sendDirectMessage: store it in the pair's history, then deliver it to both users."""
    return messaging.send_direct(caller(event), event.get("body"))


@route(failure="Message could not be edited.", what="Edit")
def edit_message(event: dict[str, Any], context: Any) -> Reply:
    """editMessage: the sender replaces a message's content; the change takes the next seq."""
    return changes.edit(caller(event), event.get("body"))


@route(failure="Message could not be deleted.", what="Delete")
def delete_message(event: dict[str, Any], context: Any) -> Reply:
    """deleteMessage: the sender or a moderator takes a message down; the change takes the next seq."""
    return changes.delete(caller(event), event.get("body"))


@route(failure="The ban could not be made.", what="Ban")
def ban(event: dict[str, Any], context: Any) -> Reply:
    """ban: a moderator keeps a user out of a channel, or out of the service, for a while."""
    return moderation.ban(caller(event), event.get("body"))


@route(failure="The ban could not be lifted.", what="Unban")
def unban(event: dict[str, Any], context: Any) -> Reply:
    """unban: a moderator lifts a ban before it ends."""
    return moderation.unban(caller(event), event.get("body"))


@route(failure="Conversations could not be loaded.", what="Conversations")
def get_conversations(event: dict[str, Any], context: Any) -> Reply:
    """getConversations: one's direct conversations, most recent first, each with its seq."""
    return recovery.conversations(caller(event), event.get("body"))


@route(failure="The read position could not be kept.", what="Read")
def mark_read(event: dict[str, Any], context: Any) -> Reply:
    """markRead: the user's read position in a conversation moves forward, on every device."""
    return reads.mark_read(caller(event), event.get("body"))


@route(failure="Typing could not be forwarded.", what="Typing", budget=ratelimit.enforce_typing)
def typing(event: dict[str, Any], context: Any) -> Reply:
    """typing: a channel's members or a DM's other user see that the user is typing."""
    return indicators.typing(caller(event), event.get("body"))


@route(failure="Could not join the channel.", what="Join")
def join(event: dict[str, Any], context: Any) -> Reply:
    """join: the connection gets a channel's messages from now on."""
    return channels.join(caller(event), event.get("body"))


@route(failure="Could not leave the channel.", what="Leave")
def leave(event: dict[str, Any], context: Any) -> Reply:
    """leave: the connection stops getting a channel's messages."""
    return channels.leave(caller(event), event.get("body"))


@route(failure="History could not be loaded.", what="History")
def get_recent_messages(event: dict[str, Any], context: Any) -> Reply:
    """getRecentMessages: a page of the room's, a channel's or one's own DM history, going back
    (before) or catching up (after)."""
    return recovery.recent_messages(caller(event), event.get("body"))


@route(failure="Presence could not be read.", what="Presence")
def get_presence(event: dict[str, Any], context: Any) -> Reply:
    """getPresence: who is online in a channel, one entry per user."""
    return channels.get_presence(caller(event), event.get("body"))


@route(failure="The token could not be renewed.", what="Renewal")
def renew_token(event: dict[str, Any], context: Any) -> Reply:
    """renewToken: a later token for the same user keeps the connection open past its expiry."""
    return sessions.renew(caller(event), event.get("body"))


def publish(event: dict[str, Any], context: Any) -> Response:
    """POST /publish (AWS_IAM): the app's backend publishes up to 100 messages, each answered."""
    with invocation(event, context, "publish"):
        status, document = backend.publish(
            event.get("body"), bool(event.get("isBase64Encoded")), signed_caller(event), backend.seconds_left(context)
        )
        return json_response(status, document)


def moderate(event: dict[str, Any], context: Any) -> Response:
    """POST /moderate (AWS_IAM): the app's backend deletes a message, bans, unbans or disconnects."""
    with invocation(event, context, "moderate"):
        status, document = operators.moderate(
            event.get("body"), bool(event.get("isBase64Encoded")), signed_caller(event)
        )
        return json_response(status, document)


def sweep(event: dict[str, Any], context: Any) -> dict[str, int]:
    """The sweeper, every minute: expiry notices, expired and ghost connections."""
    with invocation(event, context, "sweeper"):
        return sweeper.sweep()


def deliver_messages(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The delivery worker: SQS records, each one batch of connections for one message."""
    with invocation(event, context, "delivery worker"):
        return worker.deliver_batch(event, context)


def publish_events(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The events function: the history table's change stream, as message.created on the bus."""
    with invocation(event, context, "events"):
        return stream.publish_created(event)


def review_example(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The example review function (--param reviewFunction=example): a word list."""
    with invocation(event, context, "review example"):
        return example_review.decide(event)
