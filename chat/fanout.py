"""Large rooms and channels: the message is cut into delivery jobs (one batch of connection ids
each) on the SQS queue, for the delivery workers, so no audience is bounded by one invocation."""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import os
from concurrent.futures import Future
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterable, Iterator

from botocore.exceptions import ClientError

from chat import aws, delivery

DEFAULT_DELIVERY_QUEUE = "serverless-websocket-delivery"
# Audiences (the room, a channel) up to this many connections are posted to by sendMessage
# itself; larger ones go to the delivery workers through SQS (README: "Two delivery paths" says
# how this was chosen).
FANOUT_THRESHOLD = int(os.environ.get("FANOUT_THRESHOLD", "200"))
# Connection ids per SQS message (one job); a worker gets up to `batchSize` jobs at a time.
DELIVERY_BATCH_SIZE = int(os.environ.get("DELIVERY_BATCH_SIZE", "500"))
# SendMessageBatch: at most 256 KiB for all its messages together.
SQS_BATCH_BYTES = 256 * 1024


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
        try:
            document = json.loads(body)
            job = cls(
                message_id=str(document["message_id"]),
                endpoint=document["endpoint"],
                payload=base64.b64decode(document["payload"], validate=True),
                connections=tuple(document["connections"]),
                attempt=int(document["attempt"]),
                sent_at_ms=int(document.get("sent_at_ms", 0)),
            )
        except (ValueError, TypeError, KeyError, binascii.Error) as error:
            raise PoisonJob(f"not a delivery job: {type(error).__name__}: {error}") from None
        if not (isinstance(job.endpoint, str) and job.endpoint.startswith(("https://", "http://localhost:"))):
            raise PoisonJob(f"not a delivery job: bad endpoint {job.endpoint!r}")
        if not job.connections or not all(isinstance(cid, str) and cid for cid in job.connections):
            raise PoisonJob("not a delivery job: connections must be a list of ids")
        return job


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
    """Put one job back on the queue, visible after the delay (SQS: at most 900 s)."""
    sqs_client().send_message(QueueUrl=queue_url(), MessageBody=job.to_body(), DelaySeconds=delay_seconds)


def sqs_client() -> Any:
    return aws.client("sqs")


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
