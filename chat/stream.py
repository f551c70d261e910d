"""The events function: the history table's change stream (DynamoDB Streams, Lambda's event source
mapping) turned into `message.created` events on the bus. A message is in the stream once its
store has committed, whatever happened to the function that stored it, so no stored message goes
without its event. Each batch is sent in order, 10 entries a PutEvents, the failed ones again;
the first record whose event still fails is reported (ReportBatchItemFailures), and Lambda sends
it and those after it again (bisecting, then to the on-failure queue after its retries).
Repeats are harmless: the eventId is the message's own.
"""

from __future__ import annotations

import json
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from chat import events, frames, history
from chat.telemetry import count, logger

_deserializer = TypeDeserializer()


def publish_created(event: dict[str, Any]) -> dict[str, Any]:
    """{"batchItemFailures": [...]}: empty when every record's event was taken."""
    records = [record for record in event.get("Records") or [] if isinstance(record, dict)]
    if not events.enabled():
        return {"batchItemFailures": []}
    pending: list[tuple[str, dict[str, Any]]] = []
    for record in records:
        created = message_created(record)
        if created is not None:
            pending.append((record.get("dynamodb", {}).get("SequenceNumber", ""), created))
    for start in range(0, len(pending), events.ENTRIES_PER_CALL):
        batch = pending[start : start + events.ENTRIES_PER_CALL]
        try:
            events.put([entry for _, entry in batch])
        except events.EventsFailed as failed:
            first = next(seq for seq, entry in batch if entry in failed.entries)
            logger.warning(
                "%d events of the batch not taken: Lambda sends the records from %s again", len(failed.entries), first
            )
            return {"batchItemFailures": [{"itemIdentifier": first}]}
        count("EventsSent", len(batch))
    return {"batchItemFailures": []}


CHANGES = {"edit": events.MESSAGE_EDITED, "delete": events.MESSAGE_DELETED}


def message_created(record: dict[str, Any]) -> dict[str, Any] | None:
    """The `message.created` entry of a stream record of a new message (`message.edited` or
    `message.deleted` for a change, with its `target`); None for anything else (a removal by TTL,
    a message changed in place, a record without its new image)."""
    if record.get("eventName") != "INSERT":
        return None
    image = record.get("dynamodb", {}).get("NewImage")
    if not isinstance(image, dict):
        return None
    try:
        item = {name: _deserializer.deserialize(value) for name, value in image.items()}
        conversation, seq, message_id = str(item["conversation"]), int(item["seq"]), str(item["id"])
        detail: dict[str, Any] = {
            "conversation": history.named(conversation),
            "seq": seq,
            "id": message_id,
            "sender": item.get("sender"),
            "sentAt": frames.iso(int(item["sent_at_ms"])),
            "origin": item.get("origin", "websocket"),
        }
        kind = CHANGES.get(str(item.get("action")), events.MESSAGE_CREATED)  # an edit or a delete: chat/changes.py
        if kind != events.MESSAGE_CREATED:
            detail["target"] = int(item["target"])
        if "content_json" in item:  # a delete has none
            detail["content"] = json.loads(item["content_json"])
        if "reason" in item:
            detail["reason"] = item["reason"]
    except (KeyError, TypeError, ValueError) as error:
        logger.warning("A history record that is not a message: %s: %s", type(error).__name__, error)
        return None
    if "client_message_id" in item:
        detail["clientMessageId"] = item["client_message_id"]
    event_id = events.event_id(kind, conversation, seq, message_id)
    return events.entry(kind, event_id, detail, int(item["sent_at_ms"]))
