"""Channels: a connection joins and leaves them, and a token's `channels` claim says which
ones its user may use (names, or prefixes ending in "*"); without the claim, all of them.
Joining and leaving move the user's presence (chat/presence.py); the members hear of a user
entering or leaving, while the channel is small enough for that to be worth it."""

from __future__ import annotations

import os
import time
import uuid

from chat import aws, bans, delivery, dispatch, events, frames, history, inbox, jobs, members, presence
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import (
    JOIN_EXAMPLE,
    LEAVE_EXAMPLE,
    PRESENCE_EXAMPLE,
    parse_request,
    parse_user_cursor,
    require_channel,
)
from chat.telemetry import logger

# Above this many users online in a channel, presenceChange events stop (getPresence still
# answers). An event costs one post per member connection, and everyone joining costs
# users x users posts: 100 users, 10,000 posts; 1,000 users, 1,000,000 posts, 100 s of the
# account's 10,000/s (docs/costs.md). Pusher caps presence channels at 100 members, Ably at 200.
PRESENCE_EVENTS_MAX_USERS = int(os.environ.get("PRESENCE_EVENTS_MAX_USERS", "100"))


def join(caller: Caller, body: str | None) -> frames.Reply:
    """join: from now on the connection gets the channel's messages; the reply gives the
    channel's latest seq, read after the join, so that `after` that seq, nothing is missed.
    The user's first connection in the channel is announced to its members (enter), and to the
    app (channel.joined, presence.entered: chat/events.py)."""
    channel, user = _requested_channel(caller, body, JOIN_EXAMPLE)
    arrival = members.join(channel, caller.connection_id, user)
    if arrival != "already":
        _refuse_if_banned_since(channel, caller.connection_id, user)
    if arrival != "already":  # told before anything else can fail: a retried join is "already"
        now_ms = int(time.time() * 1000)
        entered = [events.presence_entered(channel, user, now_ms)] if arrival == presence.ENTER else []
        events.emit([events.channel_joined(channel, user, caller.connection_id, now_ms), *entered])
    conversation = history.channel_conversation(channel)
    seq = history.latest_seq(conversation)
    # Listed in the user's conversations on every device from now on (chat/inbox.py).
    inbox.follow_channel(user, channel, conversation, seq, int(time.time() * 1000))
    if arrival == presence.ENTER:
        announce(delivery.management_endpoint(caller.request_context), channel, user, "enter")
    return frames.joined(channel, seq)


def leave(caller: Caller, body: str | None) -> frames.Reply:
    """leave: the connection stops getting the channel's messages; harmless if not a member.
    The user's last connection leaving is announced after the grace, if nobody comes back."""
    channel, user = _requested_channel(caller, body, LEAVE_EXAMPLE, check_bans=False)  # leaving is always allowed
    remove(channel, caller.connection_id, user, delivery.management_endpoint(caller.request_context))
    inbox.unfollow_channel(user, channel)  # left on purpose: no longer listed (a disconnect keeps it)
    return frames.left(channel)


def remove(channel: str, connection_id: str, user: str, endpoint: str) -> None:
    """Take the connection out of the channel (a leave, or a ban): channel.left, and the user's
    last connection's leave announced after the grace, if nobody comes back."""
    departure, left_at = members.leave(channel, connection_id, user)
    if departure != "none":
        events.emit([events.channel_left(channel, user, connection_id, left_at)])
    if departure == presence.LAST:
        presence.schedule_leave_check(jobs.LeaveCheck(channel, user, left_at, endpoint))


def get_presence(caller: Caller, body: str | None) -> frames.Reply:
    """getPresence: who is online in the channel, one entry per user however many connections
    it has, sorted by user id, 100 users a reply; `after` pages on."""
    request = parse_request(body, PRESENCE_EXAMPLE)
    channel = require_channel(request.get("channel"))
    require_access(caller, channel)
    after = parse_user_cursor(request.get("after"))
    users, next_after = presence.page(channel, after)
    return frames.presence_page(channel, users, presence.users_online(channel), next_after)


def confirm_leave(check: jobs.LeaveCheck) -> bool:
    """After the grace: if nobody came back, the user has left; announce it. Whether it did."""
    if not presence.confirm_leave(check.channel, check.user, check.left_at):
        return False
    events.emit([events.presence_left(check.channel, check.user, check.left_at)])  # above the cap too
    announce(check.endpoint, check.channel, check.user, "leave")
    return True


def announce(endpoint: str, channel: str, user: str, state: str) -> None:
    """Tell the channel's members that a user entered or left, unless it has grown past
    PRESENCE_EVENTS_MAX_USERS users."""
    online = presence.users_online(channel)
    if online > PRESENCE_EVENTS_MAX_USERS:
        logger.info("No presence events in %s: %d users online", channel, online)
        return
    payload = frames.presence_change(channel, user, state)
    # Through the workers, paced to the posting budget: a presence event is cheap to delay by an
    # SQS hop and costly in bulk (docs/production.md: the route throttles' arithmetic).
    try:
        dispatch.queue(
            endpoint, members.member_ids(channel), payload, f"presence-{uuid.uuid4().hex}", int(time.time() * 1000)
        )
    except aws.AWS_ERRORS:  # the join or leave itself is done; getPresence still tells the truth
        logger.exception("Could not announce that %s %s %s", user, "entered" if state == "enter" else "left", channel)


def require_access(caller: Caller, channel: str, check_bans: bool = True) -> str:
    """The caller's user, or 403 unless it is signed in, its token's claim (if any) covers the
    channel, and no moderator banned it from the channel (or the service: chat/moderation.py)."""
    if caller.user is None:
        raise Refusal("forbidden", "Channels need a signed-in connection: connect with a token.")
    if not allowed(caller.channels, channel):
        raise Refusal("forbidden", f'Your token does not allow channel "{channel}".')
    if check_bans:
        _refuse_if_banned(caller.user, channel)
    return caller.user


def _refuse_if_banned(user: str, channel: str) -> None:
    ban = bans.active(user, channel, int(time.time() * 1000))
    if ban is not None:
        raise Refusal("banned", frames.ban_text(ban.channel, ban.until_ms, ban.reason))


def _refuse_if_banned_since(channel: str, connection_id: str, user: str) -> None:
    """A ban written while this join was on its way: the ban took out the memberships it found
    before this one was written, so the join takes itself back (read after the write: either
    the ban sees the membership, or this sees the ban)."""
    try:
        _refuse_if_banned(user, channel)
    except Refusal:
        members.leave(channel, connection_id, user)
        raise


def moderates(caller: Caller, channel: str | None) -> bool:
    """Whether the caller's token moderates the channel (its `moderates` claim, the `channels`
    claim's syntax), or with `channel` None the room (only "*"). No claim: nothing."""
    if caller.moderates is None or caller.user is None:
        return False
    return "*" in caller.moderates if channel is None else allowed(caller.moderates, channel)


def allowed(patterns: tuple[str, ...] | None, channel: str) -> bool:
    """None: no claim, every channel. Otherwise a name, or a prefix before a final "*"."""
    if patterns is None:
        return True
    return any(
        channel == pattern or (pattern.endswith("*") and channel.startswith(pattern[:-1])) for pattern in patterns
    )


def _requested_channel(caller: Caller, body: str | None, example: str, check_bans: bool = True) -> tuple[str, str]:
    """The channel a join or leave names, and the user it is for."""
    request = parse_request(body, example)
    channel = require_channel(request.get("channel"))
    return channel, require_access(caller, channel, check_bans)
