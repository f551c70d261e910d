"""The delivery queue's messages, and their one parser. Four kinds share the queue: a delivery
job (one message to post to one batch of connections), a presence leave check (confirm, after
the grace, that a user who left a channel did not come back), events for EventBridge, and a busy
conversation's next delivery round. Every body is checked in full before anything acts on it:
one that is not exactly one of them is poison (PoisonJob) and is never posted from."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, TypeGuard

from chat.requests import CHANNEL_NAME

# A job is tried this many times (its failed connections queued again after each) at most.
MAX_DELIVERY_ATTEMPTS = 4
# What a job may hold: far more connections than fanout.DELIVERY_BATCH_SIZE ever puts in one
# (SQS's 256 KB caps a body anyway); connection and message ids are short printable ASCII.
MAX_JOB_CONNECTIONS = 10_000
JOB_VERSION = 1
JOB_FIELDS = frozenset({"v", "message_id", "endpoint", "payload", "connections", "attempt", "sent_at_ms"})
CONNECTION_ID_PATTERN = re.compile(r"[!-~]{1,128}")
MESSAGE_ID_PATTERN = re.compile(r"[!-~]{1,64}")
CHECK_KIND = "presence-leave"
EVENTS_KIND = "events"
ENTRY_FIELDS = frozenset({"Source", "DetailType", "Detail", "EventBusName"})
# EventBridge entries an events job holds at most: one PutEvents call's worth.
EVENTS_PER_JOB = 10
CHECK_FIELDS = frozenset({"v", "kind", "channel", "user", "left_at", "endpoint"})
ROUND_KIND = "round"
ROUND_FIELDS = frozenset({"v", "kind", "channel", "endpoint", "holder"})
HOLDER_PATTERN = re.compile(r"[0-9a-f]{32}")


class PoisonJob(ValueError):
    """An SQS record that is not a delivery job: it fails until it lands in the DLQ."""


@dataclass(frozen=True)
class DeliveryJob:
    """One message to post to one batch of connections: the body of one SQS message."""

    message_id: str
    endpoint: str
    payload: bytes
    connections: tuple[str, ...]
    attempt: int = 1
    sent_at_ms: int = 0  # when the message was sent, for the DeliveryLag metric

    def to_body(self) -> str:
        # The payload as base64: SQS bodies may not hold every character JSON text can (U+FFFF).
        return json.dumps(
            {
                "v": 1,
                "message_id": self.message_id,
                "endpoint": self.endpoint,
                "payload": base64.b64encode(self.payload).decode("ascii"),
                "connections": list(self.connections),
                "attempt": self.attempt,
                "sent_at_ms": self.sent_at_ms,
            }
        )

    @classmethod
    def from_body(cls, body: str) -> DeliveryJob:
        """The job in an SQS body (PoisonJob if the body is anything else)."""
        found = parse(body)
        if not isinstance(found, DeliveryJob):
            kind = {LeaveCheck: "a presence check", EventsJob: "events", RoundJob: "a round"}[type(found)]
            raise PoisonJob(f"not a delivery job: {kind}")
        return found

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> DeliveryJob:
        """The job in a queue body read as JSON, checked in full (version, every field's type
        and range)."""
        problem = _job_problem(document)
        if problem:
            raise PoisonJob(f"not a delivery job: {problem}")
        try:
            payload = base64.b64decode(document["payload"], validate=True)
        except (ValueError, binascii.Error) as error:
            raise PoisonJob(f"not a delivery job: payload is not base64: {error}") from None
        if not payload:
            raise PoisonJob("not a delivery job: the payload is empty")
        return cls(
            message_id=document["message_id"],
            endpoint=document["endpoint"],
            payload=payload,
            connections=tuple(document["connections"]),
            attempt=document["attempt"],
            sent_at_ms=document.get("sent_at_ms", 0),
        )


def _job_problem(document: dict[str, Any]) -> str | None:
    """What is wrong with a job document, or None."""
    unknown = set(document) - JOB_FIELDS
    if unknown:
        return f"unknown fields {sorted(unknown)}"
    if not _is_int(document.get("v")) or document["v"] != JOB_VERSION:
        return f"version must be {JOB_VERSION}, not {document.get('v')!r}"
    message_id = document.get("message_id")
    if not isinstance(message_id, str) or not MESSAGE_ID_PATTERN.fullmatch(message_id):
        return "message_id must be 1 to 64 printable ASCII characters"
    endpoint = document.get("endpoint")
    if not _is_endpoint(endpoint):
        return f"bad endpoint {endpoint!r}"
    if not isinstance(document.get("payload"), str):
        return "payload must be base64 text"
    connections = document.get("connections")
    if not isinstance(connections, list) or not 1 <= len(connections) <= MAX_JOB_CONNECTIONS:
        return f"connections must be a list of 1 to {MAX_JOB_CONNECTIONS} ids"
    if not all(isinstance(cid, str) and CONNECTION_ID_PATTERN.fullmatch(cid) for cid in connections):
        return "connections must be ids of 1 to 128 printable ASCII characters"
    if len(set(connections)) != len(connections):
        return "a connection is listed twice"
    attempt = document.get("attempt")
    if not _is_int(attempt) or not 1 <= attempt <= MAX_DELIVERY_ATTEMPTS:
        return f"attempt must be a whole number from 1 to {MAX_DELIVERY_ATTEMPTS}, not {attempt!r}"
    sent_at_ms = document.get("sent_at_ms", 0)
    if not _is_int(sent_at_ms) or sent_at_ms < 0:
        return f"sent_at_ms must be a whole number of at least 0, not {sent_at_ms!r}"
    return None


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class LeaveCheck:
    """A pending leave to confirm after the grace: the body of one (delayed) SQS message."""

    channel: str
    user: str
    left_at: int
    endpoint: str

    def to_body(self) -> str:
        return json.dumps(
            {
                "v": 1,
                "kind": CHECK_KIND,
                "channel": self.channel,
                "user": self.user,
                "left_at": self.left_at,
                "endpoint": self.endpoint,
            },
            ensure_ascii=False,
        )


@dataclass(frozen=True)
class EventsJob:
    """EventBridge entries EventBridge did not take where they were decided (chat/events.py):
    a worker sends them, with the queue's retries behind it."""

    entries: tuple[dict[str, str], ...]

    def to_body(self) -> str:
        return json.dumps({"v": 1, "kind": EVENTS_KIND, "entries": list(self.entries)}, ensure_ascii=False)


