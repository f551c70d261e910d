"""Typing indicators (issue 30): `typing` in a channel or a DM, never stored. The channel's
members (the connections that joined it, not the sender's) or the other user's connections get
`{"typing": {"channel"|"with", "user"}}`, and show the user as typing for 5 s after the last.

At most one is forwarded per TYPING_INTERVAL_SECONDS per user and conversation (Stream Chat
throttles the same way): a frame within that is accepted and dropped, without an error. Typing
frames have their own budget (chat/ratelimit.py: TYPING_RATE_PER_SECOND), never the message
budget. Above PRESENCE_EVENTS_MAX_USERS users online in a channel, none is forwarded (as presence
changes stop there): typing is a courtesy, not worth a post to thousands."""

from __future__ import annotations

import time
import uuid

from chat import channels, connections, delivery, dispatch, frames, members, presence, ratelimit, reads
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import parse_request
from chat.telemetry import count

TYPING_EXAMPLE = '{"action": "typing", "channel": "general"}'
TYPING_INTERVAL_SECONDS = 2.0


def typing(caller: Caller, body: str | None) -> frames.Reply:
    """typing: forwarded, or dropped within 2 s of the last: the reply says which."""
    if caller.user is None:
        raise Refusal("forbidden", "Typing needs a signed-in connection: connect with a token.")
    request = parse_request(body, TYPING_EXAMPLE)
    if request.get("channel") is None and request.get("with") is None:
        raise Refusal("bad_request", 'Say where you are typing: "channel" or "with" (a direct conversation).')
    conversation, named, _, _ = reads.where(caller, request)
    if "channel" in named and not members.is_member(named["channel"], caller.connection_id, caller.user):
        channel = named["channel"]
        raise Refusal(
            "not_member",
            f'Join channel "{channel}" before typing in it: {{"action": "join", "channel": "{channel}"}}.',
        )
    forwarded = ratelimit.spend(f"typing#{caller.user}#{conversation}", 1 / TYPING_INTERVAL_SECONDS, 1)
    if forwarded:
        forwarded = _forward(caller, named)
    else:
        count("TypingDropped")
    return frames.typing_reply(named, forwarded)


def _forward(caller: Caller, named: dict[str, str]) -> bool:
    """Post the typing frame to its audience: False if there is none worth it (a channel too big)."""
    user = caller.user or ""
    if "channel" in named:
        online = presence.users_online(named["channel"])
        if online > channels.PRESENCE_EVENTS_MAX_USERS:
            count("TypingDropped")
            return False
        audience = [cid for cid in members.member_ids(named["channel"]) if cid != caller.connection_id]
    else:
        audience = list(connections.user_connection_ids(named["with"]))
    if audience:
        endpoint = delivery.management_endpoint(caller.request_context)
        where = named if "channel" in named else {"with": user}  # the other user's DM is "with" the typist
        payload, name = frames.encode(frames.typing(where, user)), f"typing-{uuid.uuid4().hex}"
        few = dispatch.small(audience)
        if few is not None:
            dispatch.post(endpoint, few, payload, name, retry=False)  # typing 10 s late is wrong, not late
        else:  # a large channel: through the workers, paced to the posting budget (as presence is)
            dispatch.queue(endpoint, audience, payload, name, int(time.time() * 1000))
    count("TypingForwarded")
    return True
