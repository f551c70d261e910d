"""Events out on the local stack (docs/events.md, "Locally"): the stage's bus in moto with a rule
that sends every event of the service to a local queue, which a thread here empties into a file,
one JSON line an event (what `make events` prints, and tests read); and the history table's
change stream fed to the events function, as Lambda's event source mapping does on AWS:
serverless-offline runs no stream events, so a thread here reads the stream (moto's DynamoDB
Streams) and invokes the function through its Lambda endpoint, resending from the first record
it reports failed. The queue is emptied at once because moto's SQS takes longer for every message
a queue holds, for each one sent to it.
"""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import IO, Any

SOURCE = "serverless-websocket"
# Stream records per invocation: serverless.yml's batchSize for the events function.
BATCH_SIZE = 100
# Lambda reads a stream's shard four times a second; after QUIET_SECONDS without a record this
# stack reads it once a second (each read is a request moto serves: four stacks reading four
# times a second for a whole test run were a few percent of both cores).
POLL_SECONDS = 0.25
QUIET_POLL_SECONDS = 1.0
QUIET_SECONDS = 10.0
# The tap's long poll: a request every so many seconds while nothing arrives.
TAP_WAIT_SECONDS = 5
RETRY_SECONDS = 1.0


def bus_name(service: str, stage: str) -> str:
    """The name the stack gives its bus (serverless.yml: EventBus)."""
    return f"{service}-{stage}"


def tap_queue_name(service: str, stage: str) -> str:
    return f"{service}-events-tap-{stage}"


def create_bus_and_tap(events: Any, sqs: Any, bus: str, queue_name: str) -> str:
    """The bus, a queue, and a rule on the bus sending every event of the service to the queue
    (as an app's own rule would: docs/events.md, "Your own rule"); the queue's URL."""
    events.create_event_bus(Name=bus)
    url = str(sqs.create_queue(QueueName=queue_name)["QueueUrl"])
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="local-tap", EventBusName=bus, EventPattern=json.dumps({"source": [SOURCE]}))
    events.put_targets(Rule="local-tap", EventBusName=bus, Targets=[{"Id": "tap", "Arn": arn}])
    return url


def lambda_records(records: list[dict[str, Any]], stream_arn: str) -> list[dict[str, Any]]:
    """GetRecords' records as Lambda hands them to a function: JSON, with the stream's ARN."""
    shaped = []
    for record in records:
        dynamodb = dict(record["dynamodb"])
        created = dynamodb.get("ApproximateCreationDateTime")
        if isinstance(created, datetime):
            dynamodb["ApproximateCreationDateTime"] = created.timestamp()
        shaped.append({**record, "dynamodb": dynamodb, "eventSourceARN": stream_arn})
    return shaped


class StreamFeeder:
    """Reads the table's stream from now on (LATEST: what the stack restored is not new) and
    invokes the events function with each batch; a reported failure resends from that record."""

    def __init__(self, streams: Any, stream_arn: str, invoke_url: str) -> None:
        self.streams = streams
        self.stream_arn = stream_arn
        self.invoke_url = invoke_url
        self.stopped = threading.Event()
        self.invocations = 0
        shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
        self.iterators = [
            streams.get_shard_iterator(StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST")[
                "ShardIterator"
            ]
            for shard in shards
        ]

    def start(self) -> None:
        threading.Thread(target=self._run, name="events-stream", daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        pending: list[list[dict[str, Any]]] = [[] for _ in self.iterators]
        last_record = time.monotonic()
        while not self.stopped.is_set():
            idle = True
            for index, iterator in enumerate(self.iterators):
                try:
                    if len(pending[index]) < BATCH_SIZE:
                        answer = self.streams.get_records(ShardIterator=iterator, Limit=BATCH_SIZE)
                        self.iterators[index] = answer.get("NextShardIterator") or iterator
                        pending[index] += lambda_records(answer.get("Records", []), self.stream_arn)
                    if pending[index]:
                        idle, last_record = False, time.monotonic()
                        pending[index] = self._deliver(pending[index])
                except Exception:  # stopping, or moto gone: the next turn tries again
                    if self.stopped.wait(RETRY_SECONDS):
                        return
            quiet = time.monotonic() - last_record > QUIET_SECONDS
            if idle and self.stopped.wait(QUIET_POLL_SECONDS if quiet else POLL_SECONDS):
                return

    def _deliver(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Invoke with up to BATCH_SIZE records; what is left to send (the failed one on)."""
        batch = records[:BATCH_SIZE]
        request = urllib.request.Request(
            self.invoke_url, data=json.dumps({"Records": batch}).encode(), method="POST"
        )
        with urllib.request.urlopen(request, timeout=90) as answer:
            result = json.loads(answer.read() or b"{}")
            failed_function = answer.headers.get("X-Amz-Function-Error")
        self.invocations += 1
        if failed_function or not isinstance(result, dict) or "errorMessage" in result:
            self.stopped.wait(RETRY_SECONDS)
            return records  # the whole batch again, as Lambda retries a failed invocation
        failures = result.get("batchItemFailures") or []
        if failures:
            first = failures[0].get("itemIdentifier")
            at = next((n for n, r in enumerate(batch) if r["dynamodb"].get("SequenceNumber") == first), 0)
            self.stopped.wait(RETRY_SECONDS)
            return records[at:]
        return records[len(batch):]


class Tap:
    """Moves what reaches the tap queue into `path`, one JSON line an event, as it arrives."""

    def __init__(self, sqs: Any, queue_url: str, path: Path) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.path = path
        self.stopped = threading.Event()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")

    def start(self) -> None:
        threading.Thread(target=self._run, name="events-tap", daemon=True).start()

    def stop(self) -> None:
        self.stopped.set()

    def _run(self) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            while not self.stopped.is_set():
                try:
                    found = receive(self.sqs, self.queue_url, wait=TAP_WAIT_SECONDS)
                except Exception:  # stopping, or moto gone
                    if self.stopped.wait(RETRY_SECONDS):
                        return
                    continue
                for event in found:
                    out.write(json.dumps(event, ensure_ascii=False) + "\n")
                out.flush()


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event the tap has written so far."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def follow(source: IO[str], poll: float = 0.2) -> Iterator[str]:
    """The lines written to the open file from where it stands, as they are written."""
    pending = ""
    while True:
        chunk = source.readline()
        if not chunk:
            if os.fstat(source.fileno()).st_size < source.tell():
                source.seek(0)  # a new `make offline` started the file again
                pending = ""
            time.sleep(poll)
            continue
        pending += chunk
        if pending.endswith("\n"):
            yield pending.rstrip("\n")
            pending = ""


def stream_arn(dynamodb_client: Any, table_name: str) -> str:
    return str(dynamodb_client.describe_table(TableName=table_name)["Table"]["LatestStreamArn"])


def receive(sqs: Any, queue_url: str, wait: int = 10) -> list[dict[str, Any]]:
    """The events waiting on the tap queue (up to 10), deleted once read."""
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get("Messages", [])
    for message in messages:
        sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return [json.loads(message["Body"]) for message in messages]
