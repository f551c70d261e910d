"""Small helpers shared by the tests and benchmarks."""

from __future__ import annotations

import copy
import json
import subprocess
import time
import uuid
from typing import Any, Callable

from botocore.exceptions import ClientError

from scripts.service_config import ROOT


def connection_ids(table: Any) -> set[str]:
    """Every connection id in the table, across Scan pages, read consistently."""
    ids: set[str] = set()
    kwargs: dict[str, Any] = {"ProjectionExpression": "connection_id", "ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        ids.update(item["connection_id"] for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return ids
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def fresh(*names: str) -> list[str]:
    """Names of users and channels no earlier test used (the stack lives for the whole session)."""
    run = uuid.uuid4().hex[:6]
    return [f"{name}-{run}" for name in names]


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll until the condition holds ($disconnect, for one, runs after the socket closes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(0.1)


def queue_depth(sqs: Any, queue_url: str) -> int:
    """Messages in an SQS queue: visible, in flight and delayed."""
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    return sum(int(value) for key, value in attributes.items() if key.startswith("ApproximateNumberOfMessages"))


# How old a stale row is: older than any handshake can be (chat.connections.HANDSHAKE_GRACE_SECONDS),
# so a 410 prunes it.
STALE_ROW_AGE_SECONDS = 10 * 60


def add_stale_rows(table: Any, count: int) -> set[str]:
    """Rows of connections that no longer exist ($disconnect never ran, some minutes ago):
    serverless-offline answers 410 for each, so a broadcast must post to each once and prune it."""
    now = int(time.time()) - STALE_ROW_AGE_SECONDS
    ids = {f"stale-{uuid.uuid4().hex}" for _ in range(count)}
    with table.batch_writer() as batch:
        for connection_id in ids:
            batch.put_item(Item={"connection_id": connection_id, "connected_at": now, "ttl": now + 7200})
    return ids


def make_token(env: dict[str, str], *assignments: str) -> subprocess.CompletedProcess:
    """`make token` as a user types it, with these variable assignments."""
    return subprocess.run(
        ["make", "--no-print-directory", "token", *assignments],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def only_the_first_key_each_time(client: Any, monkeypatch: Any) -> list[int]:
    """Make the client's BatchGetItem answer as DynamoDB may when throttled: one key read, the
    rest handed back as UnprocessedKeys. Returns the number of keys asked for in each call."""
    real = client.batch_get_item
    asked: list[int] = []

    def partial(RequestItems: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = {"Responses": {}, "UnprocessedKeys": {}}
        for name, request in RequestItems.items():
            asked.append(len(request["Keys"]))
            first, rest = request["Keys"][:1], request["Keys"][1:]
            answer["Responses"][name] = real(RequestItems={name: {**request, "Keys": first}})["Responses"].get(name, [])
            if rest:
                answer["UnprocessedKeys"][name] = {**request, "Keys": rest}
        return answer

    monkeypatch.setattr(client, "batch_get_item", partial)
    return asked


def transaction_cancelled(reasons: list[str]) -> ClientError:
    """A TransactWriteItems refusal as DynamoDB words it: one reason per item, "None" where the
    item was not the cause (botocore parses them for every SDK call)."""
    message = f"Transaction cancelled, please refer cancellation reasons for specific reasons [{', '.join(reasons)}]"
    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": message},  # type: ignore[typeddict-unknown-key]
                        "CancellationReasons": [{"Code": reason} for reason in reasons]}, "TransactWriteItems")


def interfering_transactions(client: Any, monkeypatch: Any, times: int, reason: str = "TransactionConflict",
                             at: int = -1) -> list[list[dict[str, Any]]]:
    """Make the client's first `times` TransactWriteItems fail as DynamoDB's do when another
    writer gets there first: a TransactionConflict (two transactions on one item at once), or a
    ConditionalCheckFailed when the other writer changed item `at` meanwhile. moto does neither.
    Later calls go through. Returns a copy of the items of every call, in order."""
    real = client.transact_write_items
    calls: list[list[dict[str, Any]]] = []

    def interfered(TransactItems: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        calls.append(copy.deepcopy(TransactItems))
        if len(calls) <= times:
            reasons = ["None"] * len(TransactItems)
            reasons[at] = reason
            raise transaction_cancelled(reasons)
        return real(TransactItems=TransactItems, **kwargs)

    monkeypatch.setattr(client, "transact_write_items", interfered)
    return calls


def stale_reads(client: Any, monkeypatch: Any) -> None:
    """Make the client's eventually consistent reads of its tables as stale as DynamoDB's may be
    just after a write: they see no item at all. Reads with ConsistentRead see every acknowledged
    write. Index reads are let through as if the index had caught up: they can never be
    consistent, and the code that reads an index accepts its lag; what this tests is that a read
    which must not lag asks for ConsistentRead. moto reads everything consistently."""
    for operation, empty in (("get_item", {}), ("query", {"Items": [], "Count": 0}), ("scan", {"Items": [], "Count": 0})):
        real = getattr(client, operation)

        def read(real: Any = real, empty: dict[str, Any] = empty, **kwargs: Any) -> dict[str, Any]:
            return real(**kwargs) if kwargs.get("ConsistentRead") or "IndexName" in kwargs else dict(empty)

        monkeypatch.setattr(client, operation, read)
    real_batch = client.batch_get_item

    def batch_read(RequestItems: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        consistent = {name: request for name, request in RequestItems.items() if request.get("ConsistentRead")}
        answer = real_batch(RequestItems=consistent, **kwargs) if consistent else {"Responses": {}, "UnprocessedKeys": {}}
        answer["Responses"].update({name: [] for name in RequestItems if name not in consistent})
        return answer

    monkeypatch.setattr(client, "batch_get_item", batch_read)


def pages_of(size: int, client: Any, monkeypatch: Any) -> list[int]:
    """Make the client's Queries and Scans answer `size` items a page, as DynamoDB's do once a
    page reaches 1 MB (moto's tables here never hold that much). Returns the number of pages read."""
    pages: list[int] = []
    for operation in ("query", "scan"):
        real = getattr(client, operation)

        def paged(real: Any = real, **kwargs: Any) -> dict[str, Any]:
            pages.append(1)
            return real(**{**kwargs, "Limit": min(kwargs.get("Limit", size), size)})

        monkeypatch.setattr(client, operation, paged)
    return pages


def apply_changes(log: list[dict[str, Any]]) -> dict[int, Any]:
    """What a client shows after applying a log of messages, edits and deletes in seq order (each
    seq once): content by seq, None for a deleted message."""
    shown: dict[int, Any] = {}
    for entry in sorted({m["seq"]: m for m in log}.values(), key=lambda m: m["seq"]):
        if entry.get("action") == "edit" and entry.get("deleted"):
            continue  # an edit of a message deleted since: its content is gone, the delete follows
        if entry.get("action") == "edit":
            shown[entry["target"]] = entry["content"]
        elif entry.get("action") == "delete":
            shown[entry["target"]] = None
        else:
            shown[entry["seq"]] = entry.get("content")
    return shown


def emitted(capsys: Any) -> list[dict[str, Any]]:
    """Every JSON line the functions printed: structured logs and EMF metrics."""
    lines = []
    for line in capsys.readouterr().out.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def metric_values(lines: list[dict[str, Any]]) -> dict[str, float]:
    """The EMF metrics, summed over every document."""
    totals: dict[str, float] = {}
    for line in lines:
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive["Metrics"]:
                value = line[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + (sum(value) if isinstance(value, list) else value)
    return totals
