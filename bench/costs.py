"""What a message costs on AWS: the DynamoDB request units each kind of send consumes, counted
from the calls the handler really makes (on moto, in one process), and priced with AWS's
published on-demand prices; then the other per-message charges and the sweeper's, as
projections from those prices.

Every DynamoDB call the handler makes is recorded, and its units computed by AWS's rules (on-demand:
a write is 1 WRU per KB of the larger of the item before and after, 2 in a transaction; a
strongly consistent read 1 RRU per 4 KB, half that eventually consistent; a Query or Scan is
charged for the total size of the items it reads, whatever the projection;
https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/read-write-operations.html),
with item sizes from moto's own DynamoDB size rules. Index writes are added where an index key
is written (1 WRU per index entry put, 2 when its key changes). moto's ConsumedCapacity is not
used: it is a constant, not computed.

Usage: python bench/costs.py [--members 100] [--size 1000] [--connections 100000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_aws import create_tables, use_fake_aws  # noqa: E402

use_fake_aws(PRESENCE_EVENTS_MAX_USERS="0")  # presence events are priced apart, below

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from tests.support.events import action_body, connect_event, message_event  # noqa: E402

# us-east-1, at the time of writing: https://aws.amazon.com/dynamodb/pricing/on-demand/,
# https://aws.amazon.com/api-gateway/pricing/ (WebSocket: messages sent and received, metered
# in 32 KB increments; connection minutes), https://aws.amazon.com/lambda/pricing/ (arm64).
PRICE_PER_WRU = 0.625e-6
PRICE_PER_RRU = 0.125e-6
PRICE_PER_MESSAGE = 1.00e-6
PRICE_PER_CONNECTION_MINUTE = 0.25e-6
PRICE_PER_INVOCATION = 0.20e-6
PRICE_PER_GB_SECOND_ARM = 0.0000133334
# https://aws.amazon.com/cloudwatch/pricing/: a standard-resolution alarm, per metric it watches.
PRICE_PER_ALARM_METRIC_MONTH = 0.10
TEMPLATE = Path(__file__).resolve().parent.parent / ".serverless" / "cloudformation-template-update-stack.json"

WRITES = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}


class Meter:
    """Records the DynamoDB calls made through the given clients and prices them."""

    def __init__(self, clients: set[Any]) -> None:
        self.raw = boto3.client("dynamodb")  # unhooked: reads sizes without being counted
        self.schemas: dict[str, dict[str, Any]] = {}
        self.wru = self.rru = 0.0
        self.calls: list[str] = []
        self._before: dict[int, list[int]] = {}
        for client in clients:
            client.meta.events.register("before-call.dynamodb", self.before)
            client.meta.events.register("after-call.dynamodb", self.after)

    def reset(self) -> None:
        self.wru = self.rru = 0.0
        self.calls = []

    def before(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        body = json.loads(params["body"] or b"{}")
        params["context"]["meter"] = (model.name, body, [self._stored_size(table, item) for table, item in _written(model.name, body)])

    def after(self, model: Any, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        name, body, before = context["meter"]
        self.calls.append(name)
        written = _written(name, body)
        failed = "Error" in parsed and parsed["Error"].get("Code") != "TransactionCanceledException"
        if written and not failed:
            factor = 2 if name == "TransactWriteItems" else 1
            for (table, item), old in zip(written, before):
                new = self._stored_size(table, item)
                self.wru += factor * max(1, math.ceil(max(old, new) / 1024)) + self._index_writes(table, item, old, new)
        elif name in ("GetItem", "BatchGetItem", "Query", "Scan"):
            self.rru += self._read_units(name, body)

    def _read_units(self, name: str, body: dict[str, Any]) -> float:
        if name == "GetItem":
            sizes = [[self._stored_size(body["TableName"], body["Key"])]]
            consistent = [body.get("ConsistentRead", False)]
        elif name == "BatchGetItem":
            sizes = [[self._stored_size(table, key)] for table, request in body["RequestItems"].items() for key in request["Keys"]]
            consistent = [request.get("ConsistentRead", False) for request in body["RequestItems"].values() for _ in request["Keys"]]
        else:  # a Query or Scan is charged for the items it reads, in 4 KB, whatever it returns
            sizes = [self._full_sizes(name, body)]
            consistent = [body.get("ConsistentRead", False)]
        return sum(max(1, math.ceil(sum(group) / 4096)) * (1 if strong else 0.5) for group, strong in zip(sizes, consistent))

    def _full_sizes(self, name: str, body: dict[str, Any]) -> list[int]:
        request = {k: v for k, v in body.items() if k not in ("ProjectionExpression", "Select", "ReturnConsumedCapacity")}
        used = " ".join(str(request.get(k, "")) for k in ("KeyConditionExpression", "FilterExpression"))
        if "ExpressionAttributeNames" in request:
            request["ExpressionAttributeNames"] = {k: v for k, v in request["ExpressionAttributeNames"].items() if k in used}
            if not request["ExpressionAttributeNames"]:
                del request["ExpressionAttributeNames"]
        answer = getattr(self.raw, "query" if name == "Query" else "scan")(**request)
        return [self._item_size(body["TableName"], item) for item in answer["Items"]]

    def _stored_size(self, table: str, item: dict[str, Any]) -> int:
        key = {name: item[name] for name in self._schema(table)["keys"] if name in item}
        stored = self.raw.get_item(TableName=table, Key=key).get("Item")
        return self._item_size(table, stored) if stored else 0

    def _index_writes(self, table: str, item: dict[str, Any], old: int, new: int) -> int:
        """An index entry is written when the item carries the index's key (1 WRU per KB of the
        projected entry, here always under 1 KB); 2 when it existed before (its key moved)."""
        stored = self.raw.get_item(TableName=table, Key={k: item[k] for k in self._schema(table)["keys"] if k in item}).get("Item") or {}
        return sum(2 if old else 1 for keys in self._schema(table)["indexes"] if all(k in stored for k in keys))

    def _schema(self, table: str) -> dict[str, Any]:
        if table not in self.schemas:
            described = self.raw.describe_table(TableName=table)["Table"]
            self.schemas[table] = {
                "keys": [k["AttributeName"] for k in described["KeySchema"]],
                "indexes": [[k["AttributeName"] for k in index["KeySchema"]] for index in described.get("GlobalSecondaryIndexes", [])],
            }
        return self.schemas[table]

    @staticmethod
    def _item_size(table: str, item: dict[str, Any]) -> int:
        from moto.dynamodb.models.dynamo_type import DynamoType, Item

        return Item(DynamoType(next(iter(item.values()))), None, item).size()


def _written(name: str, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(table, key or item) of each item a write call writes."""
    if name in WRITES:
        return [(body["TableName"], body.get("Item") or body["Key"])]
    if name == "TransactWriteItems":
        return [(part["TableName"], part.get("Item") or part["Key"]) for entry in body["TransactItems"]
                for kind, part in entry.items() if kind in ("Put", "Update", "Delete")]
    if name == "BatchWriteItem":
        return [(table, (request.get("PutRequest") or request["DeleteRequest"]).get("Item") or request["DeleteRequest"]["Key"])
                for table, requests in body["RequestItems"].items() for request in requests]
    return []


