"""Typing (issue 30): a channel's members (not the typist, not others) or a DM's other user get
`typing`; one per 2 s per user and conversation is forwarded, the rest accepted and dropped;
typing frames have a budget of their own and never spend the message budget; members only;
none above 100 users online."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import channels, ratelimit
from tests.support.actions import send

CHANNEL = "general"


def ask(handler: Any, route: str, cid: str, user: str | None, **fields: Any) -> tuple[int, Any]:
    reply = json.loads(send(handler, route, cid, user, ref="r", **fields)["body"])["reply"]
    return reply["status"], reply.get("body", reply.get("error"))


def typed(management: Any, cid: str) -> list[Any]:
    return [frame["typing"] for frame in management.received(cid) if isinstance(frame, dict) and "typing" in frame]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rate limiter's clock, in ms, moved by the test."""
    now = [1_800_000_000_000]
    monkeypatch.setattr(ratelimit, "_now_ms", lambda: now[0])
    return now


@pytest.fixture
def chat(connect: Any, handler: Any, management: Any) -> Any:
    """alice (two connections) and bob in the channel; carol connected, not in it."""
    for cid, user in (("alice-1", "alice"), ("alice-2", "alice"), ("bob-1", "bob"), ("carol-1", "carol")):
        connect(cid, user=user)
        if user != "carol":
            assert ask(handler, "join", cid, user, channel=CHANNEL)[0] == 200
    return handler


def test_typing_reaches_the_channels_other_members_once_per_two_seconds(chat: Any, management: Any, clock: list[int]) -> None:
    assert ask(chat, "typing", "alice-1", "alice", channel=CHANNEL) == (200, {"typing": {"channel": CHANNEL, "forwarded": True}})
    assert typed(management, "bob-1") == [{"channel": CHANNEL, "user": "alice"}]
    assert typed(management, "alice-2") == [{"channel": CHANNEL, "user": "alice"}]  # her other tab is a member too
    assert typed(management, "alice-1") == [] and typed(management, "carol-1") == []

    clock[0] += 1500
    assert ask(chat, "typing", "alice-2", "alice", channel=CHANNEL)[1]["typing"]["forwarded"] is False  # dropped, no error
    assert len(typed(management, "bob-1")) == 1
    clock[0] += 600
    assert ask(chat, "typing", "alice-1", "alice", channel=CHANNEL)[1]["typing"]["forwarded"] is True
    assert len(typed(management, "bob-1")) == 2
    assert ask(chat, "typing", "bob-1", "bob", channel=CHANNEL)[1]["typing"]["forwarded"] is True  # his own 2 s


def test_typing_in_a_dm_reaches_the_other_user_only(chat: Any, management: Any, clock: list[int]) -> None:
    assert ask(chat, "typing", "bob-1", "bob", **{"with": "carol"})[0] == 200
    assert typed(management, "carol-1") == [{"with": "bob", "user": "bob"}]
    assert typed(management, "alice-1") == [] and typed(management, "bob-1") == []


def test_a_typing_post_that_failed_is_not_tried_again_later(chat: Any, management: Any, clock: list[int], workers: Any) -> None:
    """A small room's failed posts go to the workers 10 s later (chat/dispatch.py); typing shown
    10 s late would say someone types who stopped: it is dropped instead."""
    management.answer("bob-1", 500, "InternalServerError", times=1)
    assert ask(chat, "typing", "alice-1", "alice", channel=CHANNEL)[0] == 200
    assert [job for job in workers.pending_jobs() if job.message_id.startswith("typing-")] == []  # presence's are there
    assert typed(management, "alice-2") == [{"channel": CHANNEL, "user": "alice"}]


def test_typing_is_for_members_and_signed_in_users_only(chat: Any, connect: Any, clock: list[int]) -> None:
    status, error = ask(chat, "typing", "carol-1", "carol", channel=CHANNEL)
    assert (status, error["code"]) == (403, "not_member")
    connect("anon-1")
    assert ask(chat, "typing", "anon-1", None, channel=CHANNEL)[1]["code"] == "forbidden"
    assert ask(chat, "typing", "bob-1", "bob")[1]["code"] == "bad_request"  # where?


def test_typing_never_spends_the_message_budget_and_has_its_own(chat: Any, management: Any, clock: list[int]) -> None:
    answers = [ask(chat, "typing", "alice-1", "alice", channel=CHANNEL)[0] for _ in range(ratelimit.TYPING_BURST + 3)]
    assert answers == [200] * ratelimit.TYPING_BURST + [429] * 3
    _, burst = ratelimit.budget("alice")
    sent = [ask(chat, "sendMessage", "alice-1", "alice", channel=CHANNEL, content=f"m{n}")[0] for n in range(burst)]
    assert sent == [200] * burst  # the whole message burst is still hers


def test_no_typing_above_the_presence_events_cap(chat: Any, management: Any, clock: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channels, "PRESENCE_EVENTS_MAX_USERS", 1)  # two users online here
    assert ask(chat, "typing", "alice-1", "alice", channel=CHANNEL)[1]["typing"]["forwarded"] is False
    assert typed(management, "bob-1") == []


def test_members_typing_continuously_cost_one_post_each_per_two_seconds(
    connect: Any, handler: Any, management: Any, clock: list[int], monkeypatch: pytest.MonkeyPatch, workers: Any
) -> None:
    """12 members (past fanoutThreshold: through the workers) typing a frame every 0.5 s for 4 s:
    each typist's 2 forwarded frames reach the 11 others, whatever they send. bench/typing_posts.py runs
    issue 30's 50 members for 10 s (12,250 posts, the bound 12,500)."""
    monkeypatch.setattr(ratelimit, "TYPING_RATE_PER_SECOND", 0)  # the frames' budget is another test's
    users = [f"u{n:02d}" for n in range(12)]
    for user in users:
        connect(f"{user}-1", user=user)
        assert ask(handler, "join", f"{user}-1", user, channel=CHANNEL)[0] == 200
    for _ in range(8):  # 4 s in steps of 0.5 s
        for user in users:
            send(handler, "typing", f"{user}-1", user, channel=CHANNEL)
        clock[0] += 500
    workers.drain()
    assert sum(len(typed(management, f"{user}-1")) for user in users) == 12 * 11 * 2
