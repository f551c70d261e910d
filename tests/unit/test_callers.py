"""Who sent a frame (chat/callers.py): what API Gateway passes on from the authorizer is read
defensively, so a context the authorizer never wrote (an id it would refuse, a claim that is
not a list, an expiry that is not a number) grants nothing and crashes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from chat import callers


def frame_event(**authorizer: Any) -> dict[str, Any]:
    return {"requestContext": {"connectionId": "c1", "authorizer": authorizer}}


def test_a_valid_context_is_read_as_the_authorizer_wrote_it() -> None:
    caller = callers.caller(frame_event(userId="alice", exp=1_800_000_000, channels='["team-*","lobby"]'))

    assert (caller.connection_id, caller.user, caller.channels, caller.token_expires_at) == (
        "c1", "alice", ("team-*", "lobby"), 1_800_000_000)


@pytest.mark.parametrize("user", ["", "evil#dm", "аlice", 7], ids=["empty", "separator", "cyrillic-a", "number"])
def test_a_user_id_the_authorizer_would_refuse_is_anonymous(user: Any) -> None:
    assert callers.caller(frame_event(userId=user)).user is None


@pytest.mark.parametrize("claim", ['"lobby"', '{"lobby": 1}', "7", "not json"], ids=["string", "object", "number", "garbage"])
def test_a_channels_claim_that_is_not_a_list_allows_no_channel(claim: str) -> None:
    # A string is iterable: read as a list it would allow the one-letter channels "l", "o", "b"...
    assert callers.caller(frame_event(userId="alice", channels=claim)).channels == ()


@pytest.mark.parametrize("exp", ["soon", "", "1.5e9", None], ids=["word", "empty", "float-text", "none"])
def test_an_expiry_that_is_not_whole_seconds_is_unknown_not_a_crash(exp: Any) -> None:
    assert callers.caller(frame_event(userId="alice", exp=exp)).token_expires_at is None
