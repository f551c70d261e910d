"""Sending: to the room, to a channel, to one user. Each send is checked, counted against the
sender's rate limit, stored as its conversation's next seq, and only then delivered: to the
connections read after storing, so a connection that joins meanwhile cannot fall between the two.

Once a message is stored, a failed delivery does not answer a bare 500 that would invite a
blind retry: the reply says it was stored, with its seq, and that delivery is incomplete; a
retry with the same clientMessageId completes it instead of storing the message again.
"""

from __future__ import annotations

import time
from typing import Any

from chat import aws, channels, delivery, frames, history, inbox, members, publisher
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
from chat.telemetry import logger, milliseconds


def unrecognized(body: str | None) -> frames.Reply:
    """$default: a frame no route matched is refused. The offline heartbeat (on AWS a MOCK
    route takes it) is answered with nothing."""
    if is_heartbeat(body):
        return None
    raise Refusal("unknown_action", frames.UNRECOGNIZED)


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
    if channel is not None and (user is None or not members.is_member(channel, caller.connection_id, user)):
        raise Refusal(
            "not_member",
            f'Join channel "{channel}" before sending to it: {{"action": "join", "channel": "{channel}"}}.',
        )
    published = publisher.publish(publisher.Target(channel=channel), message, _sender_key(caller), _endpoint(caller))
    milliseconds("BroadcastDuration", (time.perf_counter() - started) * 1000)
    if channel is not None and user is not None:
        _read_own(user, channel, published.message["seq"])
    if channel is None and client_message_id is None:
        if published.delivery == publisher.COMPLETE:
            return frames.ROOM_SENT
        return frames.incomplete(published.message["seq"], "the room's history")
    return _ack(published, {"channel": channel} if channel is not None else {})


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
    target = publisher.Target(pair=(sender, recipient))
    published = publisher.publish(target, message, _sender_key(caller), _endpoint(caller), exclude=caller.connection_id)
    if client_message_id is not None:
        return _ack(published, {"to": recipient})
    if published.delivery != publisher.COMPLETE:
        return frames.incomplete(published.message["seq"], f"your history with {recipient}")
    return frames.dm_delivered(recipient) if published.recipient_online else frames.dm_stored(recipient)


def _ack(published: publisher.Published, named: dict[str, Any]) -> frames.Reply:
    """The JSON acknowledgement of a send that named a channel or a clientMessageId."""
    online = published.recipient_online if "to" in named else None
    return frames.sent(named, published.message, published.appended.duplicate, published.delivery, online)


def _read_own(user: str, channel: str, seq: int) -> None:
    """The sender has read what they wrote: their read position in the channel moves to it (a
    write of its own: a channel's members are not in its transaction). Not done, the message is
    still sent; it would only count as unread for its sender until the next markRead."""
    conversation = history.channel_conversation(channel)
    try:
        inbox.mark_read(
            user,
            inbox.CHANNEL_PREFIX + channel,
            {"channel": channel, "conversation": conversation},
            seq,
            int(time.time() * 1000),
        )
    except aws.AWS_ERRORS:
        logger.exception("Could not move %s's read position in %s to %d", user, channel, seq)


def _endpoint(caller: Caller) -> str:
    return delivery.management_endpoint(caller.request_context)


def _sender_key(caller: Caller) -> str:
    """Whose clientMessageIds these are: the user, or an anonymous connection on its own."""
    return caller.user if caller.user is not None else f"connection:{caller.connection_id}"
