"""Reading a conversation back (getRecentMessages): pages of history going back with `before`,
and recovery after a reconnect going forward with `after`, both by seq. Only conversations the
requester may read: the room, a channel its token allows, its own direct messages."""

from __future__ import annotations

import time
from typing import Any

from chat import channels, frames, history
from chat.callers import Caller
from chat.requests import (
    HISTORY_EXAMPLE,
    BadMessage,
    parse_channel,
    parse_limit,
    parse_request,
    parse_seq_cursor,
    require_user_id,
)


def recent_messages(caller: Caller, body: str | None) -> str:
    """The reply: the messages oldest first, with `before` and `after` cursors to page on."""
    now = time.time()
    request = parse_request(body, HISTORY_EXAMPLE)
    conversation, named = _conversation(caller, request)
    limit = parse_limit(request.get("limit"))
    before = parse_seq_cursor(request.get("before"), "before", 1)
    after = parse_seq_cursor(request.get("after"), "after", 0)
    if before is not None and after is not None:
        raise BadMessage('Send "before" (to page back) or "after" (to catch up), not both.')
    if after is not None:
        return _forward(named, history.read_after(conversation, limit, after, now), after)
    return _backward(named, history.read_before(conversation, limit, before, now), before)


def _backward(named: dict[str, Any], page: history.Page, before: int | None) -> str:
    """Newest first as read; `before` goes on to older ones while there may be some, `after`
    comes back to what follows (null on the newest page)."""
    shown, used, cut = frames.fit_history(page.entries)
    older = (page.more or cut) and used > 0
    next_before = page.entries[used - 1][0] if older else None
    next_after = None if before is None else (page.entries[0][0] if used else before - 1)
    return frames.encode_history(named, shown[::-1], next_before, next_after)


def _forward(named: dict[str, Any], page: history.Page, after: int) -> str:
    """Oldest first as read; `after` goes on while there are newer ones (null: you have
    everything), `before` pages back from the first one."""
    shown, used, cut = frames.fit_history(page.entries)
    newer = (page.more or cut) and used > 0
    next_after = page.entries[used - 1][0] if newer else None
    next_before = (page.entries[0][0] if page.entries else after + 1) if after > 0 else None
    return frames.encode_history(named, shown, next_before, next_after)


def _conversation(caller: Caller, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The conversation asked for, derived from the requester's own identity (nobody can name
    another pair's), and how the reply names it."""
    channel, other = request.get("channel"), request.get("with")
    if channel is not None and other is not None:
        raise BadMessage('Send "channel" (a channel\'s history) or "with" (a direct conversation), not both.')
    if channel is not None:
        name = parse_channel(channel)
        channels.require_access(caller, name)  # type: ignore[arg-type]
        return history.channel_conversation(name), {"channel": name}  # type: ignore[arg-type]
    if other is None:
        return history.ROOM, {"with": None}
    if caller.user is None:
        raise BadMessage("Direct message history needs a signed-in connection: connect with a token.", 403)
    other = require_user_id(other, "with")
    if other == caller.user:
        raise BadMessage('You have no direct conversation with yourself: leave out "with" for the room.')
    return history.dm_conversation(caller.user, other), {"with": other}
