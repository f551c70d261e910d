"""Bans, in the conversations table: one item per user and place ("ban#<user>", and the channel,
or "*" for the whole service), until a time or until unbanned. An item past its time is no ban
(DynamoDB's TTL deletes it within days); every check reads consistently, so a ban is in force
from the moment it is acknowledged."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from chat import aws, conversations

SERVICE = "*"  # the sort key of a service-wide ban (no channel name is "*")


@dataclass(frozen=True)
class Ban:
    """`channel` None: the whole service. `until_ms` None: until unbanned."""

    user: str
    channel: str | None
    until_ms: int | None
    reason: str | None
    by: str


def _key(user: str, channel: str | None) -> dict[str, str]:
    return {"pk": f"ban#{user}", "sk": channel if channel is not None else SERVICE}


def put(ban: Ban, now_ms: int) -> None:
    """Store (or replace) the ban."""
    item: dict[str, Any] = {**_key(ban.user, ban.channel), "by": ban.by, "at_ms": now_ms}
    if ban.until_ms is not None:
        item.update(until_ms=ban.until_ms, ttl=ban.until_ms // 1000 + 1)
    if ban.reason is not None:
        item["reason"] = ban.reason
    conversations.table().put_item(Item=item)


def remove(user: str, channel: str | None) -> Ban | None:
    """Lift the ban: the ban that was in force, or None."""
    old = conversations.table().delete_item(Key=_key(user, channel), ReturnValues="ALL_OLD").get("Attributes")
    return _ban(old, user, None) if old else None


def active(user: str, channel: str | None, now_ms: int) -> Ban | None:
    """The ban that keeps the user out of the channel (a service-wide one first), or with
    `channel` None out of the service; None if there is none in force."""
    keys = [_key(user, None)] + ([_key(user, channel)] if channel is not None else [])
    found = {item["sk"]: item for item in aws.batch_get(conversations.table(), keys, consistent=True)}
    for key in keys:
        ban = _ban(found.get(key["sk"]), user, now_ms)
        if ban is not None:
            return ban
    return None


def _ban(item: dict[str, Any] | None, user: str, now_ms: int | None) -> Ban | None:
    """The ban an item holds; None if there is none, or (with `now_ms`) it is over."""
    if item is None:
        return None
    until = int(item["until_ms"]) if "until_ms" in item else None
    if now_ms is not None and until is not None and until <= now_ms:
        return None
    channel = None if item["sk"] == SERVICE else str(item["sk"])
    return Ban(user, channel, until, item.get("reason"), str(item.get("by", "")))
