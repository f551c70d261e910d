"""What a user id may be: the token's `sub`, and the `to` and `with` of requests."""

from __future__ import annotations

import unicodedata
from typing import Any

MAX_USER_ID_LENGTH = 128
# Letters and symbols to Unicode that show nothing: the Hangul fillers and the blank Braille
# pattern. Separators (Z*) and control, format, private-use, unassigned characters (C*) are
# refused by category.
INVISIBLE_CHARACTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")
USER_ID_RULE = f'1 to {MAX_USER_ID_LENGTH} visible characters, no spaces, no invisible characters, no "#"'


def normalize_user_id(value: Any) -> str | None:
    """The id in NFC, so the two spellings of "가" (one code point, or two jamo) are one user;
    None if it is not a valid user id."""
    if not isinstance(value, str):
        return None
    user_id = unicodedata.normalize("NFC", value)
    return user_id if is_valid_user_id(user_id) else None


def is_valid_user_id(value: Any) -> bool:
    """An id as stored: NFC, 1-128 characters that all show, no "#" (ids are part of DynamoDB
    keys: "dm#alice#bob"). Lookalikes made of blanks or invisible characters cannot exist."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_USER_ID_LENGTH
        and "#" not in value
        and unicodedata.is_normalized("NFC", value)
        and not unicodedata.category(value[0]).startswith("M")  # no bare combining mark first
        and all(_is_visible(character) for character in value)
    )


def _is_visible(character: str) -> bool:
    return unicodedata.category(character)[0] not in "ZC" and character not in INVISIBLE_CHARACTERS
