"""The conversations table: per conversation, its head (the latest seq, moved in the same
transaction as each message: chat/history.py), the send records that make a retried
`clientMessageId` the same message, and a channel's count of users online (chat/presence.py).
The DM inbox lives in this table too, under its own keys: chat/inbox.py. So does each busy
conversation's delivery round (the seqs waiting for it and who runs it: chat/rounds.py).

Other modules write here only through the transaction items this module gives them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat import aws

DEFAULT_CONVERSATIONS_TABLE = "serverless-websocket-conversations"
HEAD = "head"
# A send with the same clientMessageId from the same sender in the same conversation within this
# time is the same message (Ably keeps its ids 2 minutes, Centrifugo 5).
SEND_RECORD_SECONDS = 24 * 60 * 60
# The per-channel count of users online, beside the conversation's head.
PRESENCE_COUNT = "presence"
# A room's or channel's delivery round, beside its head.
ROUND = "round"


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


def latest_seqs(conversation_ids: list[str]) -> dict[str, int]:
    """Each conversation's latest seq (0 if it has none), read in batches, eventually
    consistent: a list's counts, not a send's."""
    keys = [{"pk": conversation, "sk": HEAD} for conversation in dict.fromkeys(conversation_ids)]
    found = {item["pk"]: int(item["seq"]) for item in aws.batch_get(table(), keys)} if keys else {}
    return {conversation: found.get(conversation, 0) for conversation in conversation_ids}


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


# --- delivery rounds (chat/rounds.py) ---------------------------------------------------------


@dataclass(frozen=True)
class Round:
    """A conversation's delivery round as stored: the seqs stored and not yet delivered, who holds
    the round (a random token) and until when (ms), and when the last round was delivered (ms)."""

    pending: frozenset[int]
    holder: str | None
    busy_until_ms: int
    last_ms: int


def _round(item: dict[str, Any] | None) -> Round:
    item = item or {}
    return Round(
        pending=frozenset(int(seq) for seq in item.get("pending", ())),
        holder=item.get("holder"),
        busy_until_ms=int(item.get("busy_until_ms", 0)),
        last_ms=int(item.get("last_ms", 0)),
    )


def read_round(conversation: str) -> Round:
    """The conversation's round as stored now (read consistently)."""
    item = table().get_item(Key={"pk": conversation, "sk": ROUND}, ConsistentRead=True).get("Item")
    return _round(item)


def request_round(conversation: str, seqs: frozenset[int]) -> Round:
    """Add stored messages' seqs to those waiting for the conversation's next round: the round as
    it is after (one unconditional write, so no message is ever missed by it)."""
    answer = table().update_item(
        Key={"pk": conversation, "sk": ROUND},
        UpdateExpression="ADD pending :seqs",
        ExpressionAttributeValues={":seqs": set(seqs)},
        ReturnValues="ALL_NEW",
    )
    return _round(answer.get("Attributes"))


def take_round(conversation: str, holder: str, now_ms: int, until_ms: int) -> Round | None:
    """Hold the conversation's round until `until_ms` if nobody holds it (or a holder's time ran
    out): the round as it is after; None if another holds it."""
    return _round_write(
        conversation,
        "SET holder = :me, busy_until_ms = :until",
        "attribute_not_exists(busy_until_ms) OR busy_until_ms < :now",
        {":me": holder, ":until": until_ms, ":now": now_ms},
    )


def keep_round(
    conversation: str, holder: str, until_ms: int, taken: frozenset[int], now_ms: int | None
) -> Round | None:
    """Still the holder: hold on until `until_ms`, take the seqs it is about to deliver out of those
    waiting (before it delivers them: a holder whose time ran out meanwhile delivers nothing, and
    the next never delivers them again) and, after a round (`now_ms`), note when it went. The
    round as it is after; None if the holder's time ran out and another took the round."""
    return _holders_write(
        conversation, holder, "SET busy_until_ms = :until", {":until": until_ms}, taken, now_ms, "holder = :me"
    )


def pass_round(conversation: str, holder: str, successor: str, until_ms: int) -> Round | None:
    """Hand the round from one token of its holder to a new one (each turn of a worker's has its
    own): the round as it is after; None if `holder` no longer holds it (another copy of the same
    job passed it on first, or its lease ran out and another took it)."""
    return _round_write(
        conversation,
        "SET holder = :next, busy_until_ms = :until",
        "holder = :me",
        {":me": holder, ":next": successor, ":until": until_ms},
    )


def end_round(conversation: str, holder: str, now_ms: int) -> bool:
    """Let go of the round, noting when it went, if nothing is waiting (nothing was requested since
    the holder took what it delivers out of those waiting): one conditional write, so a message
    requested meanwhile is never left without a holder. False (nothing written) if more is
    waiting, or the holder's time ran out and another took the round."""
    condition = "holder = :me AND (attribute_not_exists(pending) OR size(pending) = :none)"
    ended = _holders_write(
        conversation, holder, "REMOVE holder, busy_until_ms", {":none": 0}, frozenset(), now_ms, condition
    )
    return ended is not None


def drop_round(conversation: str, holder: str) -> None:
    """Let go of the round whatever waits (a holder that failed): the next send takes it at once."""
    _holders_write(conversation, holder, "REMOVE holder, busy_until_ms", {}, frozenset(), None, "holder = :me")


def _holders_write(
    conversation: str,
    holder: str,
    expression: str,
    values: dict[str, Any],
    done: frozenset[int],
    now_ms: int | None,
    condition: str,
) -> Round | None:
    """One conditional write to the round by its holder, the seqs `done` taken out of those waiting
    and the round's time noted (`now_ms`): the round after, None if the condition failed."""
    values = {":me": holder, **values}
    if now_ms is not None:
        expression += ", last_ms = :now" if expression.startswith("SET") else " SET last_ms = :now"
        values[":now"] = now_ms
    if done:
        expression += " DELETE pending :done"
        values[":done"] = set(done)
    return _round_write(conversation, expression, condition, values)


def _round_write(conversation: str, expression: str, condition: str, values: dict[str, Any]) -> Round | None:
    """One conditional write to the conversation's round: the round after, None if the condition failed."""
    try:
        answer = table().update_item(
            Key={"pk": conversation, "sk": ROUND},
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_NEW",
        )
    except table().meta.client.exceptions.ConditionalCheckFailedException:
        return None
    return _round(answer.get("Attributes"))
