"""Make moto's DynamoDB keep the promises the service relies on, as DynamoDB itself does.

moto 5.2.5 serves requests from many threads with no lock around its DynamoDB backend:
- a conditional write checks, then writes: two threads can both pass the check;
- TransactWriteItems deep-copies every table it touches, applies its items one by one, and on a
  failed condition puts the copies back, undoing whatever another thread wrote meanwhile (and a
  copy of a large table on every transaction).
DynamoDB makes each conditional write atomic and transactions all-or-nothing and serializable
with other writes (AWS: "Amazon DynamoDB Transactions: How it works", isolation levels). Under
concurrent senders (the gap-free `seq`) moto would lose or duplicate what AWS never would.

It also ignores TransactWriteItems' ClientRequestToken, which DynamoDB honours for 10 minutes
("multiple identical calls have the same effect as one single call"): botocore fills it in and
keeps it when it retries a call whose answer timed out, so on AWS a transaction that committed is
not committed again, while moto would try it again and answer with a failed condition.

And it accepts a TransactWriteItems item whose ExpressionAttributeValues holds a value its
expressions never use, which DynamoDB refuses ("Value provided in ExpressionAttributeValues unused
in expressions"): a transaction that works here would fail on AWS.

A Query on a table reads every item of the table in moto, not only the partition asked for as
DynamoDB does: with a thousand channel members it took 22 ms a Query here, and a channel's Query
grew with every other channel. `apply()` makes it read the partition alone.

moto's EventBridge compiles the JSONPath of a target's input paths (with ply, which builds its
parser tables again) for every event it sends to a target: 0.12 s a PutEvents of 10 entries, so
the 20,000 `connection.closed` events of a pruned room took minutes. `apply()` keeps each
compiled path (jsonpath_ng's `parse`, cached); what is sent does not change. And its SQS reads
all of a queue's attributes, counting every message it holds, to learn whether the queue dedupes
by content, for every message sent: a queue of n messages cost n to send to. `apply()` has
SendMessage read that one attribute alone.

`apply()` puts one lock around every DynamoDB backend call, replaces TransactWriteItems by one
that checks every condition first and writes only when all hold (nothing to undo), answers a
ClientRequestToken seen within 10 minutes as the first call was answered, and refuses unused
values as DynamoDB does. It is applied in the
moto server `make offline` starts (scripts/moto_server.py) and in the tests' in-process moto
(tests/conftest.py).
"""

from __future__ import annotations

import functools
import re
import threading
import time
from typing import Any

_lock = threading.RLock()
_applied = False
# ClientRequestToken -> (when its call completed, what it answered), for TOKEN_SECONDS.
TOKEN_SECONDS = 600
_tokens: dict[str, tuple[float, Any]] = {}


def apply() -> None:
    global _applied
    if _applied:
        return
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler

    import jsonpath_ng.ext

    jsonpath_ng.ext.parse = functools.lru_cache(maxsize=64)(jsonpath_ng.ext.parse)
    from moto.sqs.models import Queue, SQSBackend

    SQSBackend.send_message = _sending(SQSBackend.send_message)  # type: ignore[method-assign]
    Queue.attributes = _attributes_unless_sending(Queue.attributes)  # type: ignore[method-assign,assignment]
    Table.query = _partition_only(Table.query)  # type: ignore[method-assign]
    DynamoDBBackend.transact_write_items = _transact_write_items  # type: ignore[method-assign]
    DynamoHandler.transact_write_items = _idempotent(_values_used(DynamoHandler.transact_write_items))  # type: ignore[method-assign]
    for name, method in list(vars(DynamoDBBackend).items()):
        if callable(method) and not name.startswith("_"):
            setattr(DynamoDBBackend, name, _locked(method))
    _applied = True


_send = threading.local()


def _sending(send_message: Any) -> Any:
    @functools.wraps(send_message)
    def send(self: Any, *args: Any, **kwargs: Any) -> Any:
        _send.active = True
        try:
            return send_message(self, *args, **kwargs)
        finally:
            _send.active = False

    return send


