"""Large rooms and channels: the message is cut into delivery jobs (one batch of connection ids
each) on the SQS queue, for the delivery workers, so no audience is bounded by one invocation.
The workers post at the posting budget; what is over it waits in the queue, up to
MAX_BACKLOG_SECONDS of the budget's work: beyond that, room and channel messages are refused
before they are stored (`admit`), so the wait stays bounded."""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future
from dataclasses import replace
from functools import cache
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from chat import aws, delivery
from chat.errors import Refusal
from chat.jobs import EVENTS_PER_JOB, MAX_DELIVERY_ATTEMPTS, DeliveryJob, EventsJob, RoundJob
from chat.telemetry import count, logger

DEFAULT_DELIVERY_QUEUE = "serverless-websocket-delivery"
# Audiences (the room, a channel) up to this many connections are posted to by sendMessage
# itself; larger ones go to the delivery workers through SQS (docs/delivery.md: "Two delivery paths" says
# how this was chosen).
FANOUT_THRESHOLD = int(os.environ.get("FANOUT_THRESHOLD", "10"))
# Posts a second all delivery workers together make (each paces itself to its share).
POSTING_BUDGET_PER_SECOND = float(os.environ.get("POSTING_BUDGET_PER_SECOND", "2500"))
# The longest wait a queued message may have: beyond this many seconds of the budget's work
# already queued, room and channel messages are refused (rate_limited, retry) and not stored.
MAX_BACKLOG_SECONDS = float(os.environ.get("MAX_BACKLOG_SECONDS", "30"))
# The queue's depth is read at most this often per container.
BACKLOG_READ_SECONDS = 1.0
BACKLOGGED = "The service is delivering a backlog of messages: this one was not stored; send it again in a few seconds."
# Connection ids per SQS message (one job); a worker gets up to `batchSize` jobs at a time.
DELIVERY_BATCH_SIZE = int(os.environ.get("DELIVERY_BATCH_SIZE", "500"))
# SendMessageBatch: at most 256 KiB for all its messages together.
SQS_BATCH_BYTES = 256 * 1024
# The worker queues jobs again (what it had no time for, what failed) near the end of its
# invocation: a bounded call, so that it always ends in time. Two attempts of at most 2 s to
# connect and 3 s to read.
REQUEUE_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 2})


_backlog: dict[str, float] = {}
_backlog_lock = threading.Lock()


def admit() -> None:
    """Refuse (rate_limited) a room or channel message while the workers' queue holds more than
    MAX_BACKLOG_SECONDS of the posting budget's work: an upper bound, every job counted full."""
    if MAX_BACKLOG_SECONDS > 0 and backlog_seconds() > MAX_BACKLOG_SECONDS:
        count("MessagesBacklogged")
        raise Refusal("rate_limited", BACKLOGGED)


