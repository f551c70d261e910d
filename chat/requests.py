"""What clients send: a frame parsed into a request, and every field checked before anything
is stored or sent. A BadMessage carries the reason the client is shown."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from chat.users import USER_ID_RULE, checked_user_id

# Arrays and objects inside "content": far more than any chat message needs, far less than
# the ~1,000 levels at which Python's JSON encoder gives up (a deeper message could be stored
# but never sent back).
MAX_CONTENT_DEPTH = 64
# Python refuses to turn longer digit strings into ints (sys.get_int_max_str_digits()).
MAX_INTEGER_DIGITS = 4300
DEFAULT_HISTORY_LIMIT = 20
MAX_HISTORY_LIMIT = 100
# Channel names are part of DynamoDB keys and of capability patterns ("team-*"): ASCII only, so
# no two names look alike, and never "#" or "*".
CHANNEL_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
CHANNEL_RULE = '1 to 100 characters: ASCII letters, digits, "-", "_", ".", ":"'
# A client's own id for a message, so that a retry is recognized: a UUID fits.
CLIENT_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")

SEND_MESSAGE_EXAMPLE = '{"action": "sendMessage", "content": "..."}'
DIRECT_MESSAGE_EXAMPLE = '{"action": "sendDirectMessage", "to": "<user id>", "content": "..."}'
HISTORY_EXAMPLE = '{"action": "getRecentMessages", "with": "<user id>", "limit": 20}'
JOIN_EXAMPLE = '{"action": "join", "channel": "<name>"}'
LEAVE_EXAMPLE = '{"action": "leave", "channel": "<name>"}'

TOO_DEEP = f'Message is nested too deeply: "content" may have at most {MAX_CONTENT_DEPTH} levels of arrays and objects.'
NOT_FINITE = "Message has a number that is not finite (NaN, Infinity, or too large for a double such as 1e400)."


class BadMessage(ValueError):
    """A client sent something we cannot act on; the text is the reason shown to it."""

    def __init__(self, reason: str, status_code: int = 400) -> None:
        super().__init__(reason)
        self.status_code = status_code


def is_heartbeat(body: Any) -> bool:
    """{"action": "heartbeat"}: on AWS a MOCK route answers it; offline it reaches $default."""
    try:
        return isinstance(body, str) and json.loads(body) == {"action": "heartbeat"}
    except (ValueError, RecursionError):  # any frame at all reaches $default, however deep
        return False


def parse_request(body: str | None, example: str) -> dict[str, Any]:
    """The frame as a JSON object, or a BadMessage that shows the sender an example."""
    if not isinstance(body, str) or not body.strip():
        raise BadMessage(f"Message body is empty: send {example}.")
    try:
        request = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except BadMessage:
        raise
    except RecursionError:
        raise BadMessage(TOO_DEEP) from None
    except ValueError:
        raise BadMessage("Message body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise BadMessage(f"Message body must be a JSON object like {example}.")
    return request


def _refuse_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity, which are not JSON: json.dumps would write them back
    # bare, and a browser's JSON.parse fails on the broadcast and on every history page after.
    raise BadMessage(NOT_FINITE)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadMessage(NOT_FINITE)
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise BadMessage(f"Message has a number with more than {MAX_INTEGER_DIGITS} digits.")
    return int(text)


def require_content(request: dict[str, Any]) -> Any:
    content = request.get("content")
    if content is None:
        raise BadMessage('Message has no "content" (it is missing or null).')
    if nesting_depth(content, MAX_CONTENT_DEPTH) > MAX_CONTENT_DEPTH:
        raise BadMessage(TOO_DEEP)
    return content


def nesting_depth(value: Any, stop_above: int) -> int:
    """Levels of arrays and objects in a parsed JSON value, counted without recursion (a value
    can be nearly as deep as the parser allows); stops early once past `stop_above`."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > stop_above:
            break
        pending.extend((child, depth + 1) for child in children)
    return deepest


def require_user_id(value: Any, field: str) -> str:
    user_id = checked_user_id(value)
    if user_id is None:
        raise BadMessage(f'"{field}" must be a user id: {USER_ID_RULE}.')
    return user_id


def parse_limit(value: Any) -> int:
    if value is None:
        return DEFAULT_HISTORY_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HISTORY_LIMIT:
        raise BadMessage(f'"limit" must be a whole number from 1 to {MAX_HISTORY_LIMIT}.')
    return value


def parse_seq_cursor(value: Any, field: str, minimum: int) -> int | None:
    """`before` or `after`: a message's seq (a whole number), as an earlier reply gave it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadMessage(f'"{field}" must be a whole number >= {minimum}: the "{field}" of an earlier history reply, or a seq you have.')
    return value


def parse_channel(value: Any, required: bool = False) -> str | None:
    """A channel name, or None when the request names none (and need not)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not CHANNEL_NAME.fullmatch(value):
        raise BadMessage(f'"channel" must be a channel name: {CHANNEL_RULE}.')
    return value


def parse_client_message_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not CLIENT_MESSAGE_ID.fullmatch(value):
        raise BadMessage('"clientMessageId" must be 1 to 64 characters: ASCII letters, digits, "-", "_" (a UUID fits).')
    return value
