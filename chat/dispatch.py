"""Sending one frame to many connections: small audiences are posted to at once from this
invocation (the lowest latency); larger ones are cut into jobs for the delivery workers, through
SQS, so no audience is bounded by one invocation. Connections found gone are forgotten."""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from chat import delivery, fanout, sessions
from chat.telemetry import logger


def broadcast(
    endpoint: str, connection_ids: Iterable[str], payload: bytes, message_id: str, sent_at_ms: int, *, inline_only: bool
) -> frozenset[str]:
    """Post (or queue) the payload to the connections; the ones posted to from here. With
    inline_only (a DM: the sender learns who got it live), all are posted to from here."""
    ids = iter(connection_ids)
    first = list(itertools.islice(ids, None if inline_only else fanout.FANOUT_THRESHOLD + 1))
    if inline_only or len(first) <= fanout.FANOUT_THRESHOLD:
        outcomes = delivery.post_to_connections(endpoint, first, payload)
        sessions.forget(delivery.gone(outcomes), endpoint)
        logger.info("Delivered %s", message_id, extra=delivery.summary(outcomes))
        return frozenset(cid for cid, outcome in outcomes.items() if outcome == delivery.SENT)
    queue(endpoint, itertools.chain(first, ids), payload, message_id, sent_at_ms)
    return frozenset()


def queue(endpoint: str, connection_ids: Iterable[str], payload: bytes, message_id: str, sent_at_ms: int) -> None:
    """Hand the payload to the delivery workers whatever the audience: their posts are paced to
    the posting budget (presence events: cheap to delay, costly in bulk)."""
    counts = fanout.fan_out(endpoint, connection_ids, payload, {"id": message_id, "sent_at_ms": sent_at_ms})
    logger.info("Queued %s for the workers", message_id, extra=counts)
