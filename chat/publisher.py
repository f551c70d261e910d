"""The core of sending, free of connections and API Gateway events: store a message as its
conversation's next seq, then deliver it to the conversation's audience (inline, or through the
workers), and say how that went. The WebSocket routes (chat/messaging.py) check who may send what,
then call `publish`; so does the app's backend through POST /publish (chat/backend.py).

Delivery is held by the send that stored the message: its send record carries a lease. A repeat
of the same clientMessageId while the lease is held (a double click, an eager retry) is answered
as a duplicate whose delivery is "pending" and posts nothing; a repeat after the holder finished
is answered "complete"; one after the holder failed (it gives the lease back) or died (the lease
runs out) takes the lease and delivers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from chat import aws, connections, dispatch, fanout, frames, history, members, review, rounds
from chat.telemetry import count, logger

COMPLETE, INCOMPLETE, PENDING = "complete", "incomplete", "pending"


@dataclass(frozen=True)
class Target:
    """Where a message goes: the room, a channel, or the direct conversation of a pair."""

    channel: str | None = None
    pair: tuple[str, str] | None = None  # (sender, recipient) of a direct message

    @property
    def conversation(self) -> str:
        if self.pair is not None:
            return history.dm_conversation(*self.pair)
        return history.channel_conversation(self.channel) if self.channel is not None else history.ROOM


@dataclass(frozen=True)
class Published:
    """A message stored (or found stored: `appended.duplicate`), and how its delivery went:
    COMPLETE (every recipient posted to or queued for the workers), INCOMPLETE (stored, not
    delivered to everyone: a retry with the same clientMessageId finishes it) or PENDING (another
    send of the same clientMessageId is delivering it); for a direct message, whether the
    recipient got it live (None when this send did not deliver it)."""

    appended: history.Appended
    delivery: str
    recipient_online: bool | None = None

    @property
    def message(self) -> dict[str, Any]:
        return self.appended.message


def publish(
    target: Target,
    message: dict[str, Any],
    sender_key: str,
    endpoint: str,
    exclude: str | None = None,
    paced: bool = False,
    guard: history.Guard | None = None,
    source: str = "client",
) -> Published:
    """Store the message (history.append), then deliver it, unless the same send already did or is
    doing it. `exclude`: the sending connection, which gets its reply instead of a copy of a DM.
    `paced`: a room or channel message goes through the delivery workers whatever its audience
    (the backend's batches: their posts stay within the workers' posting budget). `guard`: what
    a change does to the message it changes, in the transaction that stores it (history.append).
    `source`: "client" or "publish" (the backend), for the review function (chat/review.py), which
    sees every new message here, before it takes a seq (edits are reviewed by chat/changes.py)."""
    message = _admitted(target, message, sender_key, source)
    appended = history.append(target.conversation, message, sender_key, pair=target.pair, guard=guard)
    client_message_id = message.get("client_message_id")
    if appended.duplicate:
        if appended.delivered:
            return Published(appended, COMPLETE)
        if not history.take_delivery(target.conversation, sender_key, client_message_id, appended.lease_until_ms):
            return Published(appended, PENDING)
    recipient_ids: list[str] = []

    def audience(page_size: int | None = None) -> Iterable[str]:
        if target.pair is None:
            if target.channel is not None:
                return members.member_ids(target.channel, page_size)
            return connections.all_ids(page_size)
        sender, recipient = target.pair
        recipient_ids.extend(connections.user_connection_ids(recipient))
        return recipient_ids + [cid for cid in connections.user_connection_ids(sender) if cid != exclude]

    stored = appended.message
    try:
        payload = frames.encode_delivery(stored)
        if target.pair is not None:  # a DM: posted from here, so the sender learns who got it live
            reached = dispatch.post(endpoint, audience(), payload, stored["id"], sent_at_ms=stored["sent_at_ms"])
        elif not paced and (few := dispatch.small(audience(fanout.FANOUT_THRESHOLD + 1))) is not None:
            reached = dispatch.post(endpoint, few, payload, stored["id"], sent_at_ms=stored["sent_at_ms"])
        else:  # the workers' audience: a busy room or channel gets one frame per round, not per message
            rounds.request(target.channel, stored["seq"], endpoint)
            reached = frozenset()
    except aws.AWS_ERRORS:
        logger.exception(
            "Delivery of %s (seq %d of %s) is incomplete", stored["id"], stored["seq"], target.conversation
        )
        count("DeliveriesIncomplete")
        _give_back(target.conversation, sender_key, client_message_id)
        return Published(appended, INCOMPLETE)
    try:
        history.mark_delivered(target.conversation, sender_key, client_message_id)
    except aws.AWS_ERRORS:  # a retry would deliver it again: clients drop a seq they have
        logger.exception("Could not mark %s delivered", stored["id"])
    online = any(cid in reached for cid in recipient_ids) if target.pair is not None else None
    return Published(appended, COMPLETE, online)


def _admitted(target: Target, message: dict[str, Any], sender_key: str, source: str) -> dict[str, Any]:
    """What may be stored: a room or channel message only while the workers' queue is short
    enough; a new message (not a change) as the review function allows it."""
    if target.pair is None:
        fanout.admit()  # a room or channel message waits in the workers' queue at most so long
    return message if "action" in message else reviewed(target, message, sender_key, "message", source)


def reviewed(target: Target, message: dict[str, Any], sender_key: str, kind: str, source: str) -> dict[str, Any]:
    """The message with the content the review function allows (chat/review.py); a repeat of a
    send already stored is not reviewed again: it is answered with what was stored."""
    client_message_id = message.get("client_message_id")
    if not review.REVIEW_FUNCTION or history.recorded(target.conversation, sender_key, client_message_id):
        return message
    named: dict[str, Any] = {"channel": target.channel} if target.channel is not None else {"room": True}
    if target.pair is not None:
        named = {"with": target.pair[1]}
    return {**message, "content": review.review(message, target.conversation, named, kind, source)}


def _give_back(conversation: str, sender_key: str, client_message_id: str | None) -> None:
    """This send could not deliver: a retry may take over at once, without waiting for the lease."""
    try:
        history.release_delivery(conversation, sender_key, client_message_id)
    except aws.AWS_ERRORS:
        logger.exception(
            "Could not give back the delivery of %s; a retry takes it over in %d s",
            client_message_id,
            history.DELIVERY_LEASE_MS // 1000,
        )
