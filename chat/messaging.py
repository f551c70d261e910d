"""What the chat routes do: send to the room, send a direct message, read a conversation's
history. Each first charges the frame to the sender's rate limit (refused frames count too),
then checks the request, stores, then delivers, and returns the text the sender is answered
with (or raises BadMessage with the reason)."""

from __future__ import annotations

import time
from typing import Any

from chat import connections, delivery, fanout, frames, history, ratelimit
from chat.gateway import Caller
from chat.requests import (
    DIRECT_MESSAGE_EXAMPLE,
    HISTORY_EXAMPLE,
    SEND_MESSAGE_EXAMPLE,
    BadMessage,
    parse_cursor,
    parse_limit,
    parse_request,
    require_content,
    require_user_id,
)
from chat.telemetry import logger, milliseconds

ROOM_SENT = "Message sent to all connections."
UNRECOGNIZED = "Unrecognized WebSocket action."


def send_to_room(caller: Caller, body: str | None) -> str:
    """sendMessage: stored in the room's history, then sent to every connection."""
    started = time.perf_counter()
    ratelimit.enforce(caller.user, caller.connection_id)
    request = parse_request(body, SEND_MESSAGE_EXAMPLE)
    message = history.new_message(require_content(request), sender=caller.user)
    payload = frames.encode_delivery(message)
    history.store(history.ROOM, message)
    endpoint = delivery.management_endpoint(caller.request_context)
    counts = fanout.broadcast(endpoint, connections.all_ids(), payload, message)
    milliseconds("BroadcastDuration", (time.perf_counter() - started) * 1000)
    logger.info("Broadcast from %s", caller.connection_id, **counts)
    return ROOM_SENT


def send_direct(caller: Caller, body: str | None) -> str:
    """sendDirectMessage: stored in the pair's history, then delivered to both users' other
    connections; the sender learns whether the recipient got it live."""
    sender = caller.user
    ratelimit.enforce(sender, caller.connection_id)
    if sender is None:
        raise BadMessage("Direct messages need a signed-in connection: connect with a token.", 403)
    request = parse_request(body, DIRECT_MESSAGE_EXAMPLE)
    recipient = require_user_id(request.get("to"), "to")
    if recipient == sender:
        raise BadMessage("You cannot send a direct message to yourself.")
    message = history.new_message(require_content(request), sender=sender, to=recipient)
    payload = frames.encode_delivery(message)
    history.store(history.dm_conversation(sender, recipient), message)
    recipient_ids = list(connections.user_connection_ids(recipient))
    own_ids = [cid for cid in connections.user_connection_ids(sender) if cid != caller.connection_id]
    endpoint = delivery.management_endpoint(caller.request_context)
    outcomes = delivery.post_to_connections(endpoint, recipient_ids + own_ids, payload)
    logger.info("Direct message from %s to %s", sender, recipient, **delivery.summary(outcomes))
    if any(outcomes[cid] == delivery.SENT for cid in recipient_ids):
        return f"Direct message delivered to {recipient}."
    return f"{recipient} is not connected: the message was stored and will be in their history."


def recent_messages(caller: Caller, body: str | None) -> str:
    """getRecentMessages: the last N messages of the room or of one of the requester's own
    direct conversations, oldest first, sent back to the requester only."""
    now = time.time()
    ratelimit.enforce(caller.user, caller.connection_id)
    request = parse_request(body, HISTORY_EXAMPLE)
    other = _history_partner(caller.user, request.get("with"))
    # The conversation is derived from the requester's own identity: nobody can name another
    # pair's conversation.
    conversation = history.dm_conversation(caller.user, other) if other else history.ROOM  # type: ignore[arg-type]
    limit = parse_limit(request.get("limit"))
    before = parse_cursor(request.get("before"))
    entries, more = history.load_recent(conversation, limit, before, now)
    return frames.encode_history(other, entries, more)


def unrecognized(caller: Caller) -> str:
    """$default: a frame no route matched. It is refused, but it still costs the sender one
    frame of their budget (a flood of junk is a flood)."""
    ratelimit.enforce(caller.user, caller.connection_id)
    raise BadMessage(UNRECOGNIZED)


def _history_partner(requester: str | None, other: Any) -> str | None:
    if other is None:
        return None
    if requester is None:
        raise BadMessage("Direct message history needs a signed-in connection: connect with a token.", 403)
    other = require_user_id(other, "with")
    if other == requester:
        raise BadMessage('You have no direct conversation with yourself: leave out "with" for the room.')
    return other
