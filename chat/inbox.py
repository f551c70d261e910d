"""The DM inbox: each user's direct conversations, most recent first (getConversations). One item
per user and conversation partner in the conversations table ("inbox#<user>", "<other user>"),
moved in the same transaction as each direct message, and read through the `inbox-index`
(`inbox` = the user, `updated_at` = when its latest message was sent). A page ends with a cursor
"<updated_at ms>#<other user>" that the next request sends back."""

from __future__ import annotations

import re
from typing import Any

from chat import conversations
from chat.errors import Refusal

INBOX_INDEX = "inbox-index"
# The cursor: "<updated_at ms>#<user id>" (user ids have no "#").
CURSOR = re.compile(r"[0-9]{1,15}#[^#]{1,128}")
BAD_CURSOR = '"before" must be the "before" of an earlier getConversations reply.'


def items(conversation: str, seq: int, sent_at_ms: int, pair: tuple[str, str]) -> list[dict[str, Any]]:
    """The transaction items that move both users' entries for this direct conversation to the
    message `seq` sent at `sent_at_ms`."""
    first, second = pair
    return [
        {
            "Update": {
                "TableName": conversations.table().name,
                "Key": {"pk": f"inbox#{owner}", "sk": other},
                "UpdateExpression": "SET inbox = :owner, #with = :other, conversation = :conversation, "
                "seq = :seq, updated_at = :at",
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
    return f"{int(entry['updated_at'])}#{entry['with']}"


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
    answer = conversations.table().query(**kwargs)
    return answer.get("Items", []), "LastEvaluatedKey" in answer
