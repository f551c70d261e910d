"""The app's backend moderates (POST /moderate, IAM-signed like POST /publish): the operations a
moderator of "*" has on the WebSocket, one a request, with the same frame and the same rules:
delete a room or channel message, ban and unban, and close all of a user's connections without
banning her. The backend is trusted with every channel and the room; `by` (a user id, default
"backend") is who the record and the events say did it. A direct message stays its sender's to
delete, as on the WebSocket."""

from __future__ import annotations

import json
import os
from typing import Any

from chat import backend, changes, connections, delivery, frames, moderation
from chat.callers import Caller
from chat.errors import Refusal
from chat.requests import parse_request, require_user_id
from chat.telemetry import logger

MODERATE_EXAMPLE = '{"action": "ban", "user": "<user id>", "seconds": 3600, "reason": "..."}'
ACTIONS = ("deleteMessage", "ban", "unban", "disconnect")
DEFAULT_BY = "backend"


def moderate(body: str | None, encoded: bool, caller: str | None) -> tuple[int, dict[str, Any]]:
    """(status, document) for one POST /moderate: the operation's reply, or its refusal."""
    try:
        if caller is None and not os.environ.get("IS_OFFLINE"):
            raise Refusal("forbidden", "POST /moderate must be signed (AWS_IAM): the request carries no signed caller.")
        text = backend.body_text(body, encoded)
        request = parse_request(text, MODERATE_EXAMPLE)
        action = request.get("action")
        if action not in ACTIONS:
            raise Refusal("bad_request", f'"action" must be one of {", ".join(ACTIONS)}: {MODERATE_EXAMPLE}')
        by = require_user_id(request.get("by", DEFAULT_BY), "by")
        operator = Caller(connection_id=f"backend:{by}", user=by, moderates=("*",))
        frame = json.dumps({k: v for k, v in request.items() if k != "by"}, ensure_ascii=False)
        reply = _run(operator, str(action), frame, request)
    except Refusal as refusal:
        logger.info("Refused a moderation from %s: %s", caller, refusal.text, extra={"code": refusal.code.name})
        return refusal.status, frames.error_document(refusal)
    logger.info("Moderated", extra={"caller": caller or "local", "action": action, "by": by})
    return 200, reply if isinstance(reply, dict) else {"reply": reply}


def _run(operator: Caller, action: str, frame: str, request: dict[str, Any]) -> frames.Reply:
    if action == "deleteMessage":
        return changes.delete(operator, frame)
    if action == "ban":
        return moderation.ban(operator, frame)
    if action == "unban":
        return moderation.unban(operator, frame)
    user = require_user_id(request.get("user"), "user")
    ids = list(connections.user_connection_ids(user))
    endpoint = delivery.management_endpoint({})
    for connection_id in ids:
        delivery.close(endpoint, connection_id)  # $disconnect cleans up after each
    return frames.disconnected(user, len(ids))
