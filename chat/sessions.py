"""A connection's life: it opens on $connect (the row that makes it reachable) and closes on
$disconnect."""

from __future__ import annotations

from chat import connections, ratelimit
from chat.gateway import Caller
from chat.requests import BadMessage
from chat.telemetry import count


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
    connections.disconnect(caller.connection_id)  # type: ignore[arg-type]
    return "Disconnect successful."
