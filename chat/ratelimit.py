"""How many messages a connection may send: GCRA, the token bucket kept as one number on the
connection's row, checked with one conditional write per message."""

from __future__ import annotations

import os
import time

from chat import connections
from chat.requests import BadMessage

# Per connection: at most MESSAGE_RATE_PER_SECOND messages a second on average and MESSAGE_BURST
# at once (sendMessage, sendDirectMessage and getRecentMessages together); 0 turns it off.
MESSAGE_RATE_PER_SECOND = float(os.environ.get("MESSAGE_RATE_PER_SECOND", "5"))
MESSAGE_BURST = int(os.environ.get("MESSAGE_BURST", "10"))

RATE_LIMITED = (
    f"Too many messages: at most {MESSAGE_RATE_PER_SECOND:g} a second ({MESSAGE_BURST} at once) per connection. "
    "This one was not sent; wait a moment."
)


def enforce(connection_id: str | None) -> None:
    """`tat` is the time (ms) at which the connection's bucket is full again. No read: the
    first write applies to an idle connection, the second to one within its burst; when both
    conditions fail the connection is over its limit (or has no row, and is not limited)."""
    if MESSAGE_RATE_PER_SECOND <= 0 or not connection_id:
        return
    table = connections.table()
    interval = max(1, round(1000 / MESSAGE_RATE_PER_SECOND))
    now = int(time.time() * 1000)
    key = {"connection_id": connection_id}
    attempts = (
        ("SET tat = :next", "attribute_exists(connection_id) AND (attribute_not_exists(tat) OR tat <= :now)",
         {":next": now + interval, ":now": now}),
        ("SET tat = tat + :interval", "attribute_exists(connection_id) AND tat <= :limit",
         {":interval": interval, ":limit": now + (MESSAGE_BURST - 1) * interval}),
    )
    for update, condition, values in attempts:
        try:
            table.update_item(Key=key, UpdateExpression=update, ConditionExpression=condition, ExpressionAttributeValues=values)
            return
        except table.meta.client.exceptions.ConditionalCheckFailedException:
            continue
    if "Item" not in table.get_item(Key=key, ProjectionExpression="connection_id"):
        return  # no row (already pruned, or an event from a test): nothing to limit
    raise BadMessage(RATE_LIMITED, 429)
