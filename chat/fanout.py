"""Large rooms and channels: the message is cut into delivery jobs (one batch of connection ids
each) on the SQS queue, for the delivery workers, so no audience is bounded by one invocation."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
import re
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator

from botocore.config import Config
from botocore.exceptions import ClientError

from chat import aws, delivery

DEFAULT_DELIVERY_QUEUE = "serverless-websocket-delivery"
# Audiences (the room, a channel) up to this many connections are posted to by sendMessage
# itself; larger ones go to the delivery workers through SQS (docs/delivery.md: "Two delivery paths" says
# how this was chosen).
FANOUT_THRESHOLD = int(os.environ.get("FANOUT_THRESHOLD", "200"))
# Connection ids per SQS message (one job); a worker gets up to `batchSize` jobs at a time.
DELIVERY_BATCH_SIZE = int(os.environ.get("DELIVERY_BATCH_SIZE", "500"))
# SendMessageBatch: at most 256 KiB for all its messages together.
SQS_BATCH_BYTES = 256 * 1024
# A job is tried this many times (its failed connections queued again after each) at most.
MAX_DELIVERY_ATTEMPTS = 4
# What a job may hold: far more connections than DELIVERY_BATCH_SIZE ever puts in one (SQS's
# 256 KB caps a body anyway); connection and message ids are short printable ASCII.
MAX_JOB_CONNECTIONS = 10_000
JOB_VERSION = 1
JOB_FIELDS = frozenset({"v", "message_id", "endpoint", "payload", "connections", "attempt", "sent_at_ms"})
CONNECTION_ID_PATTERN = re.compile(r"[!-~]{1,128}")
MESSAGE_ID_PATTERN = re.compile(r"[!-~]{1,64}")
# The worker queues jobs again (what it had no time for, what failed) near the end of its
# invocation: a bounded call, so that it always ends in time. Two attempts of at most 2 s to
# connect and 3 s to read.
REQUEUE_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 2})


class PoisonJob(ValueError):
    """An SQS record that is not a delivery job: it fails until it lands in the DLQ."""


@dataclass(frozen=True)
class DeliveryJob:
    """One message to post to one batch of connections: the body of one SQS message."""

    message_id: str
    endpoint: str
    payload: bytes
    connections: tuple[str, ...]
    attempt: int = 1
    sent_at_ms: int = 0  # when the message was sent, for the DeliveryLag metric

    def to_body(self) -> str:
        # The payload as base64: SQS bodies may not hold every character JSON text can (U+FFFF).
        return json.dumps({
            "v": 1,
            "message_id": self.message_id,
            "endpoint": self.endpoint,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "connections": list(self.connections),
            "attempt": self.attempt,
            "sent_at_ms": self.sent_at_ms,
        })

    @classmethod
    def from_body(cls, body: str) -> DeliveryJob:
        """The job in an SQS body, checked in full (version, every field's type and range): a
        body that is not exactly a job raises PoisonJob and is never posted from."""
        try:
            document = json.loads(body)
        except ValueError as error:
            raise PoisonJob(f"not a delivery job: not JSON: {error}") from None
        if not isinstance(document, dict):
            raise PoisonJob("not a delivery job: not a JSON object")
        problem = _job_problem(document)
        if problem:
            raise PoisonJob(f"not a delivery job: {problem}")
        try:
            payload = base64.b64decode(document["payload"], validate=True)
        except (ValueError, binascii.Error) as error:
            raise PoisonJob(f"not a delivery job: payload is not base64: {error}") from None
        if not payload:
            raise PoisonJob("not a delivery job: the payload is empty")
        return cls(
            message_id=document["message_id"],
            endpoint=document["endpoint"],
            payload=payload,
            connections=tuple(document["connections"]),
            attempt=document["attempt"],
            sent_at_ms=document.get("sent_at_ms", 0),
        )


def _job_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with a job document, or None."""
    unknown = set(document) - JOB_FIELDS
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if not _is_int(document.get("v")) or document["v"] != JOB_VERSION:
        return f"version must be {JOB_VERSION}, not {document.get('v')!r}"
    message_id = document.get("message_id")
    if not isinstance(message_id, str) or not MESSAGE_ID_PATTERN.fullmatch(message_id):
        return "message_id must be 1 to 64 printable ASCII characters"
    endpoint = document.get("endpoint")
    if not (isinstance(endpoint, str) and endpoint.startswith(("https://", "http://localhost:"))):
        return f"bad endpoint {endpoint!r}"
    if not isinstance(document.get("payload"), str):
        return "payload must be base64 text"
    connections = document.get("connections")
    if not isinstance(connections, list) or not 1 <= len(connections) <= MAX_JOB_CONNECTIONS:
        return f"connections must be a list of 1 to {MAX_JOB_CONNECTIONS} ids"
    if not all(isinstance(cid, str) and CONNECTION_ID_PATTERN.fullmatch(cid) for cid in connections):
        return "connections must be ids of 1 to 128 printable ASCII characters"
    if len(set(connections)) != len(connections):
        return "a connection is listed twice"
    attempt = document.get("attempt")
    if not _is_int(attempt) or not 1 <= attempt <= MAX_DELIVERY_ATTEMPTS:
        return f"attempt must be a whole number from 1 to {MAX_DELIVERY_ATTEMPTS}, not {attempt!r}"
    sent_at_ms = document.get("sent_at_ms", 0)
    if not _is_int(sent_at_ms) or sent_at_ms < 0:
        return f"sent_at_ms must be a whole number of at least 0, not {sent_at_ms!r}"
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def fan_out(endpoint: str, connection_ids: Iterable[str], payload: bytes, message: dict[str, Any]) -> dict[str, int]:
    """Cut the recipients into jobs of DELIVERY_BATCH_SIZE and queue them for the workers."""
    batches = batched(connection_ids, DELIVERY_BATCH_SIZE)
    return enqueue(DeliveryJob(message["id"], endpoint, payload, batch, sent_at_ms=message["sent_at_ms"]) for batch in batches)


def enqueue(jobs: Iterable[DeliveryJob]) -> dict[str, int]:
    """Send the jobs to the delivery queue, up to 10 (and 256 KB) per SendMessageBatch, each
    batch as soon as it is full: the workers start on the first jobs while the rest of the
    room is still being read. Raises if any batch could not be sent."""
    sends: list[Future] = []
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
    raise ClientError({"Error": {"Code": "SendMessageBatchFailed", "Message": "entries still failing"}}, "SendMessageBatch")


def requeue(job: DeliveryJob, delay_seconds: int) -> None:
    """Put one job back on the queue, visible after the delay (SQS: at most 900 s), through
    the bounded client (REQUEUE_CLIENT_CONFIG)."""
    requeue_client().send_message(QueueUrl=queue_url(), MessageBody=job.to_body(), DelaySeconds=delay_seconds)


def release(receipt_handle: str) -> None:
    """Make a received record visible again at once, instead of after the queue's visibility
    timeout (360 s): a record that is not a job then reaches the dead-letter queue after its
    5 receives within seconds. Needs sqs:ChangeMessageVisibility on the queue."""
    requeue_client().change_message_visibility(QueueUrl=queue_url(), ReceiptHandle=receipt_handle, VisibilityTimeout=0)


def sqs_client() -> Any:
    return aws.client("sqs")


def requeue_client() -> Any:
    return aws.client("sqs", REQUEUE_CLIENT_CONFIG)


@lru_cache(maxsize=None)
def queue_url() -> str:
    """Looked up by name once per container: offline, a queue URL in the environment cannot be
    built from the template (serverless-offline leaves Ref unresolved)."""
    name = os.environ.get("DELIVERY_QUEUE_NAME", DEFAULT_DELIVERY_QUEUE)
    return sqs_client().get_queue_url(QueueName=name)["QueueUrl"]


def batched(items: Iterable[str], size: int) -> Iterator[tuple[str, ...]]:
    iterator = iter(items)
    while batch := tuple(itertools.islice(iterator, size)):
        yield batch
