"""Channels: a connection joins and leaves them, and a token's `channels` claim says which
ones its user may use (names, or prefixes ending in "*"); without the claim, all of them."""

from __future__ import annotations

from chat import frames, history, members
from chat.callers import Caller
from chat.requests import (
    JOIN_EXAMPLE,
    LEAVE_EXAMPLE,
    BadMessage,
    parse_channel,
    parse_request,
)


def join(caller: Caller, body: str | None) -> str:
    """join: from now on the connection gets the channel's messages; the reply gives the
    channel's latest seq, read after the join, so that `after` that seq, nothing is missed."""
    channel = _requested_channel(caller, body, JOIN_EXAMPLE)
    members.join(channel, caller.connection_id, caller.user)  # type: ignore[arg-type]
    seq = history.latest_seq(history.channel_conversation(channel))
    return frames.encode({"joined": {"channel": channel, "seq": seq}}).decode("utf-8")


def leave(caller: Caller, body: str | None) -> str:
    """leave: the connection stops getting the channel's messages; harmless if not a member."""
    channel = _requested_channel(caller, body, LEAVE_EXAMPLE)
    members.leave(channel, caller.connection_id, caller.user)  # type: ignore[arg-type]
    return frames.encode({"left": {"channel": channel}}).decode("utf-8")


def require_access(caller: Caller, channel: str) -> None:
    """403 unless the caller is signed in and its token's claim (if any) covers the channel."""
    if caller.user is None:
        raise BadMessage("Channels need a signed-in connection: connect with a token.", 403)
    if not allowed(caller.channels, channel):
        raise BadMessage(f'Your token does not allow channel "{channel}".', 403)


def allowed(patterns: tuple[str, ...] | None, channel: str) -> bool:
    """None: no claim, every channel. Otherwise a name, or a prefix before a final "*"."""
    if patterns is None:
        return True
    return any(channel == pattern or (pattern.endswith("*") and channel.startswith(pattern[:-1])) for pattern in patterns)


def _requested_channel(caller: Caller, body: str | None, example: str) -> str:
    request = parse_request(body, example)
    channel = parse_channel(request.get("channel"), required=True)
    require_access(caller, channel)  # type: ignore[arg-type]
    return channel  # type: ignore[return-value]
