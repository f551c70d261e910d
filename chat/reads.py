"""Read state that follows the user (issue 30): markRead moves the user's read position in a
conversation forward, kept on the server (chat/inbox.py), so every device of the user agrees,
and unread counts are exact: the gap-free seq makes `unread = latest seq - read seq`, no
counting query. The user's other connections are told `read`; in a direct conversation the other
user's connections get a `readReceipt`."""

from __future__ import annotations

import time
import uuid
from typing import Any

from chat import changes, connections, delivery, dispatch, frames, history, inbox
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import parse_request, parse_seq_cursor

MARK_READ_EXAMPLE = '{"action": "markRead", "channel": "general", "seq": 12}'


def mark_read(caller: Caller, body: str | None) -> frames.Reply:
    """markRead: {"channel"|"with": ... (neither: the room), "seq": N}. Answered with the read
    position now (a position already as far or further is kept, and nobody is told)."""
    if caller.user is None:
        raise Refusal("forbidden", "Read positions need a signed-in connection: connect with a token.")
    request = parse_request(body, MARK_READ_EXAMPLE)
    conversation, named, sort_key, fields = where(caller, request)
    seq = parse_seq_cursor(request.get("seq"), "seq", 1)
    if seq is None:
        raise Refusal("bad_request", 'Say how far you have read with "seq": the seq of the last message you have seen.')
    latest = history.latest_seq(conversation)
    if seq > latest:
        raise Refusal("bad_request", f"There is no message {seq} in this conversation yet: its latest seq is {latest}.")
    had = inbox.mark_read(caller.user, sort_key, fields, seq, int(time.time() * 1000))
    if had is not None:
        return frames.read_position(named, had)
    _tell(caller, named, seq)
    return frames.read_position(named, seq)


def where(caller: Caller, request: dict[str, Any]) -> tuple[str, dict[str, Any], str, dict[str, Any]]:
    """The conversation a request names ("channel", "with", or neither: the room), checked as an
    edit's is (changes.named_target): (its id, how clients name it, its sort key in the user's
    list, the fields a new entry gets)."""
    target, named = changes.named_target(caller, request)
    conversation = target.conversation
    if "channel" in named:
        return conversation, named, inbox.CHANNEL_PREFIX + named["channel"], {**named, "conversation": conversation}
    if "room" in named:
        return conversation, named, inbox.ROOM_KEY, {**named, "conversation": conversation}
    return conversation, named, named["with"], {}


def _tell(caller: Caller, named: dict[str, Any], seq: int) -> None:
    """The reader's other connections, and in a DM the other user's, hear of the new position."""
    endpoint = delivery.management_endpoint(caller.request_context)
    mine = [cid for cid in connections.user_connection_ids(caller.user or "") if cid != caller.connection_id]
    if mine:
        dispatch.post(endpoint, mine, frames.encode(frames.read_position(named, seq)), f"read-{uuid.uuid4().hex}")
    if "with" in named:
        theirs = list(connections.user_connection_ids(named["with"]))
        if theirs:
            payload = frames.encode(frames.read_receipt(caller.user or "", seq))
            dispatch.post(endpoint, theirs, payload, f"receipt-{uuid.uuid4().hex}")
