"""What clients get: every document and text the service sends, built here and nowhere else, as
UTF-8 JSON with non-ASCII text as-is, each within API Gateway's 128 KB message limit. Replies to
requests, the frames pushed to connections (messages, presence, token expiry), and the reply
envelope that carries a request's `ref` (docs/protocol.md: "Replies and errors")."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, TypeVar

from chat.errors import Refusal
from chat.requests import MAX_SEQ
from chat.telemetry import logger

# Where an entry of a page is: a message's seq, or getConversations' cursor.
Position = TypeVar("Position", int, str)
# A reply: a JSON document, plain text (as the tutorial's clients know it), or nothing at all.
Reply = dict[str, Any] | str | None

# API Gateway refuses to deliver a WebSocket message larger than 128 KB.
MAX_MESSAGE_BYTES = 128 * 1024
# Room kept in a history reply for everything around the messages ("with" is at most 128
# characters, 512 bytes; "channel" 100; the two cursors), so that any message that was accepted
# also fits in one, alone.
HISTORY_ENVELOPE_BYTES = 1024
# json.dumps writes ", " between the messages of a history reply.
HISTORY_SEPARATOR_BYTES = 2
# The size of the largest seq any message can have, for checking a message before it has one.
LARGEST_SEQ = MAX_SEQ

ROOM_SENT = "Message sent to all connections."
UNRECOGNIZED = "Unrecognized WebSocket action."
EXPIRED = "Your token has expired: renew it or reconnect."


def encode(document: Any) -> bytes:
    """JSON as the service sends it: UTF-8, text as-is, and never NaN or Infinity (which no
    browser's JSON.parse reads)."""
    try:
        return json.dumps(document, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Refusal("bad_request", 'Message "content" is not valid Unicode (it has a lone surrogate).') from None


def public_message(message: dict[str, Any], full: bool) -> dict[str, Any]:
    """What clients see of a message. Anonymous live messages stay {"content": ...}, as in
    in the tutorial; every other one carries its seq, and its channel, recipient and clientMessageId
    when it has them; an edited one `editedAt`, a deleted one `deleted` and `deletedBy` and no
    content; a change (chat/changes.py) its `action`, `target` and, for a delete, any `reason`."""
    if not full:
        return {"content": message.get("content")}
    shown: dict[str, Any] = {"channel": message["channel"]} if "channel" in message else {}
    shown["seq"] = message["seq"]
    if "action" in message:
        shown.update(action=message["action"], target=message["target"])
    if "content" in message:
        shown["content"] = message["content"]
    shown.update(sender=message.get("sender"), sent_at=iso(message["sent_at_ms"]), id=message["id"])
    if "to" in message:
        shown["to"] = message["to"]
    if "client_message_id" in message:
        shown["clientMessageId"] = message["client_message_id"]
    if "edited_at_ms" in message and not message.get("deleted"):
        shown["editedAt"] = iso(message["edited_at_ms"])
    if message.get("deleted"):
        shown.update(deleted=True, deletedBy=message.get("deleted_by"))
    if "reason" in message:
        shown["reason"] = message["reason"]
    return shown


def encode_round(messages: list[dict[str, Any]]) -> tuple[bytes, int]:
    """A busy conversation's round (chat/rounds.py): one frame with as many of the messages, in
    the order given, as fit API Gateway's 128 KB, and how many that is (at least one: every
    stored message fits alone)."""
    shown: list[dict[str, Any]] = []
    size = len(encode({"messages": []}))
    for message in messages:
        public = public_message(message, full="sender" in message)
        added = len(encode(public)) + (HISTORY_SEPARATOR_BYTES if shown else 0)
        if shown and size + added > MAX_MESSAGE_BYTES:
            break
        shown.append(public)
        size += added
    return encode({"messages": shown}), len(shown)


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
        raise Refusal(
            "too_large", f"Message too large: {size} bytes with its envelope, the limit is {MAX_MESSAGE_BYTES}."
        )
    return payload


def fit_history(entries: list[tuple[Position, dict[str, Any] | None, int]]) -> tuple[list[dict[str, Any]], int, bool]:
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


def shown_with_size(message: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A message as a history entry, and its encoded size."""
    shown = public_message(message, full=True)
    return shown, len(encode(shown))


def history_entries(entries: list[tuple[int, dict[str, Any] | None]]) -> list[tuple[int, dict[str, Any] | None, int]]:
    """Stored messages as history entries, for fit_history: (seq, what the client is shown, its
    size); one that cannot be shown (past retention, unreadable) has no message and size 0."""
    shown: list[tuple[int, dict[str, Any] | None, int]] = []
    for seq, message in entries:
        if message is None:
            shown.append((seq, None, 0))
            continue
        try:
            shown.append((seq, *shown_with_size(message)))
        except (Refusal, ValueError, RecursionError) as error:
            logger.warning("Skipped stored message %s: %s: %s", seq, type(error).__name__, error)
            shown.append((seq, None, 0))
    return shown


# --- replies to requests -------------------------------------------------------------------


def history_page(
    conversation: dict[str, Any], messages: list[dict[str, Any]], before: int | None, after: int | None
) -> dict[str, Any]:
    """getRecentMessages: whose conversation ({"with": ...} or {"channel": ...}), its messages
    oldest first, and the cursors to page on with (null when there is nothing more that way)."""
    return {"history": {**conversation, "messages": messages, "before": before, "after": after}}


def conversation_entry(
    named: dict[str, Any], seq: int, read_seq: int, last: dict[str, Any] | None, online: bool | None
) -> dict[str, Any]:
    """One conversation in getConversations: which, its latest seq, the user's read position,
    how many are unread, its latest message; for a DM, whether the other user is online."""
    read_seq = min(read_seq, seq)
    entry = {
        **named,
        "seq": seq,
        "readSeq": read_seq,
        "unread": seq - read_seq,
        "last": public_message(last, full=True) if last is not None else None,
    }
    if online is not None:
        entry["online"] = online
    return entry


def read_position(named: dict[str, Any], seq: int) -> dict[str, Any]:
    """The reply to markRead, and what the reader's other connections are told: where the
    user has read to in that conversation."""
    return {"read": {**named, "seq": seq}}


def read_receipt(reader: str, seq: int) -> dict[str, Any]:
    """To the other user of a direct conversation: the reader has read up to `seq`."""
    return {"readReceipt": {"with": reader, "seq": seq}}


def typing(named: dict[str, Any], user: str) -> dict[str, Any]:
    """To a channel's members or the other user of a DM: `user` is typing (for 5 s)."""
    return {"typing": {**named, "user": user}}


def typing_reply(named: dict[str, Any], forwarded: bool) -> dict[str, Any]:
    """The reply to a typing frame (sent with a `ref`): whether it went on, or was one within 2 s
    of the last and was dropped."""
    return {"typing": {**named, "forwarded": forwarded}}


def conversations_page(entries: list[dict[str, Any]], before: str | None) -> dict[str, Any]:
    return {"conversations": entries, "before": before}


def joined(channel: str, seq: int) -> dict[str, Any]:
    return {"joined": {"channel": channel, "seq": seq}}


def left(channel: str, reason: str | None = None) -> dict[str, Any]:
    """The reply to a leave; with `reason` ("banned"), pushed to a connection taken out."""
    return {"left": {"channel": channel, **({"reason": reason} if reason else {})}}


def banned(reason: str | None, until_ms: int | None) -> bytes:
    """Pushed to each connection of a user banned from the service, just before it is closed."""
    return encode({"banned": {"reason": reason, "until": iso(until_ms) if until_ms is not None else None}})


def ban_text(channel: str | None, until_ms: int | None, reason: str | None) -> str:
    """Why a banned user is refused: where, until when, and the moderator's reason."""
    where = f'channel "{channel}"' if channel is not None else "this service"
    until = f"until {iso(until_ms)}" if until_ms is not None else "until a moderator lifts it"
    return f"You are banned from {where} {until}" + (f": {reason}" if reason else ".")


def ban_reply(kind: str, user: str, channel: str | None, until_ms: int | None, closed: int) -> dict[str, Any]:
    """The acknowledgement of a ban or an unban (`kind`: "ban", "unban"): whom, where (no channel:
    the whole service), until when, and how many of the user's connections it took out."""
    shown: dict[str, Any] = {"user": user, "channel": channel}
    if kind == "ban":
        shown.update(until=iso(until_ms) if until_ms is not None else None, removed=closed)
    return {kind: shown}


def presence_page(channel: str, members: list[tuple[str, int]], count: int, after: str | None) -> dict[str, Any]:
    """getPresence: one entry per user with their connections in the channel, the users online."""
    shown = [{"user": user, "connections": connections} for user, connections in members]
    return {"presence": {"channel": channel, "members": shown, "count": count, "after": after}}


def renewed(expires_at: int) -> dict[str, Any]:
    return {"renewed": {"expiresAt": iso(expires_at * 1000)}}


def sent(
    named: dict[str, Any], message: dict[str, Any], duplicate: bool, delivery: str, online: bool | None = None
) -> dict[str, Any]:
    """The acknowledgement of a send that named a channel or a clientMessageId."""
    return {"sent": acknowledgement(named, message, duplicate, delivery, online)}


def acknowledgement(
    named: dict[str, Any], message: dict[str, Any], duplicate: bool, delivery: str, online: bool | None = None
) -> dict[str, Any]:
    """Where a stored message went (`named`: {"channel"}, {"to"}, {"room": true} or nothing for a
    WebSocket send to the room), its seq and id, whether it was a repeat, how its delivery went
    ("complete", "incomplete", "pending"), and for a DM whether the recipient got it live (when
    this send delivered it)."""
    shown: dict[str, Any] = {**named, "seq": message["seq"], "id": message["id"]}
    if "client_message_id" in message:
        shown["clientMessageId"] = message["client_message_id"]
    shown.update(duplicate=duplicate, delivery=delivery)
    if online is not None:
        shown["recipientOnline"] = online
    return shown


def changed(
    kind: str, named: dict[str, Any], target: int, change: dict[str, Any], duplicate: bool, delivery: str
) -> dict[str, Any]:
    """The acknowledgement of an edit or a delete (`kind`: "edited", "deleted"): where, the seq of
    the message changed, and the seq the change took in the conversation (`change`)."""
    shown: dict[str, Any] = {**named, "seq": target, "change": change["seq"]}
    if "client_message_id" in change:
        shown["clientMessageId"] = change["client_message_id"]
    shown.update(duplicate=duplicate, delivery=delivery)
    return {kind: shown}


def disconnected(user: str, closed: int) -> dict[str, Any]:
    """POST /moderate's disconnect: whose connections, and how many were closed."""
    return {"disconnected": {"user": user, "closed": closed}}


def publish_reply(results: list[dict[str, Any]], failed: int) -> dict[str, Any]:
    """POST /publish: a result per message, in the order given, and how many failed."""
    return {"results": results, "failed": failed}


def error_document(refusal: Refusal) -> dict[str, Any]:
    """A refusal as the HTTP API answers it: its code and text."""
    return {"error": {"code": refusal.code.name, "text": refusal.text}}


def dm_delivered(recipient: str) -> str:
    return f"Direct message delivered to {recipient}."


def dm_stored(recipient: str) -> str:
    return f"{recipient} is not connected: the message was stored and will be in their history."


def incomplete(seq: int, where: str) -> str:
    """A send without clientMessageId stored, but not delivered to everyone: never resend it."""
    return f"Message stored as seq {seq}, but not delivered to everyone: do not send it again; it is in {where}."


# --- frames pushed to connections ----------------------------------------------------------


def presence_change(channel: str, user: str, state: str) -> bytes:
    return encode({"presenceChange": {"channel": channel, "user": user, "state": state}})


def token_expiring(expires_at: int) -> bytes:
    return encode({"tokenExpiring": {"at": iso(expires_at * 1000)}})


def expired() -> bytes:
    """Sent to a connection whose token expired, just before it is closed."""
    return EXPIRED.encode("utf-8")


# --- the reply envelope --------------------------------------------------------------------


def reply_body(reply: Reply) -> str | None:
    """A reply as sent to a request without `ref`: JSON, or the text as it is."""
    if reply is None or isinstance(reply, str):
        return reply
    return encode(reply).decode("utf-8")


def with_ref(ref: str | None, reply: Reply) -> str:
    """A successful reply to a request with `ref`: one JSON document carrying it back."""
    return encode({"reply": {"ref": ref, "status": 200, "body": reply}}).decode("utf-8")


def refusal_with_ref(ref: str | None, refusal: Refusal) -> str:
    """A refusal of a request with `ref` (null when the ref itself was refused): its code, its
    text and whether sending it again can help."""
    error = {"code": refusal.code.name, "text": refusal.text, "retry": refusal.retry}
    return encode({"reply": {"ref": ref, "status": refusal.status, "error": error}}).decode("utf-8")


def iso(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
