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
# characters, 512 bytes), so that any message that was accepted also fits in one, alone.
HISTORY_ENVELOPE_BYTES = 1024
# json.dumps writes ", " between the messages of a history reply.
HISTORY_SEPARATOR_BYTES = 2


def encode(document: Any) -> bytes:
    """JSON as the service sends it: UTF-8, text as-is, and never NaN or Infinity (which no
    browser's JSON.parse reads)."""
    try:
        return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise BadMessage('Message "content" is not valid Unicode (it has a lone surrogate).') from None


def public_message(message: dict[str, Any], full: bool) -> dict[str, Any]:
    """What clients see. Anonymous live messages stay {"content": ...}, as in part 1."""
    if not full:
        return {"content": message["content"]}
    shown = {"content": message["content"], "sender": message.get("sender"), "sent_at": iso(message["sent_at_ms"]), "id": message["id"]}
    if "to" in message:
        shown["to"] = message["to"]
    return shown


def encode_delivery(message: dict[str, Any]) -> bytes:
    """The exact bytes every recipient gets, within API Gateway's 128 KB message limit, both
    now and later, alone, in a history reply (the same budget encode_history applies)."""
    payload = encode({"messages": [public_message(message, full="sender" in message)]})
    in_history = len(encode(public_message(message, full=True))) + HISTORY_ENVELOPE_BYTES
    size = max(len(payload), in_history)
    if size > MAX_MESSAGE_BYTES:
        raise BadMessage(f"Message too large: {size} bytes with its envelope, the limit is {MAX_MESSAGE_BYTES}.")
    return payload


def encode_history(other: str | None, entries: list[tuple[str, dict[str, Any] | None, int]], more: bool) -> str:
    """The history reply: as many of the newest messages as fit in one 128 KB frame, oldest
    first, and a cursor for the older ones when there are any.

    `entries` are (cursor, message shown or None, its size), newest first. An entry without a
    message (expired, or one that could not be read back) is passed over, never the reason the
    reply fails: the cursor still moves past it.
    """
    budget = room = MAX_MESSAGE_BYTES - HISTORY_ENVELOPE_BYTES
    shown: list[dict[str, Any]] = []
    consumed = 0
    for cursor, message, size in entries:  # newest first
        if message is not None:
            cost = size + (HISTORY_SEPARATOR_BYTES if shown else 0)
            if size > room:
                logger.warning("Skipped stored message %s: %d bytes never fit in a history reply", cursor, size)
            elif cost > budget:
                more = True  # it goes first on the next page
                break
            else:
                budget -= cost
                shown.append(message)
        consumed += 1
    # Older messages exist (or may) when the Query stopped at its Limit or some did not fit.
    before = entries[consumed - 1][0] if more and consumed else None
    return encode({"history": {"with": other, "messages": shown[::-1], "before": before}}).decode("utf-8")


def shown_with_size(message: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A message as a history entry, and its encoded size."""
    shown = public_message(message, full=True)
    return shown, len(encode(shown))


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
