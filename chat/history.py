"""Each conversation's log (the room, a channel, one pair's direct messages): every message under
its `seq` (1, 2, 3, ... with no gap), stored before it is delivered, read back by seq.

The history table holds the messages, keyed (conversation, seq). A message is stored in one
DynamoDB transaction with the conversation's head (chat/conversations.py), conditional on the
head still being the seq we read, and with its send record when it has a clientMessageId: two
senders can never get the same seq, and a failed write leaves no hole (docs/delivery.md:
"Sequence numbers"). A direct message moves both users' inbox entries (chat/inbox.py) in the
same transaction.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.conditions import Key

from chat import aws, conversations, inbox
from chat.errors import Refusal
from chat.telemetry import logger

DEFAULT_HISTORY_TABLE = "serverless-websocket-history"
ROOM = "room"
MESSAGE_RETENTION_SECONDS = int(os.environ.get("MESSAGE_RETENTION_DAYS", "30")) * 24 * 60 * 60
SEND_RECORD_SECONDS = conversations.SEND_RECORD_SECONDS
# How long a sender keeps trying to take the next seq while other senders keep taking it first
# (well inside API Gateway's 29 s), with full-jitter waits between tries that grow from
# APPEND_BACKOFF_SECONDS to APPEND_MAX_BACKOFF_SECONDS; then it is asked to send again.
APPEND_SECONDS = 5.0
APPEND_BACKOFF_SECONDS = 0.005
APPEND_MAX_BACKOFF_SECONDS = 0.2
# How long the send that stored a message holds its delivery (a repeat meanwhile does not post):
# longer than any delivery from one invocation (API Gateway gives up after 29 s).
DELIVERY_LEASE_MS = 30_000
# How many Query pages one history request may read to get past expired messages.
MAX_HISTORY_PAGES = 5
BUSY = "Too many messages at once in this conversation: this one was not stored; send it again."
# What a message may carry besides its content, id, time and seq (text).
FIELDS = ("sender", "to", "channel", "client_message_id", "origin", "action", "reason", "deleted_by")
# ... and as whole numbers: a change's target seq (chat/changes.py), when a message was edited.
NUMBER_FIELDS = ("target", "edited_at_ms")
# The seqs of a message's edits, so that a delete can take their content out too.
EDITS = "edits"


@dataclass(frozen=True)
class Appended:
    """The outcome of storing a message: the message as stored (with its seq), and whether the
    same send had already stored it (then `delivered` says whether that send finished)."""

    message: dict[str, Any]
    duplicate: bool = False
    delivered: bool = False
    lease_until_ms: int = 0  # a duplicate: until when the send that stored it holds its delivery


@dataclass(frozen=True)
class Page:
    """Messages read back in the order asked for: (seq, the message, or None when it cannot be
    shown: past its retention, or unreadable); and whether the Query left more behind."""

    entries: list[tuple[int, dict[str, Any] | None]]
    more: bool


def history_table() -> Any:
    return aws.dynamodb_table("HISTORY_TABLE", DEFAULT_HISTORY_TABLE)


def new_message(content: Any, sender: str | None, **fields: str | None) -> dict[str, Any]:
    """A message with its identity: a unique id and the time it was sent; `to`, `channel` and
    `client_message_id` when given."""
    message: dict[str, Any] = {"content": content, "id": uuid.uuid4().hex, "sent_at_ms": _now_ms()}
    if sender is not None:
        message["sender"] = sender
    message.update({name: value for name, value in fields.items() if value is not None})
    return message


def dm_conversation(user_a: str, user_b: str) -> str:
    """One conversation per pair, whoever writes first: the ids sorted."""
    first, second = sorted((user_a, user_b))
    return f"dm#{first}#{second}"


def channel_conversation(channel: str) -> str:
    return f"ch#{channel}"


def named(conversation: str) -> dict[str, Any]:
    """A conversation key as the app is told it (events): {"channel": ...}, {"with": [a, b]}
    (sorted, as the key keeps them), or {"room": true}."""
    if conversation.startswith("ch#"):
        return {"channel": conversation[3:]}
    if conversation.startswith("dm#"):
        return {"with": conversation[3:].split("#", 1)}
    return {"room": True}


# --- writing -------------------------------------------------------------------------------


class GuardFailed(Exception):
    """A change's condition on the message it changes failed in the transaction that would have
    stored it (the message was deleted or edited meanwhile): nothing was stored."""


Guard = Callable[[int, float], list[dict[str, Any]]]


def append(
    conversation: str,
    message: dict[str, Any],
    sender_key: str | None = None,
    pair: tuple[str, str] | None = None,
    guard: Guard | None = None,
) -> Appended:
    """Store the message as the conversation's next seq. With a client_message_id (and the
    sender's key, its user or connection), a send already recorded within SEND_RECORD_SECONDS
    is not stored again: its first outcome is returned, marked duplicate. For a direct
    conversation, `pair` (its two users): each one's inbox entry moves to this message, in the
    same transaction (getConversations). `guard`: the transaction items (for the seq about to be
    taken, and the time) that a change makes to the message it changes, in the same transaction;
    GuardFailed if one of their conditions fails."""
    client_message_id = message.get("client_message_id")
    record_key = conversations.record_key(sender_key or "", client_message_id) if client_message_id else None
    give_up_at = time.monotonic() + APPEND_SECONDS
    for attempt in itertools.count():
        head, record = conversations.head_and_record(conversation, record_key)
        now = time.time()
        if record is not None and int(record["expires_at"]) > now:
            return Appended(
                _load(conversation, int(record["seq"])),
                duplicate=True,
                delivered=bool(record.get("delivered")),
                lease_until_ms=int(record.get("lease_until_ms", 0)),
            )
        stored = {**message, "seq": head + 1, "sent_at_ms": int(now * 1000)}
        items = [
            conversations.head_item(conversation, head, stored["seq"], now),
            {
                "Put": {
                    "TableName": history_table().name,
                    "Item": _stored_item(conversation, stored),
                    "ConditionExpression": "attribute_not_exists(seq)",
                }
            },
        ]
        if record_key:
            lease = int(now * 1000) + DELIVERY_LEASE_MS
            items.append(conversations.record_item(conversation, record_key, stored["seq"], stored["id"], now, lease))
        if pair is not None:
            items += inbox.items(conversation, stored["seq"], stored["sent_at_ms"], pair)
        guarded = len(items)
        items += guard(stored["seq"], now) if guard is not None else []
        try:
            aws.transact(items)
            return Appended(stored)
        except aws.Cancelled as cancelled:
            if any(cancelled.failed(index) for index in range(guarded, len(items))):
                raise GuardFailed(conversation, stored["seq"]) from None
            # Another sender took this seq (or the same send was recorded meanwhile): read again.
            logger.debug("Seq %d of %s was taken: %s", head + 1, conversation, cancelled.reasons)
        if time.monotonic() >= give_up_at:
            logger.warning("Gave up storing a message in %s after %d attempts", conversation, attempt + 1)
            raise Refusal("conversation_busy", BUSY)
        time.sleep(random.uniform(0, min(APPEND_MAX_BACKOFF_SECONDS, APPEND_BACKOFF_SECONDS * 2**attempt)))
    raise AssertionError("unreachable")  # itertools.count() never ends


def content_json(content: Any) -> str:
    """Content as stored: any JSON value is allowed; stored as text it comes back exactly."""
    return json.dumps(content, ensure_ascii=False)


def recorded(conversation: str, sender_key: str, client_message_id: str | None) -> bool:
    """Whether a send with this clientMessageId is recorded in the conversation (and not past
    SEND_RECORD_SECONDS): a repeat of it is answered with its first outcome."""
    if not client_message_id:
        return False
    _, record = conversations.head_and_record(conversation, conversations.record_key(sender_key, client_message_id))
    return record is not None and int(record["expires_at"]) > time.time()


def mark_delivered(conversation: str, sender_key: str | None, client_message_id: str | None) -> None:
    """The send's delivery finished: a retry of it is answered without delivering again."""
    if client_message_id:
        conversations.mark_delivered(conversation, conversations.record_key(sender_key or "", client_message_id))


