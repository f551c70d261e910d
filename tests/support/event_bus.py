"""Events out, in process: the stage's bus in moto with a rule to a tap queue (what an app's own
rule would do, read back as its target gets it), and the history table's stream fed to the events
function as Lambda's event source mapping would (a reported failure sends from that record on)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import boto3
from botocore.config import Config

from scripts import local_events

BUS = "serverless-websocket-test"


class Bus:
    def __init__(self, handler: Any, history_table: str) -> None:
        self.handler = handler
        self.sqs = boto3.client("sqs")
        self.queue_url = local_events.create_bus_and_tap(boto3.client("events"), self.sqs, BUS, "events-tap")
        # botocore sends DynamoDB Streams calls to an account endpoint moto in process does not know.
        self.streams = boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        self.stream_arn = local_events.stream_arn(boto3.client("dynamodb"), history_table)
        shards = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        self.iterators = [
            self.streams.get_shard_iterator(StreamArn=self.stream_arn, ShardId=shard["ShardId"],
                                            ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
            for shard in shards
        ]
        self.invocations = 0
        self.received: list[dict[str, Any]] = []

    def feed_stream(self, batch_size: int = 100, max_invocations: int = 10_000) -> None:
        """Every new stream record through handler.publish_events, batch by batch, resending from
        a reported failure, until all were taken."""
        for index, iterator in enumerate(self.iterators):
            records: list[dict[str, Any]] = []
            while True:
                answer = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                iterator = answer.get("NextShardIterator") or iterator
                new = local_events.lambda_records(answer.get("Records", []), self.stream_arn)
                records += new
                if not new:
                    break
            self.iterators[index] = iterator
            while records:
                assert self.invocations < max_invocations, "the stream never drained"
                batch = records[:batch_size]
                self.invocations += 1
                result = self.handler.publish_events({"Records": batch}, None)
                failures = result["batchItemFailures"]
                if not failures:
                    records = records[len(batch):]
                    continue
                sequence = [r["dynamodb"]["SequenceNumber"] for r in batch]
                records = records[sequence.index(failures[0]["itemIdentifier"]):]

    def events(self) -> list[dict[str, Any]]:
        """What reached the tap queue since the last call (EventBridge's envelope: detail-type,
        source, detail), and everything read so far in self.received."""
        found: list[dict[str, Any]] = []
        while True:
            batch = local_events.receive(self.sqs, self.queue_url, wait=0)
            if not batch:
                break
            found += batch
        self.received += found
        return found

    def details(self, detail_type: str) -> list[dict[str, Any]]:
        """The details of one type among everything received, reading what is new first."""
        self.events()
        return [event["detail"] for event in self.received if event["detail-type"] == detail_type]

    def types(self) -> Counter[str]:
        self.events()
        return Counter(event["detail-type"] for event in self.received)
