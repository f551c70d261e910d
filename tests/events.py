"""Builders for the events API Gateway sends to the handlers, so tests say only what differs."""

from __future__ import annotations

import json
from typing import Any

API_ID = "abc123"
REGION = "us-east-1"
STAGE = "dev"
DOMAIN_NAME = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
# Where handler.management_endpoint() posts for events built here.
MANAGEMENT_ENDPOINT = f"https://{DOMAIN_NAME}/{STAGE}"
CONNECTED_AT_MS = 1_764_000_000_000


def websocket_event(connection_id: str, event_type: str, route_key: str, body: str | None = None) -> dict[str, Any]:
    """A WebSocket proxy event as API Gateway delivers it to Lambda."""
    event: dict[str, Any] = {
        "requestContext": {
            "routeKey": route_key,
            "eventType": event_type,
            "connectionId": connection_id,
            "domainName": DOMAIN_NAME,
            "stage": STAGE,
            "apiId": API_ID,
            "connectedAt": CONNECTED_AT_MS,
            "requestTimeEpoch": CONNECTED_AT_MS + 5,
            "messageDirection": "IN",
        },
        "isBase64Encoded": False,
    }
    if body is not None:
        event["body"] = body
    return event


def connect_event(connection_id: str) -> dict[str, Any]:
    return websocket_event(connection_id, "CONNECT", "$connect")


def disconnect_event(connection_id: str) -> dict[str, Any]:
    return websocket_event(connection_id, "DISCONNECT", "$disconnect")


def message_event(connection_id: str, body: str | None, route_key: str = "sendMessage") -> dict[str, Any]:
    return websocket_event(connection_id, "MESSAGE", route_key, body)


def send_message_body(content: Any) -> str:
    """The frame a client sends: {"action": "sendMessage", "content": ...}."""
    return json.dumps({"action": "sendMessage", "content": content}, ensure_ascii=False)


def http_get_event(path: str) -> dict[str, Any]:
    return {"httpMethod": "GET", "path": path, "resource": path, "headers": {}, "body": None}