def take_delivery(conversation: str, sender_key: str | None, client_message_id: str | None, seen_until_ms: int) -> bool:
    """Whether this repeat of a send may deliver it: only once the lease of the send that stored
    it has run out (or was given back), and only one repeat then."""
    if not client_message_id or seen_until_ms > _now_ms():
        return False
    key = conversations.record_key(sender_key or "", client_message_id)
    return conversations.take_lease(conversation, key, seen_until_ms, _now_ms() + DELIVERY_LEASE_MS)


def release_delivery(conversation: str, sender_key: str | None, client_message_id: str | None) -> None:
    if client_message_id:
        conversations.release_lease(conversation, conversations.record_key(sender_key or "", client_message_id))


def latest_seq(conversation: str) -> int:
    """The conversation's latest seq, 0 if it has none (read consistently)."""
    return conversations.latest_seq(conversation)


def messages_at(keys: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The stored messages at these (conversation, seq), read consistently."""
    items = aws.batch_get(history_table(), [{"conversation": c, "seq": s} for c, s in keys], consistent=True)
    return {(item["conversation"], int(item["seq"])): item for item in items}


def _stored_item(conversation: str, message: dict[str, Any]) -> dict[str, Any]:
    item = {
        "conversation": conversation,
        "seq": message["seq"],
        "id": message["id"],
        "sent_at_ms": message["sent_at_ms"],
        "ttl": message["sent_at_ms"] // 1000 + MESSAGE_RETENTION_SECONDS,
    }
    if "content" in message:  # a delete has none
        item["content_json"] = content_json(message["content"])
    for field in FIELDS + NUMBER_FIELDS:
        if field in message:
            item[field] = message[field]
    return item


# --- reading -------------------------------------------------------------------------------


def stored_to_message(item: dict[str, Any]) -> dict[str, Any]:
    """A stored item as a message: without "content" once deleted (or for a delete itself)."""
    message: dict[str, Any] = {"id": item["id"], "sent_at_ms": int(item["sent_at_ms"]), "seq": int(item["seq"])}
    if "content_json" in item:
        message["content"] = json.loads(item["content_json"])
    elif not item.get("deleted") and item.get("action") != "delete":  # only these have none
        raise KeyError("content_json")
    for field in FIELDS:
        if field in item:
            message[field] = item[field]
    for field in NUMBER_FIELDS:
        if field in item:
            message[field] = int(item[field])
    if item.get("deleted"):
        message["deleted"] = True
    if EDITS in item:
        message[EDITS] = sorted(int(seq) for seq in item[EDITS])
    return message


def _load(conversation: str, seq: int) -> dict[str, Any]:
    item = history_table().get_item(Key={"conversation": conversation, "seq": seq}, ConsistentRead=True)["Item"]
    return stored_to_message(item)


def read_before(conversation: str, limit: int, before: int | None, now: float) -> Page:
    """Up to `limit` messages with a seq below `before` (the newest without it), newest first."""
    key = Key("conversation").eq(conversation) & (Key("seq").between(1, before - 1) if before else Key("seq").gt(0))
    page = history_table().query(KeyConditionExpression=key, ScanIndexForward=False, Limit=limit, ConsistentRead=True)
    entries: list[tuple[int, dict[str, Any] | None]] = []
    for item in page.get("Items", []):
        if expired(item, now):
            # Seq follows time: everything older has passed its retention too.
            return Page(entries, more=False)
        entries.append(entry(item))
    return Page(entries, more="LastEvaluatedKey" in page)


def read_after(conversation: str, limit: int, after: int, now: float) -> Page:
    """Up to `limit` messages with a seq above `after`, oldest first. Messages past their
    retention come first and are passed over (as entries without a message), reading on for
    up to MAX_HISTORY_PAGES pages so a client far behind is not handed empty pages."""
    key = Key("conversation").eq(conversation) & Key("seq").gt(after)
    kwargs: dict[str, Any] = {"KeyConditionExpression": key, "ScanIndexForward": True, "ConsistentRead": True}
    entries: list[tuple[int, dict[str, Any] | None]] = []
    more = False
    for _ in range(MAX_HISTORY_PAGES):
        page = history_table().query(Limit=limit, **kwargs)
        for item in page.get("Items", []):
            entries.append((int(item["seq"]), None) if expired(item, now) else entry(item))
        more = "LastEvaluatedKey" in page
        if not more or any(message is not None for _, message in entries):
            return Page(entries, more)
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return Page(entries, more)


def expired(item: dict[str, Any], now: float) -> bool:
    """Past its own TTL, or older than the retention now in force (it may have been shortened):
    DynamoDB's TTL deletes expired items only eventually, typically within days."""
    try:
        return int(item["ttl"]) <= now or int(item["sent_at_ms"]) < (now - MESSAGE_RETENTION_SECONDS) * 1000
    except (KeyError, TypeError, ValueError):
        return False  # entry() says what is wrong with it


def entry(item: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
    """A stored item as a history entry; without a message if it cannot be read back (logged)."""
    seq = int(item["seq"])
    try:
        return seq, stored_to_message(item)
    except (KeyError, TypeError, ValueError, RecursionError) as error:
        logger.warning(
            "Skipped stored message %s#%s: %s: %s", item.get("conversation"), seq, type(error).__name__, error
        )
        return seq, None


def _now_ms() -> int:
    return int(time.time() * 1000)
