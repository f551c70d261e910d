"""The life of a message after it is sent: edits by its sender, deletes by its sender or a
moderator of its conversation. The message keeps its seq and shows its current state wherever it
is read; each change is also appended to the conversation as its next seq ({"action": "edit" or
"delete", "target": N}), delivered live like a message and returned by `after`, so a client that
was away applies it from the same log (docs/protocol.md: "Edits and deletes").

A change and what it does to the message are one transaction (history.append's guard): the
message is changed if and only if the change takes its seq. A delete takes the content out of the
message and out of every edit of it, so that no content is left in storage (the table's own
stream, and events already sent, keep what they carried for their 24 hours)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from chat import channels, delivery, frames, history, publisher
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import (
    parse_client_message_id,
    parse_reason,
    parse_request,
    parse_seq_cursor,
    require_channel,
    require_content,
    require_user_id,
)

EDIT_EXAMPLE = '{"action": "editMessage", "channel": "<name>", "seq": 12, "content": "..."}'
DELETE_EXAMPLE = '{"action": "deleteMessage", "channel": "<name>", "seq": 12}'
# Edits one message may have: a delete takes the content out of each in its own transaction
# (DynamoDB: at most 100 items in one).
MAX_EDITS = 10
EDIT, DELETE = "edit", "delete"
# No edit since the delete read the message's edits (it takes the content out of each).
UNEDITED = "attribute_not_exists(edits) OR size(edits) = :edits"


def edit(caller: Caller, body: str | None) -> frames.Reply:
    """editMessage: the sender replaces a message's content."""
    request = parse_request(body, EDIT_EXAMPLE)
    target, named = _target(caller, request)
    seq = _seq(request)
    content = require_content(request)
    change = _change(caller, target, EDIT, seq, request, content=content)
    frames.check_size(change)

    def check(message: dict[str, Any]) -> None:
        if message.get("sender") is None or message.get("sender") != caller.user:
            raise Refusal("forbidden", f"Only its sender can edit message {seq}.")
        if len(message.get(history.EDITS, [])) >= MAX_EDITS:
            raise Refusal("bad_request", f"Message {seq} has been edited {MAX_EDITS} times, the most a message may be.")
        frames.check_size({**message, "content": content, "edited_at_ms": change["sent_at_ms"]})  # as it will be

    def reviewed() -> None:
        """The review function sees the new content once the edit is allowed, before it is stored."""
        nonlocal content
        content = publisher.reviewed(target, change, caller.user or "", "edit", "client")["content"]
        change["content"] = content

    def guard(change_seq: int, now: float) -> list[dict[str, Any]]:
        return [
            _update(
                target.conversation,
                seq,
                "SET content_json = :content, edited_at_ms = :now ADD edits :change",
                "sender = :sender AND (attribute_not_exists(edits) OR size(edits) < :max)",
                {
                    ":content": history.content_json(content),
                    ":now": int(now * 1000),
                    ":change": {change_seq},
                    ":sender": caller.user,
                    ":max": MAX_EDITS,
                },
            )
        ]

    return _apply(caller, target, named, change, seq, check, guard, "edited", reviewed)


def delete(caller: Caller, body: str | None) -> frames.Reply:
    """deleteMessage: the sender, or a moderator of the conversation (not of a DM), takes a
    message down: its content and its edits' content are gone from storage."""
    request = parse_request(body, DELETE_EXAMPLE)
    target, named = _target(caller, request)
    seq = _seq(request)
    reason = parse_reason(request.get("reason"))
    change = _change(caller, target, DELETE, seq, request, reason=reason)
    edits: list[int] = []
    moderator = target.pair is None and channels.moderates(caller, target.channel)

    def check(message: dict[str, Any]) -> None:
        own = message.get("sender") is not None and message.get("sender") == caller.user
        if not own and not moderator:
            who = "its sender" if target.pair is not None else "its sender or a moderator of this conversation"
            raise Refusal("forbidden", f"Only {who} can delete message {seq}.")
        edits[:] = message.get(history.EDITS, [])

    def guard(change_seq: int, now: float) -> list[dict[str, Any]]:
        return [
            _update(
                target.conversation,
                seq,
                "REMOVE content_json SET deleted = :yes, deleted_by = :who, deleted_at_ms = :now",
                # no edit since they were read; and who may delete, held by the write itself
                UNEDITED if moderator else f"({UNEDITED}) AND sender = :who",
                {":yes": True, ":who": caller.user, ":now": int(now * 1000), ":edits": len(edits)},
            ),
            *(
                _update(target.conversation, edit_seq, "REMOVE content_json SET deleted = :yes", None, {":yes": True})
                for edit_seq in edits
            ),
        ]

    return _apply(caller, target, named, change, seq, check, guard, "deleted")


