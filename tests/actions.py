"""What a client does, as calls to the handler: say, DM, read history, renew its token. Shared
by the unit tests."""

from __future__ import annotations

import json
from typing import Any

from tests.events import action_body, message_event, send_message_body


def history_response(handler: Any, user: str | None, connection_id: str = "reader", **fields: Any) -> dict[str, Any]:
    event = message_event(connection_id, action_body("getRecentMessages", **fields), "getRecentMessages", user)
    return handler.get_recent_messages(event, None)


def history(handler: Any, user: str | None, connection_id: str = "reader", **fields: Any) -> dict[str, Any]:
    """The "history" document of a getRecentMessages reply that must succeed."""
    response = history_response(handler, user, connection_id, **fields)
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])["history"]


def all_history(handler: Any, user: str | None, limit: int, **fields: Any) -> list[Any]:
    """Every message content of a conversation, oldest first, following "before" to the end."""
    contents: list[Any] = []
    cursor = None
    for _ in range(1000):
        page = history(handler, user, limit=limit, **fields, **({"before": cursor} if cursor else {}))
        contents = [m["content"] for m in page["messages"]] + contents
        cursor = page["before"]
        if not cursor:
            return contents
    raise AssertionError("history paging did not end")


def say_response(handler: Any, user: str | None, content: Any) -> dict[str, Any]:
    return handler.send_message(message_event(f"{user}-conn", send_message_body(content), "sendMessage", user), None)


def say(handler: Any, user: str | None, content: Any) -> None:
    assert say_response(handler, user, content)["statusCode"] == 200


def dm_response(handler: Any, sender: str, to: Any, content: Any, **fields: Any) -> dict[str, Any]:
    body = action_body("sendDirectMessage", to=to, content=content, **fields)
    return handler.send_direct_message(message_event(f"{sender}-conn", body, "sendDirectMessage", sender), None)


def dm(handler: Any, sender: str, to: str, content: Any) -> None:
    assert dm_response(handler, sender, to, content)["statusCode"] == 200


def renew(handler: Any, connection_id: str, user: str, expires_at: int, new_token: str) -> dict[str, Any]:
    """renewToken on a connection whose current token expires at `expires_at`."""
    body = action_body("renewToken", token=new_token)
    return handler.renew_token(message_event(connection_id, body, "renewToken", user, expires_at), None)
