"""Reading a conversation back (getRecentMessages): pages of history going back with `before`,
and recovery after a reconnect going forward with `after`, both by seq. Only conversations the
requester may read: the room, a channel its token allows, its own direct messages. And finding
them (getConversations): the requester's direct conversations, most recent first, each with its
latest seq, so a client back from offline knows which to catch up on."""

from __future__ import annotations

import time
from typing import Any

from chat import channels, connections, frames, history, inbox
from chat import conversations as conversations_module
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import (
    CONVERSATIONS_EXAMPLE,
    HISTORY_EXAMPLE,
    parse_limit,
    parse_request,
    parse_seq_cursor,
    require_channel,
    require_user_id,
)


def recent_messages(caller: Caller, body: str | None) -> frames.Reply:
    """The reply: the messages oldest first, with `before` and `after` cursors to page on."""
    now = time.time()
    request = parse_request(body, HISTORY_EXAMPLE)
    conversation, named = _conversation(caller, request)
    limit = parse_limit(request.get("limit"))
    before = parse_seq_cursor(request.get("before"), "before", 1)
    after = parse_seq_cursor(request.get("after"), "after", 0)
    if before is not None and after is not None:
        raise Refusal("bad_request", 'Send "before" (to page back) or "after" (to catch up), not both.')
    if after is not None:
        return _forward(named, history.read_after(conversation, limit, after, now), after)
    return _backward(named, history.read_before(conversation, limit, before, now), before)


def _backward(named: dict[str, Any], page: history.Page, before: int | None) -> frames.Reply:
    """Newest first as read; `before` goes on to older ones while there may be some, `after`
    comes back to what follows (null on the newest page)."""
    shown, used, cut = frames.fit_history(frames.history_entries(page.entries))
    older = (page.more or cut) and used > 0
    next_before = page.entries[used - 1][0] if older else None
    next_after = None if before is None else (page.entries[0][0] if used else before - 1)
    return frames.history_page(named, shown[::-1], next_before, next_after)


def _forward(named: dict[str, Any], page: history.Page, after: int) -> frames.Reply:
    """Oldest first as read; `after` goes on while there are newer ones (null: you have
    everything), `before` pages back from the first one."""
    shown, used, cut = frames.fit_history(frames.history_entries(page.entries))
    newer = (page.more or cut) and used > 0
    next_after = page.entries[used - 1][0] if newer else None
    next_before = (page.entries[0][0] if page.entries else after + 1) if after > 0 else None
    return frames.history_page(named, shown, next_before, next_after)


def _conversation(caller: Caller, request: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The conversation asked for, derived from the requester's own identity (nobody can name
    another pair's), and how the reply names it."""
    channel, other = request.get("channel"), request.get("with")
    if channel is not None and other is not None:
        raise Refusal(
            "bad_request", 'Send "channel" (a channel\'s history) or "with" (a direct conversation), not both.'
        )
    if channel is not None:
        name = require_channel(channel)
        channels.require_access(caller, name)
        return history.channel_conversation(name), {"channel": name}
    if other is None:
        return history.ROOM, {"with": None}
    if caller.user is None:
        raise Refusal("forbidden", "Direct message history needs a signed-in connection: connect with a token.")
    other = require_user_id(other, "with")
    if other == caller.user:
        raise Refusal("bad_request", 'You have no direct conversation with yourself: leave out "with" for the room.')
    return history.dm_conversation(caller.user, other), {"with": other}


def conversations(caller: Caller, body: str | None) -> frames.Reply:
    """getConversations: the user's own conversations on every device (direct conversations,
    and the channels and room the user follows: joined, or marked read), most recent first, as
    many as fit one reply; `before` pages on. Each with its latest `seq`, the user's `readSeq`,
    `unread` (exact: latest minus read), its `last` message and, for a DM, whether the other user
    is `online`."""
    if caller.user is None:
        raise Refusal("forbidden", "Conversations need a signed-in connection: connect with a token.")
    request = parse_request(body, CONVERSATIONS_EXAMPLE)
    limit = parse_limit(request.get("limit"))
    before = inbox.parse_cursor(request.get("before"))
    entries, more = inbox.page(caller.user, limit, before)
    latest = conversations_module.latest_seqs([entry["conversation"] for entry in entries if "with" not in entry])
    seqs = [int(entry["seq"]) if "with" in entry else latest[entry["conversation"]] for entry in entries]
    lasts = history.messages_at([(entry["conversation"], seq) for entry, seq in zip(entries, seqs, strict=True) if seq])
    shown = [
        _conversation_entry(entry, seq, lasts.get((entry["conversation"], seq)))
        for entry, seq in zip(entries, seqs, strict=True)
    ]
    listed, used, cut = frames.fit_history(shown)
    next_before = shown[used - 1][0] if (more or cut) and used else None
    return frames.conversations_page(listed, next_before)


def _conversation_entry(
    entry: dict[str, Any], seq: int, last: dict[str, Any] | None
) -> tuple[str, dict[str, Any] | None, int]:
    """(its cursor, what the client is shown, its size): the latest message, if it can still be
    read (past its retention, the conversation is listed without it)."""
    message = None
    if last is not None and not history.expired(last, time.time()):
        _, message = history.entry(last)
    if "with" in entry:
        named: dict[str, Any] = {"with": entry["with"]}
        online: bool | None = connections.count_user_connections(entry["with"], stop_at=1) > 0
    else:
        named, online = ({"channel": entry["channel"]} if entry.get("channel") else {"room": True}), None
    listed = frames.conversation_entry(named, seq, int(entry.get("read_seq", 0)), message, online)
    return inbox.cursor(entry), listed, len(frames.encode(listed))