def _apply(
    caller: Caller,
    target: publisher.Target,
    named: dict[str, Any],
    change: dict[str, Any],
    seq: int,
    check: Callable[[dict[str, Any]], None],
    guard: history.Guard,
    kind: str,
    before_store: Callable[[], None] | None = None,
) -> frames.Reply:
    """Check the message, then store the change and deliver it. A repeat of a change already
    stored (its clientMessageId) is answered with its first outcome, even though the message has
    changed since (a delete repeated finds it deleted); the guard holds the rules in the write
    itself, so a repeat's record running out meanwhile stores nothing it should not.
    `before_store`: run once the checks pass (an edit's review)."""
    sender_key = caller.user or ""
    client_message_id = change.get("client_message_id")
    try:
        check(_message(target.conversation, seq))
    except Refusal:
        if not history.recorded(target.conversation, sender_key, client_message_id):
            raise
    if before_store is not None:
        before_store()
    endpoint = delivery.management_endpoint(caller.request_context)
    try:
        published = publisher.publish(target, change, sender_key, endpoint, exclude=caller.connection_id, guard=guard)
    except history.GuardFailed:  # changed meanwhile: say how, as if it had been so all along
        check(_message(target.conversation, seq))
        raise Refusal("conversation_busy", history.BUSY) from None
    stored = published.message
    if published.appended.duplicate and (stored.get("action") != change["action"] or stored.get("target") != seq):
        raise Refusal(
            "bad_request",
            f'"clientMessageId" {client_message_id} was used for another message or change: use a new one.',
        )
    return frames.changed(
        kind, named, int(stored.get("target", seq)), stored, published.appended.duplicate, published.delivery
    )


def _target(caller: Caller, request: dict[str, Any]) -> tuple[publisher.Target, dict[str, Any]]:
    """The conversation a change names, for a signed-in caller only."""
    if caller.user is None:
        raise Refusal("forbidden", "Edits and deletes need a signed-in connection: connect with a token.")
    return named_target(caller, request)


def named_target(caller: Caller, request: dict[str, Any]) -> tuple[publisher.Target, dict[str, Any]]:
    """The conversation a request names (a channel, a DM with "with", or the room) and how clients
    name it, checked as a history read is: the token must allow the channel; a DM is the caller's
    own (chat/reads.py and chat/indicators.py name theirs the same way)."""
    channel, other = request.get("channel"), request.get("with")
    if channel is not None and other is not None:
        raise Refusal("bad_request", 'Send "channel" or "with" (a direct conversation), not both.')
    if channel is not None:
        name = require_channel(channel)
        channels.require_access(caller, name)
        return publisher.Target(channel=name), {"channel": name}
    if other is None:
        return publisher.Target(), {"room": True}
    other = require_user_id(other, "with")
    if other == caller.user:
        raise Refusal("bad_request", 'You have no direct conversation with yourself: leave out "with" for the room.')
    return publisher.Target(pair=(caller.user or "", other)), {"with": other}


def _seq(request: dict[str, Any]) -> int:
    seq = parse_seq_cursor(request.get("seq"), "seq", 1)
    if seq is None:
        raise Refusal("bad_request", 'Say which message with "seq": its seq in this conversation.')
    return seq


def _change(
    caller: Caller, target: publisher.Target, action: str, seq: int, request: dict[str, Any], **fields: Any
) -> dict[str, Any]:
    """The change as a message of the conversation: its action, its target, who made it."""
    client_message_id = parse_client_message_id(request.get("clientMessageId"))
    recipient = target.pair[1] if target.pair is not None else None
    change = history.new_message(
        fields.pop("content", None),
        caller.user,
        channel=target.channel,
        to=recipient,
        client_message_id=client_message_id,
    )
    if action == DELETE:
        del change["content"]
    change.update(action=action, target=seq, **{name: value for name, value in fields.items() if value is not None})
    return change


def _message(conversation: str, seq: int) -> dict[str, Any]:
    """The message at `seq` as stored now: not_found if there is none, or it is past its
    retention, or it is gone (deleted); bad_request for a change (only messages change)."""
    found = history.messages_at([(conversation, seq)]).get((conversation, seq))
    if found is None or history.expired(found, time.time()):
        raise Refusal("not_found", f"There is no message {seq} in this conversation.")
    message = history.stored_to_message(found)
    if message.get("deleted"):
        raise Refusal("not_found", f"Message {seq} was deleted.")
    if "action" in message:
        raise Refusal(
            "bad_request", f"Message {seq} is an {message['action']}: change message {message['target']} instead."
        )
    return message


def _update(
    conversation: str, seq: int, expression: str, condition: str | None, values: dict[str, Any]
) -> dict[str, Any]:
    """A transaction item that changes the stored message at `seq`: it fails if the message is
    gone or deleted, or `condition` fails."""
    exists = "attribute_exists(seq) AND attribute_not_exists(deleted)"
    update: dict[str, Any] = {
        "TableName": history.history_table().name,
        "Key": {"conversation": conversation, "seq": seq},
        "UpdateExpression": expression,
        "ConditionExpression": f"{exists} AND ({condition})" if condition else "attribute_exists(seq)",
    }
    if values:
        update["ExpressionAttributeValues"] = values
    return {"Update": update}
