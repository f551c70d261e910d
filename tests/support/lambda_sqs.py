"""Fakes of what runs the delivery worker on AWS: Lambda's context (the time left), Lambda's SQS
event source mapping over moto's queue, and moto's SQS clock, which a test can move."""

from __future__ import annotations

import time
from typing import Any

import boto3

from chat import jobs
from tests.support.events import REGION
from tests.support.helpers import queue_depth


class FakeLambdaContext:
    """What the worker reads of its context: the time left, running down in real time from
    `remaining_ms` as Lambda's does (so a worker that overruns its invocation shows it)."""

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self.remaining_ms = remaining_ms
        self._started = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms - int((time.monotonic() - self._started) * 1000)


class EventSourceMapping:
    """Lambda's SQS event source mapping, on moto's queue: receive up to `batch_size`
    messages, invoke the worker with them, delete the ones it did not report as failed. A
    failed one stays where SQS leaves it: invisible for the queue's visibility timeout (360 s,
    from serverless.yml), unless the worker itself makes it visible. moto's SQS clock is
    `sqs_clock`: `advance(seconds)` moves it, so a test sees that wait without sleeping; moto's
    redrive policy moves a record to the DLQ after maxReceiveCount receives."""

    def __init__(self, handler: Any, urls: dict[str, str], clock: SqsClock, batch_size: int = 5) -> None:
        self.handler = handler
        self.sqs = boto3.client("sqs")
        self.queue = urls["DeliveryQueue"]
        self.dead_letters = urls["DeliveryDeadLetterQueue"]
        self.batch_size = batch_size
        self.clock = clock
        self.invocations: list[dict[str, Any]] = []

    def advance(self, seconds: float) -> None:
        """Let this much time pass for SQS (visibility timeouts, delays)."""
        self.clock.offset += seconds

    def send_raw(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=body)

    def pending_jobs(self) -> list[Any]:
        """The jobs waiting in the queue, read without taking them."""
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
        found = []
        while messages.get("Messages"):
            found += [jobs.DeliveryJob.from_body(m["Body"]) for m in messages["Messages"]]
            for message in messages["Messages"]:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
        for job in found:
            self.sqs.send_message(QueueUrl=self.queue, MessageBody=job.to_body())
        return found

    def drain(self, context: FakeLambdaContext | None = None, max_invocations: int = 500) -> None:
        for _ in range(max_invocations):
            received = self.sqs.receive_message(
                QueueUrl=self.queue, MaxNumberOfMessages=self.batch_size, AttributeNames=["All"], MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not received:
                return
            event = {"Records": [self._record(message) for message in received]}
            response = self.handler.deliver_messages(event, context or FakeLambdaContext())
            self.invocations.append(response)
            failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
            for message in received:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        raise AssertionError("the delivery queue did not drain")

    def count(self, url: str) -> int:
        return queue_depth(self.sqs, url)

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:delivery",
            "awsRegion": REGION,
        }


class SqsClock:
    """moto's SQS clock (visibility timeouts, delays, retention): real time plus `offset`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def unix_time(self, dt: Any = None) -> float:
        return _moto_unix_time(dt) + (0.0 if dt is not None else self.offset)

    def unix_time_millis(self, dt: Any = None) -> float:
        return self.unix_time(dt) * 1000.0


def _moto_unix_time(dt: Any = None) -> float:
    from moto.core.utils import unix_time

    return unix_time(dt)
