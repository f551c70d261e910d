"""Who sent a frame, read from the event API Gateway hands over: the connection, and what the
$connect authorizer verified about its token (API Gateway passes its context on every route)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chat.errors import Refusal
from chat.users import is_valid_user_id

NO_CONNECTION = "This frame came without a connection id: only API Gateway's WebSocket events carry one."


@dataclass(frozen=True)
class Caller:
    """The connection; the user (None for an anonymous connection); the channels its token
    allows (None: the token has no such claim); when the token it connected with expires (epoch
    seconds, None if unknown); the request context the frame came with; the channels its token
    moderates (None: no such claim); and the issuer of its token (None: the service's own)."""

    connection_id: str
    user: str | None
    channels: tuple[str, ...] | None = None
    token_expires_at: int | None = None
    request_context: dict[str, Any] = field(default_factory=dict, compare=False)
    moderates: tuple[str, ...] | None = None
    issuer: str | None = None


def caller(event: dict[str, Any]) -> Caller:
    """Who sent this WebSocket event; every one API Gateway sends names its connection (a
    direct invocation without one is refused)."""
    authorizer = _authorizer(event)
    expires = authorizer.get("exp")
    connection = connection_id(event)
    if not connection:
        raise Refusal("bad_request", NO_CONNECTION)
    return Caller(
        connection,
        user_id(event),
        allowed_channels(event),
        int(expires) if isinstance(expires, (int, float, str)) and str(expires).isdigit() else None,
        event.get("requestContext") or {},
        _patterns(authorizer, "moderates"),
        authorizer.get("issuer") if isinstance(authorizer.get("issuer"), str) else None,
    )


def connection_id(event: dict[str, Any]) -> str | None:
    return (event.get("requestContext") or {}).get("connectionId")


def user_id(event: dict[str, Any]) -> str | None:
    """The user the $connect authorizer verified. None for anonymous connections."""
    user = _authorizer(event).get("userId")
    return user if is_valid_user_id(user) else None


def allowed_channels(event: dict[str, Any]) -> tuple[str, ...] | None:
    """The token's `channels` claim, which the authorizer passed on as JSON text (its context
    holds only strings and numbers). Anything unreadable allows no channel at all."""
    return _patterns(_authorizer(event), "channels")


def _patterns(authorizer: dict[str, Any], claim: str) -> tuple[str, ...] | None:
    """A claim of channel patterns as the authorizer passed it on (JSON text); anything
    unreadable allows, or moderates, no channel at all."""
    if claim not in authorizer:
        return None
    try:
        patterns = json.loads(authorizer[claim])
    except (TypeError, ValueError):
        return ()
    return tuple(p for p in patterns if isinstance(p, str)) if isinstance(patterns, list) else ()


def _authorizer(event: dict[str, Any]) -> dict[str, Any]:
    return (event.get("requestContext") or {}).get("authorizer") or {}
