"""Sending: to the room, to a channel, to one user. Each send is checked, counted against the
sender's rate limit, stored as its conversation's next seq, and only then delivered: to the
connections read after storing, so a connection that joins meanwhile cannot fall between the two.

Once a message is stored, a failed delivery does not answer a bare 500 that would invite a
blind retry: the reply says it was stored, with its seq, and that delivery is incomplete; a
retry with the same clientMessageId completes it instead of storing the message again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from chat import aws, channels, connections, delivery, dispatch, frames, history, members
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import (
    DIRECT_MESSAGE_EXAMPLE,
    SEND_MESSAGE_EXAMPLE,
    is_heartbeat,
    parse_channel,
    parse_client_message_id,
    parse_request,
    require_content,
    require_user_id,
)
from chat.telemetry import count, logger, milliseconds


def unrecognized(body: str | None) -> frames.Reply:
    """$default: a frame no route matched is refused. The offline heartbeat (on AWS a MOCK
    route takes it) is answered with nothing."""
    if is_heartbeat(body):
        return None
    raise Refusal("unknown_action", frames.UNRECOGNIZED)


@dataclass(frozen=True)
class Delivery:
    """How delivering a stored message went: complete (every recipient was posted to or queued
    for the workers), and which connections of a DM's recipient got it live."""

    complete: bool
    reached: frozenset[str] = frozenset()


def send_message(caller: Caller, body: str | None) -> frames.Reply:
    """sendMessage: to the room (every connection), or with "channel" to that channel's members."""
    started = time.perf_counter()
    request = parse_request(body, SEND_MESSAGE_EXAMPLE)
    channel = parse_channel(request.get("channel"))
    client_message_id = parse_client_message_id(request.get("clientMessageId"))
    content = require_content(request)
    user = channels.require_access(caller, channel) if channel is not None else caller.user
    message = history.new_message(content, caller.user, channel=channel, client_message_id=client_message_id)
    frames.check_size(message)
    if channel is None:
        appended = history.append(history.ROOM, message, _sender_key(caller))
        done = _deliver(caller, history.ROOM, appended, connections.all_ids)
        milliseconds("BroadcastDuration", (time.perf_counter() - started) * 1000)
        if client_message_id is None:
            return (
                frames.ROOM_SENT if done.complete else frames.incomplete(appended.message["seq"], "the room's history")
            )
        return _ack(appended, done, {})
    if user is None or not members.is_member(channel, caller.connection_id, user):
        raise Refusal(
            "not_member",
            f'Join channel "{channel}" before sending to it: {{"action": "join", "channel": "{channel}"}}.',
        )
    conversation = history.channel_conversation(channel)
    appended = history.append(conversation, message, _sender_key(caller))
    done = _deliver(caller, conversation, appended, lambda: members.member_ids(channel))
    milliseconds("BroadcastDuration", (time.perf_counter() - started) * 1000)
    return _ack(appended, done, {"channel": channel})


def send_direct(caller: Caller, body: str | None) -> frames.Reply:
    """sendDirectMessage: to every connection of the recipient and the sender's other ones; the
    sender learns whether the recipient got it live."""
    sender = caller.user
    if sender is None:
        raise Refusal("forbidden", "Direct messages need a signed-in connection: connect with a token.")
    request = parse_request(body, DIRECT_MESSAGE_EXAMPLE)
    recipient = require_user_id(request.get("to"), "to")
    if recipient == sender:
        raise Refusal("bad_request", "You cannot send a direct message to yourself.")
    client_message_id = parse_client_message_id(request.get("clientMessageId"))
    message = history.new_message(require_content(request), sender, to=recipient, client_message_id=client_message_id)
    frames.check_size(message)
    conversation = history.dm_conversation(sender, recipient)
    appended = history.append(conversation, message, _sender_key(caller), pair=(sender, recipient))
    recipient_ids: list[str] = []

    def audience() -> list[str]:
        recipient_ids.extend(connections.user_connection_ids(recipient))
        own = [cid for cid in connections.user_connection_ids(sender) if cid != caller.connection_id]
        return recipient_ids + own

    done = _deliver(caller, conversation, appended, audience, inline_only=True)
    online = any(cid in done.reached for cid in recipient_ids)
    if client_message_id is not None:
        return _ack(
            appended, done, {"to": recipient}, online if done.complete and not _already_done(appended) else None
        )
    if not done.complete:
        return frames.incomplete(appended.message["seq"], f"your history with {recipient}")
    return frames.dm_delivered(recipient) if online else frames.dm_stored(recipient)


def _deliver(
    caller: Caller,
    conversation: str,
    appended: history.Appended,
    audience: Callable[[], Iterable[str]],
    inline_only: bool = False,
) -> Delivery:
    """Deliver a stored message (unless the same send already did), then mark its send record
    delivered. An AWS failure here is logged and reported as incomplete, never raised: the
    message is stored."""
    if _already_done(appended):
        return Delivery(complete=True)
    message = appended.message
    try:
        endpoint = delivery.management_endpoint(caller.request_context)
        payload = frames.encode_delivery(message)
        reached = dispatch.broadcast(
            endpoint, audience(), payload, message["id"], message["sent_at_ms"], inline_only=inline_only
        )
    except aws.AWS_ERRORS:
        logger.exception("Delivery of %s (seq %d of %s) is incomplete", message["id"], message["seq"], conversation)
        count("DeliveriesIncomplete")
        return Delivery(complete=False)
    try:
        history.mark_delivered(conversation, _sender_key(caller), message.get("client_message_id"))
    except aws.AWS_ERRORS:  # a retry would deliver it again: clients drop a seq they have
        logger.exception("Could not mark %s delivered", message["id"])
    return Delivery(complete=True, reached=reached)


def _ack(appended: history.Appended, done: Delivery, named: dict[str, Any], online: bool | None = None) -> frames.Reply:
    """The JSON acknowledgement of a send that named a channel or a clientMessageId."""
    return frames.sent(named, appended.message, appended.duplicate, done.complete, online)


def _already_done(appended: history.Appended) -> bool:
    return appended.duplicate and appended.delivered


def _sender_key(caller: Caller) -> str:
    """Whose clientMessageIds these are: the user, or an anonymous connection on its own."""
    return caller.user if caller.user is not None else f"connection:{caller.connection_id}"