def _attributes_unless_sending(attributes: Any) -> Any:
    """While a message is sent, a queue's attributes are only the one SendMessage reads."""

    def get(self: Any) -> dict[str, Any]:
        if not getattr(_send, "active", False):
            return dict(attributes.fget(self))
        if not self.fifo_queue:
            return {}
        dedupe = self.content_based_deduplication
        return {"ContentBasedDeduplication": str(dedupe).lower() if isinstance(dedupe, bool) else dedupe}

    return property(get)


def _partition_only(query: Any) -> Any:
    """A Query on the table itself (not an index) looks only at the items of its partition key,
    as DynamoDB does; moto's own code then sorts, pages and filters them as before."""

    @functools.wraps(query)
    def partition_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("index_name") or (len(args) > 6 and args[6]) or hash_key is None:
            return query(self, hash_key, *args, **kwargs)
        partition = self.items.get(hash_key) if hash_key in self.items else None
        found = [] if partition is None else list(partition.values()) if self.range_key_attr else [partition]
        self.all_items = lambda: found  # this call only (the backend lock is held)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    return partition_query


def _locked(method: Any) -> Any:
    @functools.wraps(method)
    def locked(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    return locked


def _idempotent(handle: Any) -> Any:
    """The answer a token got the first time, while it is valid; otherwise the call itself."""

    @functools.wraps(handle)
    def transact_write_items(self: Any) -> Any:
        token = self.body.get("ClientRequestToken")
        with _lock:
            now = time.monotonic()
            for stale in [t for t, (when, _) in _tokens.items() if now - when > TOKEN_SECONDS]:
                del _tokens[stale]
            if token in _tokens:
                return _tokens[token][1]
            answer = handle(self)
            if token:
                _tokens[token] = (now, answer)
            return answer

    return transact_write_items


def _values_used(handle: Any) -> Any:
    """Refuse a transaction with an ExpressionAttributeValues entry no expression of its item uses."""
    from moto.dynamodb.exceptions import MockValidationException

    @functools.wraps(handle)
    def transact_write_items(self: Any) -> Any:
        for item in self.body.get("TransactItems", []):
            for operation in item.values():
                expressions = " ".join(operation.get(name, "") for name in ("UpdateExpression", "ConditionExpression"))
                if not expressions.strip():
                    continue  # values with no expression at all: not what DynamoDB is known to refuse
                unused = sorted(set(operation.get("ExpressionAttributeValues", {})) - set(re.findall(r":[A-Za-z0-9_]+", expressions)))
                if unused:
                    raise MockValidationException(f"Value provided in ExpressionAttributeValues unused in expressions: keys: {{{', '.join(unused)}}}")
        return handle(self)

    return transact_write_items


def _transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """All conditions checked, then all writes made: the same answers as moto's own, without its
    copy-and-restore of whole tables."""
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )
    from moto.dynamodb.comparisons import get_filter_expression as condition_of

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    targets: set[tuple[str, str]] = set()
    operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    errors: list[tuple[Any, Any, Any]] = []
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise ValueError("Unsupported transaction operation")
        table = self.get_table(op["TableName"])
        if op_type == "Put":
            key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = op["Item"][table.range_key_attr]
        else:
            key = op["Key"]
        target = (str(op["TableName"]), str(dict(sorted(key.items()))))
        if target in targets:
            raise MultipleTransactionsException()
        targets.add(target)
        operations.append((op_type, op, key))
        current = self.get_item(op["TableName"], key)
        expression = op.get("ConditionExpression")
        if expression is not None and not condition_of(expression, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")).expr(current):
            old = current.to_json()["Attributes"] if current and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" else None
            errors.append(("ConditionalCheckFailed", ConditionalCheckFailed().message, old))
        else:
            errors.append((None, None, None))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)
    for op_type, op, key in operations:
        arguments = {"expression_attribute_names": op.get("ExpressionAttributeNames"),
                     "expression_attribute_values": op.get("ExpressionAttributeValues")}
        if op_type == "Put":
            self.put_item(op["TableName"], op["Item"], **arguments)
        elif op_type == "Delete":
            self.delete_item(op["TableName"], key, **arguments)
        elif op_type == "Update":
            self.update_item(op["TableName"], key, update_expression=op["UpdateExpression"], **arguments)
