"""A connection's life: it opens on $connect (the row that makes it reachable), lasts while its
token does (renewed with renewToken), and ends on $disconnect, when a post or the sweeper finds
it gone, or when its token expires. Every end takes the connection out of its channels (and the
user's presence) before its row goes, so the row, the memberships and presence cannot disagree."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from chat import aws, bans, connections, delivery, events, fanout, frames, jobs, members, presence, ratelimit, verifier
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import RENEW_EXAMPLE, parse_request
from chat.telemetry import count, logger

# The notice that a token expires, sent this long before (chat/sweeper.py sends it for the rest).
EXPIRY_NOTICE_SECONDS = connections.EXPIRY_NOTICE_SECONDS
# How long after $connect the notice for a token already expiring is posted: API Gateway answers
# 410 to a post until the handshake is done.
NOTICE_DELAY_SECONDS = 2


def open_session(caller: Caller, connected_at: int) -> str:
    """The row that makes the connection reachable, unless its user connects too often or already
    has as many open connections as one user may (then $connect answers 429 and API Gateway
    refuses the handshake). A token already within the notice window is told so at once."""
    try:
        ratelimit.charge_connect(caller.user)
        expiring = (
            caller.token_expires_at is not None and caller.token_expires_at - EXPIRY_NOTICE_SECONDS <= time.time()
        )
        _store(caller, connected_at, notified=expiring)
        _refuse_if_banned(caller)
    except Refusal:
        count("ConnectionsRefused")
        raise
    if expiring and caller.token_expires_at is not None:
        _notify_soon(caller, caller.token_expires_at)
    events.emit([events.connection_opened(caller.user, caller.connection_id, connected_at * 1000)])
    return "Connect successful."


def _refuse_if_banned(caller: Caller) -> None:
    """A user banned from the service is refused (403), its row taken back. Checked after the row
    is stored, so that a ban acknowledged meanwhile either sees the row (and closes it) or is
    seen here. If the check itself fails, the row goes too: no connection is left half made."""
    if caller.user is None:
        return
    try:
        ban = bans.active(caller.user, None, int(time.time() * 1000))
    except aws.AWS_ERRORS:
        _take_back(caller.connection_id)
        raise
    if ban is not None:
        _take_back(caller.connection_id)
        raise Refusal("banned", frames.ban_text(None, ban.until_ms, ban.reason))


def _take_back(connection_id: str) -> None:
    old = connections.delete(connection_id)
    _release_slots([old] if old is not None else [])


def _store(caller: Caller, connected_at: int, notified: bool) -> None:
    """The row, in one transaction with a free slot of the user's (one conditional write each:
    the cap holds however many connect at once); anonymous connections are not capped."""
    user, expires_at = caller.user, caller.token_expires_at
    if user is None or ratelimit.MAX_CONNECTIONS_PER_USER <= 0:
        connections.connect(caller.connection_id, connected_at, user, expires_at, notified=notified)
        return
    now = int(time.time())
    until = now + connections.CONNECTION_LIFETIME_SECONDS  # API Gateway has closed it by then
    for slot in ratelimit.slots(user):
        claim = ratelimit.slot_claim_item(slot, caller.connection_id, now, until)
        try:
            connections.connect(caller.connection_id, connected_at, user, expires_at, slot, claim, notified=notified)
            return
        except aws.Cancelled as cancelled:
            if not cancelled.failed(1):
                raise
    raise ratelimit.too_many_connections(user)


def _notify_soon(caller: Caller, expires_at: int) -> None:
    """tokenExpiring for a connection whose token expires within the notice window already: the
    sweeper would find it expired before it sent the notice. Nothing can be posted to a connection
    during its own $connect, so the notice goes through the delivery queue, a moment later."""
    endpoint = delivery.management_endpoint(caller.request_context)
    job = jobs.DeliveryJob(
        f"expiring-{caller.connection_id}"[:64],
        endpoint,
        frames.token_expiring(expires_at),
        (caller.connection_id,),
        sent_at_ms=int(time.time() * 1000),
    )
    try:
        fanout.schedule(job, NOTICE_DELAY_SECONDS)
    except aws.AWS_ERRORS:
        logger.exception("Could not queue the expiry notice of %s", caller.connection_id)


def require_live(caller: Caller) -> None:
    """Every frame: a connection whose token has expired (and was not renewed) is told so and
    closed, and the frame refused. No read while the token it connected with is valid."""
    if caller.token_expires_at is None or time.time() < caller.token_expires_at:
        return
    row = connections.row(caller.connection_id)
    if row is not None and time.time() < int(row.get("expires_at", 0)):
        return  # renewed
    end_expired(caller.connection_id, delivery.management_endpoint(caller.request_context))
    raise Refusal("token_expired", frames.EXPIRED)


def end_expired(connection_id: str, endpoint: str) -> None:
    """Tell the connection why, close it (DeleteConnection), and clean up as $disconnect would:
    API Gateway's own $disconnect for it is best effort."""
    delivery.post_to_connection(delivery.management_client(endpoint), connection_id, frames.expired())
    delivery.close(endpoint, connection_id)
    end(connection_id, endpoint, "expired")


