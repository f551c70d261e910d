"""Bans: a moderator keeps a user out of a channel, or (moderating "*") out of the whole service,
for `seconds` or until unbanned. A channel ban takes the user's connections out of the channel
at once (each is told `{"left": {"channel", "reason": "banned"}}`) and refuses the user's joins,
sends, edits and history reads there (channels.require_access); a service-wide ban tells each of
the user's connections `{"banned": ...}`, closes them all, and refuses the user's $connect
(sessions.open_session). Bans end by themselves; chat/bans.py keeps them."""

from __future__ import annotations

import time
from typing import Any

from chat import bans, channels, connections, delivery, events, frames, members, sessions
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import parse_channel, parse_reason, parse_request, require_user_id
from chat.telemetry import count, logger

BAN_EXAMPLE = '{"action": "ban", "user": "<user id>", "channel": "<name>", "seconds": 3600, "reason": "..."}'
UNBAN_EXAMPLE = '{"action": "unban", "user": "<user id>", "channel": "<name>"}'
# The longest ban with an end: a year (longer: none, until unbanned).
MAX_BAN_SECONDS = 366 * 24 * 60 * 60


def ban(caller: Caller, body: str | None) -> frames.Reply:
    """ban: store the ban, then take the user out where it applies."""
    request = parse_request(body, BAN_EXAMPLE)
    user, channel = _whom(caller, request)
    seconds = _seconds(request.get("seconds"))
    reason = parse_reason(request.get("reason"))
    now_ms = int(time.time() * 1000)
    until_ms = now_ms + seconds * 1000 if seconds is not None else None
    moderator = str(caller.user)
    bans.put(bans.Ban(user, channel, until_ms, reason, moderator), now_ms)
    events.emit([events.user_banned(user, channel, until_ms, reason, moderator, now_ms)])
    endpoint = delivery.management_endpoint(caller.request_context)
    removed = _take_out(user, channel, endpoint, reason, until_ms)
    count("UsersBanned")
    logger.info("%s banned %s from %s (%d connections)", moderator, user, channel or "the service", removed)
    return frames.ban_reply("ban", user, channel, until_ms, removed)


def unban(caller: Caller, body: str | None) -> frames.Reply:
    """unban: lift the ban now (harmless if there is none)."""
    request = parse_request(body, UNBAN_EXAMPLE)
    user, channel = _whom(caller, request)
    if bans.remove(user, channel) is not None:
        events.emit([events.user_unbanned(user, channel, str(caller.user), int(time.time() * 1000))])
    return frames.ban_reply("unban", user, channel, None, 0)


def _take_out(user: str, channel: str | None, endpoint: str, reason: str | None, until_ms: int | None) -> int:
    """The user's connections out of the channel (told why), or out of the service (told why,
    then closed: $disconnect cleans up after them); how many."""
    if channel is not None:
        ids = members.user_connection_ids(channel, user)
        for connection_id in ids:
            channels.remove(channel, connection_id, user, endpoint)
        if ids:
            sessions.forget(delivery.gone(delivery.post_to_connections(endpoint, ids, _left(channel))), endpoint)
        return len(ids)
    ids = list(connections.user_connection_ids(user))
    if ids:
        delivery.post_to_connections(endpoint, ids, frames.banned(reason, until_ms))
        outcomes = {connection_id: delivery.close(endpoint, connection_id) for connection_id in ids}
        sessions.forget(delivery.gone(outcomes), endpoint)
    return len(ids)


def _left(channel: str) -> bytes:
    return frames.encode(frames.left(channel, "banned"))


def _whom(caller: Caller, request: dict[str, Any]) -> tuple[str, str | None]:
    """The user a ban names and where (no channel: the service), if the caller moderates it."""
    if caller.user is None:
        raise Refusal("forbidden", "Bans need a signed-in connection: connect with a token.")
    user = require_user_id(request.get("user"), "user")
    channel = parse_channel(request.get("channel"))
    if not channels.moderates(caller, channel):  # no channel: the service, which needs "*"
        where = (
            f'channel "{channel}"' if channel is not None else 'the whole service (your token\'s "moderates" needs "*")'
        )
        raise Refusal("forbidden", f"You do not moderate {where}.")
    if user == caller.user:
        raise Refusal("bad_request", "You cannot ban yourself.")
    return user, channel


def _seconds(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_BAN_SECONDS:
        raise Refusal(
            "bad_request",
            f'"seconds" must be a whole number from 1 to {MAX_BAN_SECONDS} (leave it out: until unbanned).',
        )
    return value