@dataclass(frozen=True)
class RoundJob:
    """The next delivery round of a busy room (`channel` None) or channel, for the worker that
    holds it now (`holder`: chat/rounds.py)."""

    channel: str | None
    endpoint: str
    holder: str

    def to_body(self) -> str:
        document = {
            "v": 1,
            "kind": ROUND_KIND,
            "channel": self.channel,
            "endpoint": self.endpoint,
            "holder": self.holder,
        }
        return json.dumps(document, ensure_ascii=False)


def _round_job(document: dict[str, Any]) -> RoundJob:
    channel, endpoint, holder = (document.get(name) for name in ("channel", "endpoint", "holder"))
    if not (
        set(document) == ROUND_FIELDS
        and document.get("v") == 1
        and (channel is None or (isinstance(channel, str) and CHANNEL_NAME.fullmatch(channel)))
        and _is_endpoint(endpoint)
        and isinstance(holder, str)
        and HOLDER_PATTERN.fullmatch(holder)
    ):
        raise PoisonJob(
            f"not a round: a round has exactly {sorted(ROUND_FIELDS)}, v 1, a channel name or null, an endpoint "
            "and a holder (32 hex digits)"
        )
    return RoundJob(channel, str(endpoint), holder)


Job = DeliveryJob | LeaveCheck | EventsJob | RoundJob


def parse(body: str) -> Job:
    """What a queue body is: a delivery job, a leave check, events to send or a round, read once;
    PoisonJob if none of them."""
    try:
        document = json.loads(body)
    except ValueError as error:
        raise PoisonJob(f"not a delivery job: not JSON: {error}") from None
    if not isinstance(document, dict):
        raise PoisonJob("not a delivery job: not a JSON object")
    if document.get("kind") == CHECK_KIND:
        return _leave_check(document)
    if document.get("kind") == EVENTS_KIND:
        return _events_job(document)
    if document.get("kind") == ROUND_KIND:
        return _round_job(document)
    return DeliveryJob.from_document(document)


def _events_job(document: dict[str, Any]) -> EventsJob:
    entries = document.get("entries")
    if set(document) != {"v", "kind", "entries"} or document.get("v") != 1 or not isinstance(entries, list):
        raise PoisonJob("not an events job: it has exactly v 1, kind and a list of entries")
    if not 1 <= len(entries) <= EVENTS_PER_JOB or not all(
        isinstance(entry, dict) and set(entry) == ENTRY_FIELDS and all(isinstance(v, str) and v for v in entry.values())
        for entry in entries
    ):
        raise PoisonJob("not an events job: 1 to 10 entries, each Source, DetailType, Detail and EventBusName as text")
    return EventsJob(tuple(entries))


def _leave_check(document: dict[str, Any]) -> LeaveCheck:
    if set(document) != CHECK_FIELDS or document.get("v") != 1:
        raise PoisonJob(f"not a presence check: a presence check must have exactly {sorted(CHECK_FIELDS)} and v 1")
    channel, user, left_at, endpoint = (document[name] for name in ("channel", "user", "left_at", "endpoint"))
    if not (
        isinstance(channel, str)
        and CHANNEL_NAME.fullmatch(channel)
        and isinstance(user, str)
        and 0 < len(user) <= 128
        and _is_int(left_at)
        and left_at > 0
        and _is_endpoint(endpoint)
    ):
        raise PoisonJob(
            "not a presence check: a presence check needs a channel name, a user id, a left_at in ms and an endpoint"
        )
    return LeaveCheck(channel, user, left_at, endpoint)


def _is_endpoint(endpoint: Any) -> bool:
    return isinstance(endpoint, str) and endpoint.startswith(("https://", "http://localhost:"))