def end(connection_id: str, endpoint: str, reason: str) -> None:
    """Clean up one connection that is gone or closed: its channels, then its row, then its slot.
    Whoever deletes the row sends connection.closed with `reason` (events.CLOSE_REASONS)."""
    row = connections.row(connection_id)
    if row is not None:
        _leave_channels([row], endpoint)
    old = connections.delete(connection_id)
    if old is not None:
        events.emit([events.connection_closed(old.get("user_id"), connection_id, reason)])
    _release_slots([old] if old is not None else [])


def renew(caller: Caller, body: str | None) -> frames.Reply:
    """renewToken: a valid token from the same issuer (or the service's own, for a connection made
    with one) for the same user, with the same channels and moderates claims and a later expiry,
    extends the connection; any other token is refused (403) and changes nothing."""
    if caller.user is None:
        raise Refusal("forbidden", "Only a signed-in connection has a token to renew.")
    request = parse_request(body, RENEW_EXAMPLE)
    token = request.get("token")
    if not isinstance(token, str) or not token:
        raise Refusal("bad_request", '"token" must be a JWT: ' + RENEW_EXAMPLE + ".")
    try:
        identity = verifier.verify(token)
    except verifier.InvalidToken as error:
        logger.info("Refused renewal for %s: %s", caller.connection_id, error)
        raise Refusal(
            "forbidden", "The token is not valid (malformed, wrongly signed or expired): nothing was renewed."
        ) from None
    if identity.issuer != caller.issuer:
        raise Refusal(
            "forbidden", "The token is from another issuer: a connection keeps its issuer. Nothing was renewed."
        )
    if identity.user != caller.user:
        raise Refusal("forbidden", "The token is for another user: a connection keeps its user. Nothing was renewed.")
    if _as_set(identity.channels) != _as_set(caller.channels):
        raise Refusal(
            "forbidden",
            "The token allows other channels than this connection's: reconnect to change them. Nothing was renewed.",
        )
    if _as_set(identity.moderates) != _as_set(caller.moderates):
        raise Refusal(
            "forbidden",
            "The token moderates other channels than this connection's: reconnect to change them. Nothing was renewed.",
        )
    if not connections.renew(caller.connection_id, identity.expires_at, int(time.time())):
        raise Refusal("forbidden", "The token does not expire later than this connection's: nothing was renewed.")
    return frames.renewed(identity.expires_at)


def _as_set(patterns: Iterable[str] | None) -> frozenset[str] | None:
    """A channels claim as what it allows: its order and repeats mean nothing."""
    return None if patterns is None else frozenset(patterns)


def close_session(caller: Caller) -> str:
    """$disconnect: the memberships first, then the row that lists them, so a failure part-way
    leaves the row to find them by (the next post to the connection answers 410)."""
    end(caller.connection_id, delivery.management_endpoint(caller.request_context), "disconnect")
    return "Disconnect successful."


def _leave_channels(rows: list[dict[str, Any]], endpoint: str, deadline: float | None = None) -> None:
    """Take connections out of their channels (channel.left each); where one was a user's last
    connection in a channel, the leave is announced after the grace, if nobody comes back
    (presence)."""
    departures = members.remove_memberships(rows)
    events.emit((events.channel_left(d.channel, d.user, d.connection_id, d.left_at) for d in departures), deadline)
    for gone in departures:
        if gone.kind == presence.LAST:
            presence.schedule_leave_check(jobs.LeaveCheck(gone.channel, gone.user, gone.left_at, endpoint))


def forget(connection_ids: list[str], endpoint: str, deadline: float | None = None) -> None:
    """Connections a post found gone (no $disconnect came, or not yet): their memberships, then
    their rows, are deleted; not those still in their handshake (connections.gone_rows), and
    nothing started after `deadline` (time.monotonic()). A failure here is logged, not raised:
    the message was delivered, the next 410 finds the connection again, and rows expire by TTL."""
    if not connection_ids:
        return
    try:
        gone = connections.gone_rows(connection_ids)
        _leave_channels(gone, endpoint, deadline)
    except aws.AWS_ERRORS:
        logger.exception("Could not clean up %d gone connections", len(connection_ids))
        return
    deleted = set(
        connections.prune([row["connection_id"] for row in gone], deadline=deadline, pool=delivery.post_pool())
    )
    closed = [row for row in gone if row["connection_id"] in deleted]
    events.emit(
        (events.connection_closed(row.get("user_id"), row["connection_id"], "gone") for row in closed), deadline
    )
    try:
        _release_slots(closed)
    except aws.AWS_ERRORS:  # each slot frees itself when its connection's 2 hours are up
        logger.exception("Could not free the slots of %d gone connections", len(deleted))


def _release_slots(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        if "slot" in row:
            ratelimit.release_slot(row["slot"], row["connection_id"])
