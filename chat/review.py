"""The review hook (issue 29, docs/moderation.md): with `--param reviewFunction`, every message a
client or the app's backend sends, and every edit, is given to that Lambda function before it
takes a seq. The function allows it, allows it with other content, or denies it with a reason:
the sender is refused with `denied` and nothing is stored, no seq used.

The function is called synchronously with REVIEW_TIMEOUT_MS for the whole call and no retry
(Amazon IVS Chat's message review handler works the same way: a deadline, then a fallback). A
timeout, a failed call, a function error or an answer that means nothing applies
REVIEW_FALLBACK (`allow` or `deny`) and counts ReviewFallbacks, which has an alarm.

What the function gets (one JSON object), the conversation named as clients name it
(`"room": true`, `"channel": "lobby"`, or `"with"`: the other user of a DM):
    {"channel": "lobby", "sender": "alice", "content": ..., "kind": "message" | "edit",
     "source": "client" | "publish"}
What it answers:
    {"result": "allow"}  |  {"result": "allow", "content": ...}  |  {"result": "deny", "reason": "..."}
"""

from __future__ import annotations

import json
import os
import time
from functools import cache
from typing import Any

from botocore.config import Config

from chat import aws, frames
from chat.errors import Refusal
from chat.requests import parse_request, require_content
from chat.telemetry import count, logger, milliseconds

REVIEW_FUNCTION = os.environ.get("REVIEW_FUNCTION", "")
REVIEW_TIMEOUT_MS = int(os.environ.get("REVIEW_TIMEOUT_MS") or 1000)
REVIEW_FALLBACK = os.environ.get("REVIEW_FALLBACK") or "allow"
# A reason longer than this is cut: it is shown to the sender in one line.
MAX_REASON_CHARS = 200
FALLBACK_DENIED = (
    "The message could not be reviewed just now, and unreviewed messages are not sent: nothing was stored."
)


class BadAnswer(Exception):
    """The review function answered something that is neither allow nor deny."""


def review(message: dict[str, Any], conversation: str, named: dict[str, Any], kind: str, source: str) -> Any:
    """The content to store: the message's, or the function's replacement (checked as a
    client's content is, and to fit once stored). Refusal `denied` if the function (or the
    fallback) denies it. Without a review function, the message's content unchanged."""
    content = message["content"]
    if not REVIEW_FUNCTION:
        return content
    request = {
        **named,
        "sender": message.get("sender"),
        "content": content,
        "kind": kind,
        "source": source,
    }
    started = time.perf_counter()
    try:
        result, replacement, reason = _read(_invoke(request), message)
    except (BadAnswer, *aws.AWS_ERRORS) as error:
        count("ReviewFallbacks")
        logger.warning("Review of a %s in %s failed (%s); fallback %s", kind, conversation, error, REVIEW_FALLBACK)
        if REVIEW_FALLBACK == "deny":
            raise Refusal("denied", FALLBACK_DENIED) from None
        return content
    finally:
        milliseconds("ReviewDuration", (time.perf_counter() - started) * 1000)
    if result == "deny":
        count("ReviewDenied")
        raise Refusal("denied", f"Not sent: {reason}")
    if replacement is not _NONE:
        count("ReviewReplaced")
        return replacement
    return content


_NONE = object()


def _invoke(request: dict[str, Any]) -> str:
    """The function's answer as text; BadAnswer if the function itself failed."""
    response = aws.client("lambda", _config(REVIEW_TIMEOUT_MS)).invoke(
        FunctionName=REVIEW_FUNCTION, Payload=json.dumps(request, ensure_ascii=False).encode("utf-8")
    )
    payload: str = response["Payload"].read().decode("utf-8", "replace")
    if response.get("FunctionError"):
        raise BadAnswer(f"the function failed: {payload[:200]}")
    return payload


def _read(answer: str, message: dict[str, Any]) -> tuple[str, Any, str]:
    """(result, replacement content or _NONE, reason) from the function's answer."""
    try:
        document = parse_request(answer, '{"result": "allow"}')
    except Refusal as refusal:
        raise BadAnswer(f"its answer is not a JSON object: {refusal.text}") from None
    result = document.get("result")
    if result == "deny":
        reason = document.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise BadAnswer("a deny without a reason")
        return "deny", _NONE, " ".join(reason.split())[:MAX_REASON_CHARS]
    if result != "allow":
        raise BadAnswer(f"result {result!r} is neither allow nor deny")
    if "content" not in document:
        return "allow", _NONE, ""
    try:
        replacement = require_content(document)
        frames.check_size({**message, "content": replacement})
    except Refusal as refusal:
        raise BadAnswer(f"its replacement content is refused: {refusal.text}") from None
    return "allow", replacement, ""


@cache
def _config(timeout_ms: int) -> Config:
    """The call within the timeout, once: a slow function is the fallback's case, not a retry's
    (a retry would double every sender's wait). One Config per timeout, so one client."""
    seconds = timeout_ms / 1000
    return Config(connect_timeout=seconds, read_timeout=seconds, retries={"mode": "standard", "total_max_attempts": 1})
