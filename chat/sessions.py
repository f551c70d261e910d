"""A connection's life: it opens on $connect (the row that makes it reachable) and ends on
$disconnect, or when a post finds it gone. Every end goes through `forget`, so the row and the
channel memberships cannot disagree."""

from __future__ import annotations

from chat import aws, connections, delivery, members, ratelimit
from chat.callers import Caller
from chat.requests import BadMessage
from chat.telemetry import count, logger


def open_session(caller: Caller, connected_at: int) -> str:
    """The row that makes the connection reachable, unless its user already has as many open
    connections as one user may (then $connect answers 429 and API Gateway refuses the
    handshake)."""
    try:
        ratelimit.admit_connection(caller.user)
    except BadMessage:
        count("ConnectionsRefused")
        raise
    connections.connect(caller.connection_id, connected_at, caller.user)  # type: ignore[arg-type]
    return "Connect successful."


def close_session(caller: Caller) -> str:
    """$disconnect: the memberships first, then the row that lists them, so a failure part-way
    leaves the row to find them by (the next post to the connection answers 410)."""
    row = connections.row(caller.connection_id)  # type: ignore[arg-type]
    if row is not None:
        members.remove_memberships([row])
    connections.delete(caller.connection_id)  # type: ignore[arg-type]
    return "Disconnect successful."


def forget(connection_ids: list[str], deadline: float | None = None) -> None:
    """Connections a post found gone (no $disconnect came, or not yet): their memberships, then
    their rows, are deleted; not those still in their handshake (connections.gone_rows), and
    nothing started after `deadline` (time.monotonic()). A failure here is logged, not raised:
    the message was delivered, the next 410 finds the connection again, and rows expire by TTL."""
    if not connection_ids:
        return
    try:
        gone = connections.gone_rows(connection_ids)
        members.remove_memberships(gone)
    except aws.AWS_ERRORS:
        logger.exception("Could not clean up %d gone connections", len(connection_ids))
        return
    connections.prune([row["connection_id"] for row in gone], deadline=deadline, pool=delivery.post_pool())
