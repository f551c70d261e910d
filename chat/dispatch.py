"""Sending one frame to many connections: small audiences are posted to at once from this
invocation (the lowest latency); larger ones are cut into jobs for the delivery workers, through
SQS, so no audience is bounded by one invocation (and a busy room or channel's messages go out
in rounds: chat/rounds.py). Connections found gone are forgotten."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterable

from chat import delivery, fanout, sessions
from chat.jobs import DeliveryJob
from chat.telemetry import logger


def small(connection_ids: Iterable[str]) -> list[str] | None:
    """The connections, if few enough (fanout.FANOUT_THRESHOLD) to post to from this invocation;
    None if there are more (only the first few are read)."""
    first = list(itertools.islice(connection_ids, fanout.FANOUT_THRESHOLD + 1))
    return first if len(first) <= fanout.FANOUT_THRESHOLD else None


def post(
    endpoint: str,
    connection_ids: Iterable[str],
    payload: bytes,
    message_id: str,
    retry: bool = True,
    sent_at_ms: int | None = None,
) -> frozenset[str]:
    """Post the payload to every connection from this invocation: the ones it reached, or handed
    on. Those whose post failed (a timeout, a 5xx, throttled in every round) go to the delivery
    workers, as a failed job's would (`retry`; False for what is stale by then, such as typing):
    a loaded moment must not cost a member a message. `sent_at_ms`: when the message was sent,
    for the workers' DeliveryLag."""
    outcomes = delivery.post_to_connections(endpoint, connection_ids, payload)
    sessions.forget(delivery.gone(outcomes), endpoint)
    logger.info("Delivered %s", message_id, extra=delivery.summary(outcomes))
    failed = [cid for cid, outcome in outcomes.items() if outcome in delivery.RETRIABLE] if retry else []
    when = int(time.time() * 1000) if sent_at_ms is None else sent_at_ms
    for batch in fanout.batched(failed, fanout.DELIVERY_BATCH_SIZE):
        fanout.retry_failed(DeliveryJob(message_id, endpoint, payload, batch, sent_at_ms=when), batch)
    return frozenset(cid for cid, outcome in outcomes.items() if outcome == delivery.SENT).union(failed)


def queue(endpoint: str, connection_ids: Iterable[str], payload: bytes, message_id: str, sent_at_ms: int) -> None:
    """Hand the payload to the delivery workers whatever the audience: their posts are paced to
    the posting budget (presence events: cheap to delay, costly in bulk)."""
    counts = fanout.fan_out(endpoint, connection_ids, payload, {"id": message_id, "sent_at_ms": sent_at_ms})
    logger.info("Queued %s for the workers", message_id, extra=counts)
