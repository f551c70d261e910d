"""Each user's conversation list (getConversations) and read positions (markRead), in the
conversations table under "inbox#<user>":
- a direct conversation: sort key "<other user>", moved in the same transaction as each direct
  message (`updated_at` = when its latest message was sent, `seq` its latest seq);
- a channel the user follows: sort key "#<channel>" (user ids and channel names have no "#"),
  the room "#",
  written when the user joins it or marks it read (`updated_at` = then: a channel's messages do
  not move every member's entry, which would cost a write per member per message).
Each carries `read_seq`, the user's read position, which only moves forward. They are read
through the `inbox-index` (`inbox` = the user, most recent `updated_at` first); a page ends with a
cursor "<updated_at ms>#<sort key>" that the next request sends back."""

from __future__ import annotations

import re
from typing import Any

from botocore.exceptions import ClientError

from chat import conversations
from chat.errors import Refusal


def table() -> Any:
    return conversations.table()


INBOX_INDEX = "inbox-index"
# The cursor: "<updated_at ms>#<user id>" or "<updated_at ms>##<channel>" (neither has a "#").
CURSOR = re.compile(r"[0-9]{1,15}#(?:[^#]{1,128}|#[A-Za-z0-9_.:-]{0,100})")
CHANNEL_PREFIX = "#"
# The room's entry: a channel's prefix and no name (a channel's name has at least one character).
ROOM_KEY = CHANNEL_PREFIX
BAD_CURSOR = '"before" must be the "before" of an earlier getConversations reply.'


def items(conversation: str, seq: int, sent_at_ms: int, pair: tuple[str, str]) -> list[dict[str, Any]]:
    """The transaction items that move both users' entries for this direct conversation to the
    message `seq` sent at `sent_at_ms`. `pair` is (sender, recipient): the sender has read what
    they wrote, so their read position moves to it too."""
    first, second = pair
    return [
        {
            "Update": {
                "TableName": table().name,
                "Key": {"pk": f"inbox#{owner}", "sk": other},
                "UpdateExpression": "SET inbox = :owner, #with = :other, conversation = :conversation, "
                "seq = :seq, updated_at = :at" + (", read_seq = :seq" if owner == first else ""),
                "ExpressionAttributeNames": {"#with": "with"},
                "ExpressionAttributeValues": {
                    ":owner": owner,
                    ":other": other,
                    ":conversation": conversation,
                    ":seq": seq,
                    ":at": sent_at_ms,
                },
            }
        }
        for owner, other in ((first, second), (second, first))
    ]


def parse_cursor(value: Any) -> str | None:
    """getConversations' `before`: the cursor an earlier reply gave, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not CURSOR.fullmatch(value):
        raise Refusal("bad_request", BAD_CURSOR)
    return value


def cursor(entry: dict[str, Any]) -> str:
    """The cursor that continues after this entry."""
    return f"{int(entry['updated_at'])}#{entry['sk']}"


def follow_channel(user: str, channel: str, conversation: str, seq: int, now_ms: int) -> None:
    """The user follows the channel (a join): listed from now on, read up to `seq` if it has no
    read position yet (what the join's reply tells it is there)."""
    table().update_item(
        Key={"pk": f"inbox#{user}", "sk": CHANNEL_PREFIX + channel},
        UpdateExpression="SET inbox = :user, channel = :channel, conversation = :conversation, "
        "updated_at = if_not_exists(updated_at, :now), read_seq = if_not_exists(read_seq, :seq)",
        ExpressionAttributeValues={
            ":user": user,
            ":channel": channel,
            ":conversation": conversation,
            ":now": now_ms,
            ":seq": seq,
        },
    )


def unfollow_channel(user: str, channel: str) -> None:
    """The user left the channel on purpose: it is no longer listed."""
    table().delete_item(Key={"pk": f"inbox#{user}", "sk": CHANNEL_PREFIX + channel})


def mark_read(user: str, sort_key: str, fields: dict[str, Any], seq: int, now_ms: int) -> int | None:
    """Move the user's read position in one conversation forward to `seq`: None if it moved,
    else the position it already had (as far or further). A direct conversation's entry must
    exist (its messages made it); a channel's is made if need be."""
    values = {":seq": seq, ":user": user, **{f":{name}": value for name, value in fields.items()}}
    update = "SET read_seq = :seq, inbox = :user" + "".join(f", {name} = :{name}" for name in fields)
    exists = "attribute_exists(pk) AND " if not sort_key.startswith(CHANNEL_PREFIX) else ""
    if sort_key.startswith(CHANNEL_PREFIX):
        update += ", updated_at = :now"
        values[":now"] = now_ms
    try:
        table().update_item(
            Key={"pk": f"inbox#{user}", "sk": sort_key},
            UpdateExpression=update,
            ConditionExpression=f"{exists}(attribute_not_exists(read_seq) OR read_seq < :seq)",
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
        return None
    except ClientError as error:
        if error.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        return int(error.response.get("Item", {}).get("read_seq", {}).get("N", 0))


def page(user: str, limit: int, before: str | None) -> tuple[list[dict[str, Any]], bool]:
    """The user's direct conversations, most recent first: up to `limit` entries ({"with",
    "conversation", "seq", "updated_at"}) older than the cursor `before`, and whether more may
    exist."""
    kwargs: dict[str, Any] = {
        "IndexName": INBOX_INDEX,
        "KeyConditionExpression": "inbox = :user",
        "ExpressionAttributeValues": {":user": user},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if before is not None:
        updated_at, other = before.split("#", 1)
        kwargs["ExclusiveStartKey"] = {"inbox": user, "updated_at": int(updated_at), "pk": f"inbox#{user}", "sk": other}
    answer = table().query(**kwargs)
    return answer.get("Items", []), "LastEvaluatedKey" in answer
