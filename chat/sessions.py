"""A connection's life: it opens on $connect (the row that makes it reachable) and ends on
$disconnect, or when a post finds it gone. Every end goes through `forget`, so the row and the
channel memberships cannot disagree."""

from __future__ import annotations

from chat import aws, connections, members
from chat.callers import Caller
from chat.telemetry import logger


def open_session(caller: Caller, connected_at: int) -> str:
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


def forget(connection_ids: list[str]) -> None:
    """Connections a post found gone (no $disconnect came, or not yet): their memberships and
    rows are deleted. A failure here is logged, not raised: the message was delivered, and the
    rows expire by TTL anyway."""
    if not connection_ids:
        return
    logger.info("Deleting %d gone connections", len(connection_ids))
    try:
        members.remove_memberships(connections.rows(connection_ids))
        connections.delete_all(connection_ids)
    except aws.AWS_ERRORS:
        logger.exception("Could not delete %d gone connections", len(connection_ids))
