"""What clients get: the JSON documents the service sends, UTF-8 with non-ASCII text as-is,
each within API Gateway's 128 KB message limit."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from chat.requests import BadMessage
from chat.telemetry import logger

# API Gateway refuses to deliver a WebSocket message larger than 128 KB.
MAX_MESSAGE_BYTES = 128 * 1024
# Room kept in a history reply for everything around the messages ("with" is at most 128
# characters, 512 bytes; "channel" 100; the two cursors), so that any message that was accepted
# also fits in one, alone.
HISTORY_ENVELOPE_BYTES = 1024
# json.dumps writes ", " between the messages of a history reply.
HISTORY_SEPARATOR_BYTES = 2
# The size of the largest seq any message can have, for checking a message before it has one:
# DynamoDB numbers have 38 digits, a conversation would need 10^15 messages to reach this.
LARGEST_SEQ = 10**15


def encode(document: Any) -> bytes:
    """JSON as the service sends it: UTF-8, text as-is, and never NaN or Infinity (which no
    browser's JSON.parse reads)."""
    try:
        return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadMessage('Message "content" is not valid Unicode (it has a lone surrogate).') from None


def public_message(message: dict[str, Any], full: bool) -> dict[str, Any]:
    """What clients see of a message. Anonymous live messages stay {"content": ...}, as in
    part 1; every other one carries its seq, and its channel, recipient and clientMessageId
    when it has them."""
    if not full:
        return {"content": message["content"]}
    shown: dict[str, Any] = {"channel": message["channel"]} if "channel" in message else {}
    shown.update(seq=message["seq"], content=message["content"], sender=message.get("sender"), sent_at=iso(message["sent_at_ms"]), id=message["id"])
    if "to" in message:
        shown["to"] = message["to"]
    if "client_message_id" in message:
        shown["clientMessageId"] = message["client_message_id"]
    return shown


def check_size(message: dict[str, Any]) -> None:
    """Refuse, before anything is stored, a message that would not fit API Gateway's 128 KB
    message limit once it has its seq: live, or alone in a history reply."""
    encode_delivery({**message, "seq": LARGEST_SEQ})


def encode_delivery(message: dict[str, Any]) -> bytes:
    """The exact bytes every recipient gets, within API Gateway's 128 KB message limit, both
    now and later, alone, in a history reply (the same budget fit_history applies)."""
    payload = encode({"messages": [public_message(message, full="sender" in message)]})
    in_history = len(encode(public_message(message, full=True))) + HISTORY_ENVELOPE_BYTES
    size = max(len(payload), in_history)
    if size > MAX_MESSAGE_BYTES:
        raise BadMessage(f"Message too large: {size} bytes with its envelope, the limit is {MAX_MESSAGE_BYTES}.")
    return payload


def fit_history(entries: list[tuple[int, dict[str, Any] | None, int]]) -> tuple[list[dict[str, Any]], int, bool]:
    """As many of the entries (in the order read) as fit in one 128 KB history reply: the
    messages shown, how many entries were used, and whether the reply was cut short.

    An entry without a message (expired, or one that could not be read back) is passed over,
    never the reason the reply fails: the cursor still moves past it.
    """
    budget = room = MAX_MESSAGE_BYTES - HISTORY_ENVELOPE_BYTES
    shown: list[dict[str, Any]] = []
    consumed = 0
    for seq, message, size in entries:
        if message is not None:
            cost = size + (HISTORY_SEPARATOR_BYTES if shown else 0)
            if size > room:
                logger.warning("Skipped stored message %s: %d bytes never fit in a history reply", seq, size)
            elif cost > budget:
                return shown, consumed, True  # it goes first on the next page
            else:
                budget -= cost
                shown.append(message)
        consumed += 1
    return shown, consumed, False


def encode_history(conversation: dict[str, Any], messages: list[dict[str, Any]], before: int | None, after: int | None) -> str:
    """The history reply: whose conversation ({"with": ...} or {"channel": ...}), its messages
    oldest first, and the cursors to page on with (null when there is nothing more that way)."""
    return encode({"history": {**conversation, "messages": messages, "before": before, "after": after}}).decode("utf-8")


def shown_with_size(message: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A message as a history entry, and its encoded size."""
    shown = public_message(message, full=True)
    return shown, len(encode(shown))


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
