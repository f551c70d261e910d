"""The conversations table: per conversation, its head (the latest seq, moved in the same
transaction as each message: chat/history.py), the send records that make a retried
`clientMessageId` the same message, and a channel's count of users online (chat/presence.py).
The DM inbox lives in this table too, under its own keys: chat/inbox.py.

Other modules write here only through the transaction items this module gives them."""

from __future__ import annotations

from typing import Any

from chat import aws

DEFAULT_CONVERSATIONS_TABLE = "serverless-websocket-conversations"
HEAD = "head"
# A send with the same clientMessageId from the same sender in the same conversation within this
# time is the same message (Ably keeps its ids 2 minutes, Centrifugo 5).
SEND_RECORD_SECONDS = 24 * 60 * 60
# The per-channel count of users online, beside the conversation's head.
PRESENCE_COUNT = "presence"


def table() -> Any:
    return aws.dynamodb_table("CONVERSATIONS_TABLE", DEFAULT_CONVERSATIONS_TABLE)


def record_key(sender_key: str, client_message_id: str) -> str:
    """A send record's sort key: whose clientMessageId (a user, or an anonymous connection)."""
    return f"send#{sender_key}#{client_message_id}"


def head_and_record(conversation: str, key: str | None) -> tuple[int, dict[str, Any] | None]:
    """The head's seq (0 for a new conversation) and the send record under `key`, in one
    consistent read."""
    keys = [{"pk": conversation, "sk": HEAD}] + ([{"pk": conversation, "sk": key}] if key else [])
    found = {item["sk"]: item for item in aws.batch_get(table(), keys, consistent=True)}
    head = found.get(HEAD)
    return (int(head["seq"]) if head else 0), (found.get(key) if key else None)


def latest_seq(conversation: str) -> int:
    """The conversation's latest seq, 0 if it has none: read consistently, so it is never older
    than a message whose store has been acknowledged."""
    item = table().get_item(Key={"pk": conversation, "sk": HEAD}, ConsistentRead=True).get("Item")
    return int(item["seq"]) if item else 0


def head_item(conversation: str, head: int, seq: int, now: float) -> dict[str, Any]:
    """The transaction item that moves the head from `head` to `seq`: it fails if another
    sender moved it first (so two senders never take the same seq)."""
    return {
        "Update": {
            "TableName": table().name,
            "Key": {"pk": conversation, "sk": HEAD},
            "UpdateExpression": "SET seq = :seq, updated_at = :now",
            "ConditionExpression": "attribute_not_exists(seq)" if head == 0 else "seq = :head",
            "ExpressionAttributeValues": {":seq": seq, ":now": int(now), **({":head": head} if head else {})},
        }
    }


def record_item(
    conversation: str, key: str, seq: int, message_id: str, now: float, lease_until_ms: int
) -> dict[str, Any]:
    """The transaction item that records a send under `key` for SEND_RECORD_SECONDS, its delivery
    leased to this send until `lease_until_ms`: it fails if a live record is there (the same
    send, stored meanwhile)."""
    return {
        "Put": {
            "TableName": table().name,
            "Item": {
                "pk": conversation,
                "sk": key,
                "seq": seq,
                "id": message_id,
                "delivered": False,
                "lease_until_ms": lease_until_ms,
                "expires_at": int(now) + SEND_RECORD_SECONDS,
                "ttl": int(now) + SEND_RECORD_SECONDS,
            },
            # A record past its time may still be there (TTL deletes within days): it is replaced.
            "ConditionExpression": "attribute_not_exists(sk) OR expires_at <= :now",
            "ExpressionAttributeValues": {":now": int(now)},
        }
    }


def mark_delivered(conversation: str, key: str) -> None:
    """The send's delivery finished: a retry of it is answered without delivering again."""
    table().update_item(
        Key={"pk": conversation, "sk": key},
        UpdateExpression="SET delivered = :yes",
        ExpressionAttributeValues={":yes": True},
    )


def take_lease(conversation: str, key: str, seen_until_ms: int, until_ms: int) -> bool:
    """Take over the delivery of an undelivered send whose lease (`seen_until_ms`, as read) has run
    out: one conditional write, so two repeats never both deliver. False if another took it, or
    the delivery finished meanwhile."""
    try:
        table().update_item(
            Key={"pk": conversation, "sk": key},
            UpdateExpression="SET lease_until_ms = :until",
            ConditionExpression="delivered = :no AND (attribute_not_exists(lease_until_ms) OR lease_until_ms = :seen)",
            ExpressionAttributeValues={":until": until_ms, ":no": False, ":seen": seen_until_ms},
        )
        return True
    except table().meta.client.exceptions.ConditionalCheckFailedException:
        return False


def release_lease(conversation: str, key: str) -> None:
    """The send holding the delivery could not finish it: a repeat may take it over at once."""
    try:
        table().update_item(
            Key={"pk": conversation, "sk": key},
            UpdateExpression="SET lease_until_ms = :zero",
            ConditionExpression="delivered = :no",
            ExpressionAttributeValues={":zero": 0, ":no": False},
        )
    except table().meta.client.exceptions.ConditionalCheckFailedException:
        pass  # delivered meanwhile, or the record is gone


def presence_count_item(conversation: str, change: int) -> dict[str, Any]:
    """The transaction item that moves a channel's count of users online by `change`."""
    return {
        "Update": {
            "TableName": table().name,
            "Key": {"pk": conversation, "sk": PRESENCE_COUNT},
            "UpdateExpression": "ADD #users :change",
            "ExpressionAttributeNames": {"#users": "users"},
            "ExpressionAttributeValues": {":change": change},
        }
    }


def presence_count(conversation: str) -> int:
    """A channel's count of users online, read consistently."""
    item = table().get_item(Key={"pk": conversation, "sk": PRESENCE_COUNT}, ConsistentRead=True).get("Item")
    return int(item["users"]) if item else 0
