"""What a client does, as calls to the handler: any frame to the entry point serverless.yml wires
to its route (`send`), and the common ones by name: say, DM, read history, renew its token."""

from __future__ import annotations

import functools
import json
from typing import Any, Callable

import yaml

from scripts.service_config import ROOT
from tests.support.events import action_body, message_event, send_message_body


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


@functools.cache
def routes() -> dict[str, str]:
    """Each WebSocket route key -> the name of the handler function serverless.yml wires to it."""
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)  # CloudFormation tags
    config = yaml.load((ROOT / "serverless.yml").read_text(), Loader=Loader)
    wired = {}
    for function in config["functions"].values():
        for event in function.get("events", []):
            if "websocket" in event:
                route = event["websocket"]["route"] if isinstance(event["websocket"], dict) else event["websocket"]
                wired[route] = function["handler"].split(".", 1)[1]
    return wired


def entry_point(handler: Any, route: str) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The entry point API Gateway invokes for a route (an action no route has reaches $default)."""
    return getattr(handler, routes().get(route, routes()["$default"]))


def send(handler: Any, route: str, connection_id: str, user: str | None = None, *, body: str | None = None,
         expires_at: int | None = None, channels: Any = None, moderates: Any = None, **fields: Any) -> dict[str, Any]:
    """One frame from a connection, to the entry point serverless.yml wires to its route, as API
    Gateway hands it over: `body` as given, else {"action": route, **fields}; with the
    authorizer's context for `user` (its token's `exp`, `channels` and `moderates` claims when given)."""
    frame = body if body is not None else action_body(route, **fields)
    event = message_event(connection_id, frame, route if route in routes() else "$default", user, expires_at)
    if channels is not None:
        event["requestContext"]["authorizer"]["channels"] = json.dumps(channels)
    if moderates is not None:
        event["requestContext"]["authorizer"]["moderates"] = json.dumps(moderates)
    return entry_point(handler, route)(event, None)
