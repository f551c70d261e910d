"""A connection's life: it opens on $connect (the row that makes it reachable) and closes on
$disconnect."""

from __future__ import annotations

from chat import connections
from chat.gateway import Caller


def open_session(caller: Caller, connected_at: int) -> str:
    connections.connect(caller.connection_id, connected_at, caller.user)  # type: ignore[arg-type]
    return "Connect successful."


def close_session(caller: Caller) -> str:
    connections.disconnect(caller.connection_id)  # type: ignore[arg-type]
    return "Disconnect successful."