def backlog_seconds() -> float:
    """How long the workers need for what is queued, at the posting budget (read at most once a
    BACKLOG_READ_SECONDS per container; 0 when the queue cannot be read: delivery decides)."""
    now = time.monotonic()
    with _backlog_lock:
        if now - _backlog.get("read_at", -BACKLOG_READ_SECONDS) < BACKLOG_READ_SECONDS:
            return _backlog.get("seconds", 0.0)  # another thread is reading it now
        _backlog["read_at"] = now
    try:
        attributes = sqs_client().get_queue_attributes(
            QueueUrl=queue_url(),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        jobs = sum(int(value) for value in attributes.values())
    except aws.AWS_ERRORS:
        logger.warning("Could not read the delivery queue's depth", exc_info=True)
        jobs = 0
    seconds = jobs * DELIVERY_BATCH_SIZE / POSTING_BUDGET_PER_SECOND
    with _backlog_lock:
        _backlog["seconds"] = seconds
    return seconds


def fan_out(endpoint: str, connection_ids: Iterable[str], payload: bytes, message: dict[str, Any]) -> dict[str, int]:
    """Cut the recipients into jobs of DELIVERY_BATCH_SIZE and queue them for the workers."""
    batches = batched(connection_ids, DELIVERY_BATCH_SIZE)
    return enqueue(
        DeliveryJob(message["id"], endpoint, payload, batch, sent_at_ms=message["sent_at_ms"]) for batch in batches
    )


def enqueue(jobs: Iterable[DeliveryJob]) -> dict[str, int]:
    """Send the jobs to the delivery queue, up to 10 (and 256 KB) per SendMessageBatch, each
    batch as soon as it is full: the workers start on the first jobs while the rest of the
    room is still being read. Raises if any batch could not be sent."""
    sends: list[Future[None]] = []
    bodies: list[str] = []
    size = jobs_sent = connections = 0
    for job in jobs:
        body = job.to_body()
        if len(bodies) == 10 or size + len(body) > SQS_BATCH_BYTES:
            sends.append(delivery.post_pool().submit(_send_batch, bodies))
            bodies, size = [], 0
        bodies.append(body)
        size += len(body)
        jobs_sent += 1
        connections += len(job.connections)
    if bodies:
        sends.append(delivery.post_pool().submit(_send_batch, bodies))
    for send in sends:
        send.result()
    return {"queued": connections, "jobs": jobs_sent}


def _send_batch(bodies: list[str]) -> None:
    entries = [{"Id": str(n), "MessageBody": body} for n, body in enumerate(bodies)]
    for _ in range(3):
        failed = sqs_client().send_message_batch(QueueUrl=queue_url(), Entries=entries).get("Failed", [])
        if not failed:
            return
        retry = {entry["Id"] for entry in failed if not entry.get("SenderFault")}
        if len(retry) < len(failed):
            raise ClientError({"Error": {"Code": "SendMessageBatchFailed", "Message": str(failed)}}, "SendMessageBatch")
        entries = [entry for entry in entries if entry["Id"] in retry]
    raise ClientError(
        {"Error": {"Code": "SendMessageBatchFailed", "Message": "entries still failing"}}, "SendMessageBatch"
    )


def requeue(job: DeliveryJob, delay_seconds: int) -> None:
    """Put one job back on the queue, visible after the delay (SQS: at most 900 s), through
    the bounded client (REQUEUE_CLIENT_CONFIG)."""
    requeue_client().send_message(QueueUrl=queue_url(), MessageBody=job.to_body(), DelaySeconds=delay_seconds)


def retry_failed(job: DeliveryJob, failed: Iterable[str]) -> None:
    """Queue the connections whose post failed (timed out, 5xx, still throttled) again as a job
    of their own, the next attempt, after a delay that grows with each attempt; given up (logged)
    after MAX_DELIVERY_ATTEMPTS. A worker's job and the sender's inline posts end here alike."""
    failed = tuple(failed)
    if job.attempt >= MAX_DELIVERY_ATTEMPTS:
        logger.error(
            "Gave up delivering %s to %d connections after %d attempts", job.message_id, len(failed), job.attempt
        )
        return
    try:
        requeue(replace(job, connections=failed, attempt=job.attempt + 1), retry_delay_seconds(job.attempt))
    except aws.AWS_ERRORS:
        logger.exception("Could not queue %s again for %d connections; they miss it", job.message_id, len(failed))


def retry_delay_seconds(attempt: int) -> int:
    """How long a job's failed connections wait in the queue: 10 s, 20 s, 40 s (SQS: <= 900)."""
    return min(900, 5 * (1 << attempt))


def schedule(job: DeliveryJob | RoundJob, delay_seconds: int = 0) -> None:
    """Queue one job for the workers, visible after the delay (SQS: at most 900 s)."""
    sqs_client().send_message(QueueUrl=queue_url(), MessageBody=job.to_body(), DelaySeconds=delay_seconds)


def queue_events(entries: list[dict[str, str]]) -> None:
    """EventBridge entries for a worker to send, up to EVENTS_PER_JOB (and SQS_BATCH_BYTES) a message."""
    batch: list[dict[str, str]] = []
    for entry in entries:
        if batch and (
            len(batch) == EVENTS_PER_JOB or len(EventsJob(tuple(batch + [entry])).to_body().encode()) > SQS_BATCH_BYTES
        ):
            sqs_client().send_message(QueueUrl=queue_url(), MessageBody=EventsJob(tuple(batch)).to_body())
            batch = []
        batch.append(entry)
    if batch:
        sqs_client().send_message(QueueUrl=queue_url(), MessageBody=EventsJob(tuple(batch)).to_body())


def release(receipt_handle: str) -> None:
    """Make a received record visible again at once, instead of after the queue's visibility
    timeout (360 s): a record that is not a job then reaches the dead-letter queue after its
    5 receives within seconds. Needs sqs:ChangeMessageVisibility on the queue."""
    requeue_client().change_message_visibility(QueueUrl=queue_url(), ReceiptHandle=receipt_handle, VisibilityTimeout=0)


def sqs_client() -> Any:
    return aws.client("sqs")


def requeue_client() -> Any:
    return aws.client("sqs", REQUEUE_CLIENT_CONFIG)


@cache
def queue_url() -> str:
    """Looked up by name once per container: offline, a queue URL in the environment cannot be
    built from the template (serverless-offline leaves Ref unresolved)."""
    name = os.environ.get("DELIVERY_QUEUE_NAME", DEFAULT_DELIVERY_QUEUE)
    return str(sqs_client().get_queue_url(QueueName=name)["QueueUrl"])


def batched(items: Iterable[str], size: int) -> Iterator[tuple[str, ...]]:
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch
