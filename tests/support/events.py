"""Builders for the events API Gateway sends to the handlers, so tests say only what differs."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

API_ID = "abc123"
REGION = "us-east-1"
STAGE = "dev"
DOMAIN_NAME = f"{API_ID}.execute-api.{REGION}.amazonaws.com"
# Where chat.delivery.management_endpoint() posts for events built here.
MANAGEMENT_ENDPOINT = f"https://{DOMAIN_NAME}/{STAGE}"
CONNECTED_AT_MS = 1_764_000_000_000


def websocket_event(
    connection_id: str, event_type: str, route_key: str, body: str | None = None, user: str | None = None,
    expires_at: int | None = None,
) -> dict[str, Any]:
    """A WebSocket proxy event as API Gateway delivers it to Lambda; with `user`, as it does
    for a connection our $connect authorizer allowed (its context on every route), with the
    token's expiry when given."""
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
    if user is not None:
        event["requestContext"]["authorizer"] = {"principalId": user, "userId": user, "integrationLatency": 42}
        if expires_at is not None:
            event["requestContext"]["authorizer"]["exp"] = expires_at
    return event


def connect_event(connection_id: str, user: str | None = None, expires_at: int | None = None,
                  protocols: str | None = None) -> dict[str, Any]:
    """$connect, with the Sec-WebSocket-Protocol header the client sent, if any."""
    event = websocket_event(connection_id, "CONNECT", "$connect", user=user, expires_at=expires_at)
    if protocols is not None:
        event["headers"] = {"Host": DOMAIN_NAME, "Sec-WebSocket-Protocol": protocols}
    return event


def disconnect_event(connection_id: str, user: str | None = None) -> dict[str, Any]:
    return websocket_event(connection_id, "DISCONNECT", "$disconnect", user=user)


def message_event(
    connection_id: str, body: str | None, route_key: str = "sendMessage", user: str | None = None, expires_at: int | None = None
) -> dict[str, Any]:
    return websocket_event(connection_id, "MESSAGE", route_key, body, user, expires_at)


def action_body(action: str, **fields: Any) -> str:
    return json.dumps({"action": action, **fields}, ensure_ascii=False)


def token(
    secret: str, sub: Any = "alice", expires_in: float | None = 3600, algorithm: str = "HS256", **claims: Any
) -> str:
    """A JWT as a client would present it; None leaves a claim out."""
    import jwt

    exp = None if expires_in is None else int(time.time() + expires_in)
    payload = {key: value for key, value in {"sub": sub, "exp": exp, **claims}.items() if value is not None}
    return jwt.encode(payload, secret, algorithm=algorithm)


def authorizer_event(query_token: str | None = None, header: str | None = None, protocols: str | None = None) -> dict[str, Any]:
    """The REQUEST authorizer event API Gateway sends on $connect."""
    event: dict[str, Any] = {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:{REGION}:123456789012:{API_ID}/{STAGE}/$connect",
        "headers": {"Host": DOMAIN_NAME, "Sec-WebSocket-Version": "13"},
        "requestContext": websocket_event("conn-auth", "CONNECT", "$connect")["requestContext"],
    }
    if query_token is not None:
        event["queryStringParameters"] = {"token": query_token}
    if header is not None:
        event["headers"]["Authorization"] = header
    if protocols is not None:
        event["headers"]["Sec-WebSocket-Protocol"] = protocols
    return event


def send_message_body(content: Any) -> str:
    """The frame a client sends: {"action": "sendMessage", "content": ...}."""
    return json.dumps({"action": "sendMessage", "content": content}, ensure_ascii=False)


def http_get_event(path: str) -> dict[str, Any]:
    return {"httpMethod": "GET", "path": path, "resource": path, "headers": {}, "body": None}


def exp_of(jwt_token: str) -> int:
    """The `exp` claim of a token, read without checking it."""
    return int(json.loads(base64.urlsafe_b64decode(jwt_token.split(".")[1] + "=="))["exp"])
