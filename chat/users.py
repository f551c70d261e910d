"""What a user id may be: the token's `sub`, and the `to` and `with` of requests.

The rules are the standards', not a list of our own: an id must already be in the form RFC
8265's PRECIS profile `UsernameCasePreserved` gives it (so nothing is ever mapped onto another
user: a fullwidth `ａｌｉｃｅ` is refused, not turned into `alice`), and it may not mix scripts
in a confusable way (Unicode UTS #39 mixed-script detection: a Cyrillic `а` in `аlice`).
"""

from __future__ import annotations

import unicodedata
from typing import Any

from confusable_homoglyphs import categories, confusables
from precis_i18n import get_profile

MAX_USER_ID_LENGTH = 128
USER_ID_RULE = (
    f"1 to {MAX_USER_ID_LENGTH} characters, already in the form of an RFC 8265 username (no spaces, "
    'no fullwidth or invisible characters, NFC), not mixing lookalike scripts (Unicode UTS #39), no "#"'
)
# RFC 8265 section 3.3: width mapping, NFC, the IdentifierClass of RFC 8264 (letters and digits,
# printable ASCII; no spaces, symbols, controls, default-ignorable or old Hangul jamo), the bidi
# rule. Case is preserved: `Alice` and `alice` are two users, as their tokens say.
_USERNAME = get_profile("UsernameCasePreserved")
# UTS #39 section 5.1: Han, Hiragana and Katakana are one writing system (Jpan), Han and Hangul
# another (Kore), Han and Bopomofo a third (Hanb): a Japanese name of kanji and kana does not
# "mix scripts". confusable-homoglyphs knows each character's script, not these sets.
_AUGMENTED_SCRIPTS = {
    "HAN": frozenset({"HAN", "JPAN", "KORE", "HANB"}),
    "HIRAGANA": frozenset({"HIRAGANA", "JPAN"}),
    "KATAKANA": frozenset({"KATAKANA", "JPAN"}),
    "HANGUL": frozenset({"HANGUL", "KORE"}),
    "BOPOMOFO": frozenset({"BOPOMOFO", "HANB"}),
}
# Characters of every script (digits, `_`, `.`, the prolonged sound mark `ー`, combining marks).
_ANY_SCRIPT = frozenset({"COMMON", "INHERITED"})


def checked_user_id(value: Any) -> str | None:
    """The id itself if it is a valid user id, else None. Nothing is mapped: an id in any
    other spelling than its canonical one is refused."""
    return value if is_valid_user_id(value) else None


# The name the callers know; it no longer maps anything (RFC 8265: a sub that enforcement would
# change is refused, never silently turned into another user's id).
normalize_user_id = checked_user_id


def is_valid_user_id(value: Any) -> bool:
    """An id as stored and compared: 1-128 characters, no "#" (ids are part of DynamoDB keys:
    "dm#alice#bob"), no combining mark first (RFC 5891 section 4.2.3.2 forbids it for the same
    reason: it would attach to what precedes the id), stable under RFC 8265's
    UsernameCasePreserved, and not a confusable mix of scripts (UTS #39)."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_USER_ID_LENGTH
        and "#" not in value
        and not unicodedata.category(value[0]).startswith("M")
        and canonical_form(value) == value
        and not mixes_confusable_scripts(value)
    )


def canonical_form(value: str) -> str | None:
    """What RFC 8265's UsernameCasePreserved makes of the text, or None if it disallows it."""
    try:
        return _USERNAME.enforce(value)
    except UnicodeError:  # precis-i18n raises UnicodeEncodeError with the rule that failed
        return None


def mixes_confusable_scripts(value: str) -> bool:
    """UTS #39 mixed-script detection: the characters' augmented script sets have nothing in
    common (Common and Inherited go with any script), and one of them is confusable with a
    character of another script (confusable-homoglyphs, from Unicode's confusables.txt)."""
    resolved: frozenset[str] | None = None
    for character in value:
        script = categories.alias(character)
        if script in _ANY_SCRIPT:
            continue
        augmented = _AUGMENTED_SCRIPTS.get(script, frozenset({script}))
        resolved = augmented if resolved is None else resolved & augmented
    return resolved is not None and not resolved and bool(confusables.is_dangerous(value))
