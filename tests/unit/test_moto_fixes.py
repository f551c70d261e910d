"""The local DynamoDB keeps DynamoDB's promises (scripts/moto_fixes.py): a transaction is all or
nothing and serializable with other writes, a retried ClientRequestToken is not applied twice, and
a transaction with a value its expressions do not use is refused."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError


@pytest.fixture
def counters(tables: dict[str, Any]) -> Any:
    return tables["ConversationsTable"]


def bump(client: Any, table: str, expected: int, token: str | None = None) -> None:
    """Move the counter from `expected` to expected + 1, and record the move: one transaction."""
    condition = {"ConditionExpression": "seq = :n", "ExpressionAttributeValues": {":n": {"N": str(expected)}}} if expected else {
        "ConditionExpression": "attribute_not_exists(seq)"}
    values = {**condition.get("ExpressionAttributeValues", {}), ":next": {"N": str(expected + 1)}}
    client.transact_write_items(
        TransactItems=[
            {"Update": {"TableName": table, "Key": {"pk": {"S": "c"}, "sk": {"S": "head"}}, "UpdateExpression": "SET seq = :next",
                        "ConditionExpression": condition["ConditionExpression"], "ExpressionAttributeValues": values}},
            {"Put": {"TableName": table, "Item": {"pk": {"S": "c"}, "sk": {"S": f"move#{expected + 1}"}},
                     "ConditionExpression": "attribute_not_exists(sk)"}},
        ],
        **({"ClientRequestToken": token} if token else {}),
    )


def test_a_token_seen_before_is_not_applied_again(counters: Any) -> None:
    client = boto3.client("dynamodb")
    bump(client, counters.name, 0, token="t-1")
    bump(client, counters.name, 0, token="t-1")  # a retry of the same call: answered, not applied

    assert counters.get_item(Key={"pk": "c", "sk": "head"})["Item"]["seq"] == 1
    with pytest.raises(ClientError, match="TransactionCanceledException"):
        bump(client, counters.name, 0, token="t-2")  # a new call with a stale view fails its condition


def test_a_failed_condition_writes_nothing(counters: Any) -> None:
    client = boto3.client("dynamodb")
    counters.put_item(Item={"pk": "c", "sk": "move#1"})  # the second item's condition will fail

    with pytest.raises(ClientError) as raised:
        bump(client, counters.name, 0)

    assert [r["Code"] for r in raised.value.response["CancellationReasons"]] == ["None", "ConditionalCheckFailed"]
    assert "Item" not in counters.get_item(Key={"pk": "c", "sk": "head"})


def test_racing_transactions_each_apply_exactly_once(counters: Any) -> None:
    client = boto3.client("dynamodb")
    applied: list[int] = []

    def race(n: int) -> None:
        for _ in range(200):
            head = counters.get_item(Key={"pk": "c", "sk": "head"}, ConsistentRead=True).get("Item")
            current = int(head["seq"]) if head else 0
            try:
                bump(client, counters.name, current)
                applied.append(current + 1)
                return
            except ClientError:
                continue

    threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(applied) == list(range(1, 9))
    moves = [item["sk"] for item in counters.scan()["Items"] if item["sk"].startswith("move#")]
    assert sorted(moves) == [f"move#{n}" for n in range(1, 9)]


def test_a_transaction_with_a_value_its_expressions_do_not_use_is_refused(counters: Any) -> None:
    client = boto3.client("dynamodb")
    update = {"TableName": counters.name, "Key": {"pk": {"S": "c"}, "sk": {"S": "head"}}, "UpdateExpression": "SET seq = :next",
              "ConditionExpression": "attribute_not_exists(seq)", "ExpressionAttributeValues": {":next": {"N": "1"}, ":head": {"N": "0"}}}

    with pytest.raises(ClientError) as raised:
        client.transact_write_items(TransactItems=[{"Update": update}])

    assert raised.value.response["Error"] == {
        "Code": "ValidationException", "Message": "Value provided in ExpressionAttributeValues unused in expressions: keys: {:head}"}
    assert "Item" not in counters.get_item(Key={"pk": "c", "sk": "head"})


def test_sending_to_a_queue_costs_the_same_however_full_and_fifo_queues_still_dedupe(
    aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """moto's SendMessage read every attribute of the queue, among them the count of its messages,
    a walk over all of them: each send cost more the fuller the queue. Counted, not timed (a timing
    ratio failed on a loaded CI machine): no send walks the messages; a read of the attributes does."""
    from moto.sqs.models import Queue

    walks = 0
    messages = Queue.messages

    def counted(queue: Queue) -> Any:
        nonlocal walks
        walks += 1
        return messages.fget(queue)  # type: ignore[attr-defined]

    monkeypatch.setattr(Queue, "messages", property(counted))
    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="full")["QueueUrl"]
    for n in range(300):
        sqs.send_message(QueueUrl=url, MessageBody=str(n))
    assert walks == 0
    counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    assert counts == {"ApproximateNumberOfMessages": "300"} and walks > 0  # the attributes themselves unchanged

    fifo = sqs.create_queue(QueueName="dedupe.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"})
    for _ in range(2):
        sqs.send_message(QueueUrl=fifo["QueueUrl"], MessageBody="same", MessageGroupId="g")
    received = sqs.receive_message(QueueUrl=fifo["QueueUrl"], MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in received] == ["same"]
