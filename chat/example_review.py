"""An example review function (docs/moderation.md, "The review hook"): a word list. Deployed with
`--param reviewFunction=example` and wired locally by `make offline REVIEW=example`; a team
replaces it with its own function (a classifier, a call to a moderation service) that answers
the same way (chat/review.py says what it gets and answers).

- A message with a word from REVIEW_DENY_WORDS is denied, with the reason naming the list.
- A word from REVIEW_MASK_WORDS is replaced by asterisks (allowed with new content).
- Anything else is allowed as it is.

Words are matched whole and ignoring case, in text content and in every string of JSON content;
denied words in compatibility forms too (NFKC: a fullwidth "ｓｐａｍ" is "spam").
"""

from __future__ import annotations

import os
import re
import unicodedata
from typing import Any

DENY_WORDS = [w for w in os.environ.get("REVIEW_DENY_WORDS", "spam,scam").split(",") if w.strip()]
MASK_WORDS = [w for w in os.environ.get("REVIEW_MASK_WORDS", "darn,heck").split(",") if w.strip()]
REASON = "it contains a word this service does not allow"


def decide(request: dict[str, Any]) -> dict[str, Any]:
    """The answer to one review request: allow, allow with masked content, or deny."""
    content = request.get("content")
    if any(_pattern(DENY_WORDS).search(_normal(text)) for text in _strings(content)):
        return {"result": "deny", "reason": REASON}
    masked = _mask(content)
    return {"result": "allow", "content": masked} if masked != content else {"result": "allow"}


def _pattern(words: list[str]) -> re.Pattern[str]:
    if not words:
        return re.compile(r"(?!)")  # matches nothing
    return re.compile(r"\b(" + "|".join(re.escape(_normal(word.strip())) for word in words) + r")\b", re.IGNORECASE)


def _normal(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def _mask(value: Any) -> Any:
    """The value with every masked word replaced by as many asterisks, the rest as it was
    (matched ignoring case; a masked word in compatibility forms is left: denying is for that)."""
    if isinstance(value, str):
        return _pattern(MASK_WORDS).sub(lambda match: "*" * len(match.group(0)), value)
    if isinstance(value, dict):
        return {key: _mask(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask(item) for item in value]
    return value
