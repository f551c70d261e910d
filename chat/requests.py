"""What clients send: a frame parsed into a request, and every field checked before anything
is stored or sent. A refusal (chat/errors.py) carries the reason the client is shown."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from chat.errors import Refusal
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
# A client's own id for a request, carried back in the reply that answers it (Phoenix's `ref`),
# so that replies can be matched to requests with several in flight.
REF = re.compile(r"[A-Za-z0-9_-]{1,64}")
REF_RULE = '1 to 64 characters: ASCII letters, digits, "-", "_"'
# The largest seq a cursor may name: far beyond what any conversation reaches (a million messages
# a day for 2,700 years), and far inside DynamoDB's 38 digits, so a cursor never fails to serialize.
MAX_SEQ = 10**15

SEND_MESSAGE_EXAMPLE = '{"action": "sendMessage", "content": "..."}'
DIRECT_MESSAGE_EXAMPLE = '{"action": "sendDirectMessage", "to": "<user id>", "content": "..."}'
HISTORY_EXAMPLE = '{"action": "getRecentMessages", "with": "<user id>", "limit": 20}'
JOIN_EXAMPLE = '{"action": "join", "channel": "<name>"}'
LEAVE_EXAMPLE = '{"action": "leave", "channel": "<name>"}'
PRESENCE_EXAMPLE = '{"action": "getPresence", "channel": "<name>"}'
RENEW_EXAMPLE = '{"action": "renewToken", "token": "<JWT>"}'
CONVERSATIONS_EXAMPLE = '{"action": "getConversations", "limit": 20}'

TOO_DEEP = f'Message is nested too deeply: "content" may have at most {MAX_CONTENT_DEPTH} levels of arrays and objects.'
NOT_FINITE = "Message has a number that is not finite (NaN, Infinity, or too large for a double such as 1e400)."


def is_heartbeat(body: Any) -> bool:
    """{"action": "heartbeat"} (with any other fields: API Gateway routes on `action` alone): on
    AWS a MOCK route answers it with nothing; offline it reaches $default."""
    document = _lenient_json(body)
    return isinstance(document, dict) and document.get("action") == "heartbeat"


def read_ref(body: Any) -> str | Refusal | None:
    """The frame's `ref`, which its reply carries back: None when it has none (or is not a JSON
    object, so no ref can be read: it is answered in the plain form); a Refusal when it has one
    that breaks REF_RULE (the reply then carries "ref": null)."""
    document = _lenient_json(body)
    if not isinstance(document, dict) or document.get("ref") is None:
        return None
    ref = document["ref"]
    if not isinstance(ref, str) or not REF.fullmatch(ref):
        return Refusal("bad_request", f'"ref" must be {REF_RULE}.')
    return ref


def _lenient_json(body: Any) -> Any:
    """The frame as JSON without looking at its numbers (parse_request checks those): None if
    it is not JSON at all, or too deep for Python's parser."""
    if not isinstance(body, str):
        return None
    try:
        return json.loads(body, parse_int=_ignored, parse_float=_ignored, parse_constant=_ignored)
    except (ValueError, RecursionError):  # any frame at all reaches $default, however deep
        return None


def _ignored(text: str) -> int:
    return 0


def parse_request(body: str | None, example: str) -> dict[str, Any]:
    """The frame as a JSON object, or a refusal that shows the sender an example."""
    if not isinstance(body, str) or not body.strip():
        raise Refusal("bad_request", f"Message body is empty: send {example}.")
    try:
        request = json.loads(body, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int)
    except Refusal:
        raise
    except RecursionError:
        raise Refusal("bad_request", TOO_DEEP) from None
    except ValueError:
        raise Refusal("bad_request", "Message body is not valid JSON.") from None
    if not isinstance(request, dict):
        raise Refusal("bad_request", f"Message body must be a JSON object like {example}.")
    return request


def _refuse_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity, which are not JSON: json.dumps would write them back
    # bare, and a browser's JSON.parse fails on the broadcast and on every history page after.
    raise Refusal("bad_request", NOT_FINITE)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Refusal("bad_request", NOT_FINITE)
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise Refusal("bad_request", f"Message has a number with more than {MAX_INTEGER_DIGITS} digits.")
    return int(text)


def require_content(request: dict[str, Any]) -> Any:
    content = request.get("content")
    if content is None:
        raise Refusal("bad_request", 'Message has no "content" (it is missing or null).')
    if nesting_depth(content, MAX_CONTENT_DEPTH) > MAX_CONTENT_DEPTH:
        raise Refusal("bad_request", TOO_DEEP)
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
        raise Refusal("bad_request", f'"{field}" must be a user id: {USER_ID_RULE}.')
    return user_id


def parse_limit(value: Any) -> int:
    if value is None:
        return DEFAULT_HISTORY_LIMIT
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_HISTORY_LIMIT:
        raise Refusal("bad_request", f'"limit" must be a whole number from 1 to {MAX_HISTORY_LIMIT}.')
    return value


def parse_seq_cursor(value: Any, field: str, minimum: int) -> int | None:
    """`before` or `after`: a message's seq (a whole number), as an earlier reply gave it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise Refusal(
            "bad_request",
            f'"{field}" must be a whole number >= {minimum}: '
            f'the "{field}" of an earlier history reply, or a seq you have.',
        )
    if value > MAX_SEQ + minimum:
        raise Refusal(
            "bad_request", f'"{field}" is beyond any seq a conversation can reach (at most {MAX_SEQ + minimum}).'
        )
    return value


def parse_user_cursor(value: Any) -> str | None:
    """getPresence's `after`: the user id an earlier reply ended with."""
    if value is None:
        return None
    user_id = checked_user_id(value)
    if user_id is None:
        raise Refusal("bad_request", '"after" must be the "after" of an earlier getPresence reply (a user id).')
    return user_id


def parse_channel(value: Any) -> str | None:
    """A channel name, or None when the request names none (and need not)."""
    return None if value is None else require_channel(value)


def require_channel(value: Any) -> str:
    """A channel name the request must give."""
    if not isinstance(value, str) or not CHANNEL_NAME.fullmatch(value):
        raise Refusal("bad_request", f'"channel" must be a channel name: {CHANNEL_RULE}.')
    return value


def parse_client_message_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not CLIENT_MESSAGE_ID.fullmatch(value):
        raise Refusal(
            "bad_request",
            '"clientMessageId" must be 1 to 64 characters: ASCII letters, digits, "-", "_" (a UUID fits).',
        )
    return value


MAX_REASON_CHARACTERS = 500


def parse_reason(value: Any) -> str | None:
    """A moderator's or sender's `reason` (a delete, a ban): optional text of 1 to 500 characters."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_REASON_CHARACTERS:
        raise Refusal("bad_request", f'"reason" must be text of 1 to {MAX_REASON_CHARACTERS} characters.')
    return value