def dollars_per_million(wru: float, rru: float) -> float:
    return (wru * PRICE_PER_WRU + rru * PRICE_PER_RRU) * 1e6


def alarm_metrics() -> int | None:
    """The metrics the packaged template's alarms watch (a metric-math alarm bills each one)."""
    if not TEMPLATE.exists():
        return None
    resources = json.loads(TEMPLATE.read_text())["Resources"].values()
    return sum(len([m for m in r["Properties"].get("Metrics", []) if "MetricStat" in m]) or 1
               for r in resources if r["Type"] == "AWS::CloudWatch::Alarm")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=100, help="connections in the channel and the room")
    parser.add_argument("--size", type=int, default=1000, help="characters of message content")
    parser.add_argument("--connections", type=int, default=100_000, help="open connections, for the sweeper's projection")
    args = parser.parse_args()
    content = "x" * args.size

    with mock_aws(), contextlib.redirect_stdout(open(os.devnull, "w")):
        create_tables(boto3.client("dynamodb"))
        import handler
        from chat import connections, conversations, history, members, presence, ratelimit

        users = [f"user{n}" for n in range(args.members)]
        for user in users:
            handler.connection_manager(connect_event(f"c-{user}", user), None)
            handler.join(message_event(f"c-{user}", action_body("join", channel="news"), "join", user), None)
        meter = Meter({table.meta.client for table in (connections.table(), members.table(), history.history_table(),
                                                       conversations.table(), presence.table(), ratelimit.table())})
        sends = {
            f"channel message to {args.members} members": ("sendMessage", {"channel": "news"}),
            f"channel message to {args.members} members, with a clientMessageId": ("sendMessage", {"channel": "news", "clientMessageId": "m"}),
            "direct message": ("sendDirectMessage", {"to": "user1"}),
            f"room message to {args.members} connections": ("sendMessage", {}),
        }
        measured = {}
        for n, (label, (route, fields)) in enumerate(sends.items()):
            body = action_body(route, content=content, **{k: (f"{v}{n}" if k == "clientMessageId" else v) for k, v in fields.items()})
            meter.reset()
            entry = handler.send_direct_message if route == "sendDirectMessage" else handler.send_message
            response = entry(message_event("c-user0", body, route, "user0"), None)
            assert response["statusCode"] == 200, response
            measured[label] = (meter.wru, meter.rru, len(meter.calls))

    print(f"DynamoDB, one message of {args.size} characters, counted from the calls the handler makes (on moto):")
    for label, (wru, rru, calls) in measured.items():
        print(f"  {label}: {calls} calls, {wru:g} WRU + {rru:g} RRU = ${dollars_per_million(wru, rru):.2f} per million messages")
    posts = args.members
    print(f"API Gateway, the same channel message: 1 message received + {posts} posts = "
          f"${(1 + posts) * PRICE_PER_MESSAGE * 1e6:.2f} per million messages (each post one message, up to 32 KB)")
    print(f"  a direct message to a user on 1 connection: 2 messages = ${2 * PRICE_PER_MESSAGE * 1e6:.2f} per million")
    print(f"Lambda: $0.20 per million invocations + duration (sendMessage 1,024 MB arm64: "
          f"${PRICE_PER_GB_SECOND_ARM * 1e6 * 0.1:.2f} per million messages per 100 ms run)")

    checks_per_second = args.connections / 3600
    wru_per_check = 1 + 2  # the row's due_bucket moves: the row, and its entry in due-index moved
    per_day = checks_per_second * 86400 * wru_per_check * PRICE_PER_WRU
    print(f"Projection, the sweeper at {args.connections:,} connections (ghost check every 60 min):")
    print(f"  {checks_per_second:.1f} GetConnection a second; {wru_per_check} WRU a check (the row rescheduled, its due-index entry moved): "
          f"${per_day:.2f} a day; 1,440 runs a day: ${1440 * PRICE_PER_INVOCATION:.4f} a day in invocations")
    print(f"  connection minutes for them: ${args.connections * 1440 * PRICE_PER_CONNECTION_MINUTE:.2f} a day")
    metrics = alarm_metrics()
    if metrics is None:
        print("At rest: run `make package` first to count the alarms' metrics")
    else:
        print(f"At rest: the alarms watch {metrics} metrics: ${metrics * PRICE_PER_ALARM_METRIC_MONTH:.2f} a month")
    return 0


if __name__ == "__main__":
    sys.exit(main())
