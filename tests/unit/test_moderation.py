"""Bans (issue 29): a moderator of a channel keeps a user out of it (her connections taken out at
once, told why; her joins, sends, edits and history reads there refused with `banned`), a
moderator of "*" out of the whole service (every connection told and closed, $connect refused);
bans end by themselves or by unban; nobody else can ban."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat import moderation
from tests.support.actions import send
from tests.support.events import action_body, connect_event

CHANNEL = "general"


@pytest.fixture
def room(connect: Any, handler: Any) -> Any:
    """mallory on three connections and alice on one, all in the channel and in "other"."""
    for connection_id, user in (("m-1", "mallory"), ("m-2", "mallory"), ("m-3", "mallory"), ("a-1", "alice")):
        connect(connection_id, user=user)
        for channel in (CHANNEL, "other"):
            assert send(handler, "join", connection_id, user, channel=channel)["statusCode"] == 200
    return handler


def act(handler: Any, route: str, connection_id: str, sender: str | None, **fields: Any) -> tuple[int, Any]:
    """A frame with a `ref` from `sender`: the reply's status, and its body or its error."""
    moderates = fields.pop("moderates", None)
    body = action_body(route, ref="r1", **fields)  # a ban's "user" is the frame's, not the sender
    raw = send(handler, route, connection_id, sender, moderates=moderates, body=body)
    reply = json.loads(raw["body"])["reply"]
    return reply["status"], reply.get("body", {"error": reply.get("error")})


def code(result: tuple[int, Any]) -> str:
    status, body = result
    return str(body["error"]["code"]) if "error" in body else f"{status} ok"


def ban(handler: Any, moderates: Any = (CHANNEL,), **fields: Any) -> tuple[int, Any]:
    return act(handler, "ban", "mod-1", "mod", moderates=list(moderates), user="mallory", **fields)


def test_a_channel_ban_takes_her_out_at_once_and_keeps_her_out_there_only(room: Any, management: Any) -> None:
    status, body = ban(room, channel=CHANNEL, reason="spam")

    assert status == 200 and body == {"ban": {"user": "mallory", "channel": CHANNEL, "until": None, "removed": 3}}
    for connection_id in ("m-1", "m-2", "m-3"):
        assert {"left": {"channel": CHANNEL, "reason": "banned"}} in management.received(connection_id)
    assert code(act(room, "join", "m-1", "mallory", channel=CHANNEL)) == "banned"
    assert code(act(room, "sendMessage", "m-1", "mallory", channel=CHANNEL, content="x")) == "banned"
    assert code(act(room, "getRecentMessages", "m-1", "mallory", channel=CHANNEL)) == "banned"
    status, refused = act(room, "join", "m-1", "mallory", channel=CHANNEL)
    assert (status, refused["error"]["text"]) == (403, f'You are banned from channel "{CHANNEL}" until a moderator lifts it: spam')
    # elsewhere, and everyone else, as before
    assert code(act(room, "sendMessage", "m-1", "mallory", channel="other", content="still here")) == "200 ok"
    assert code(act(room, "sendMessage", "a-1", "alice", channel=CHANNEL, content="hi")) == "200 ok"
    assert "hi" not in json.dumps(management.received("m-2"))  # no longer a member: nothing from there


def test_an_unban_lets_her_back_at_once(room: Any) -> None:
    ban(room, channel=CHANNEL)
    assert act(room, "unban", "mod-1", "mod", moderates=[CHANNEL], user="mallory", channel=CHANNEL) == (
        200, {"unban": {"user": "mallory", "channel": CHANNEL}})

    assert code(act(room, "join", "m-1", "mallory", channel=CHANNEL)) == "200 ok"


def test_a_ban_for_seconds_ends_by_itself(room: Any, clock: list[float]) -> None:
    status, body = ban(room, channel=CHANNEL, seconds=60)
    assert status == 200 and body["ban"]["until"] is not None
    assert code(act(room, "join", "m-1", "mallory", channel=CHANNEL)) == "banned"

    clock[0] += 61
    assert code(act(room, "join", "m-1", "mallory", channel=CHANNEL)) == "200 ok"


def test_a_service_wide_ban_tells_and_closes_every_connection_and_refuses_her_connect(room: Any, management: Any) -> None:
    status, body = ban(room, moderates=["*"], reason="abuse", seconds=3600)

    assert status == 200 and body["ban"]["channel"] is None and body["ban"]["removed"] == 3
    for connection_id in ("m-1", "m-2", "m-3"):
        (told,) = [f for f in management.received(connection_id) if "banned" in f]
        assert told["banned"]["reason"] == "abuse" and told["banned"]["until"] == body["ban"]["until"]
    assert sorted(management.closed) == ["m-1", "m-2", "m-3"]  # alice's stays open
    refused = room.connection_manager(connect_event("m-4", "mallory"), None)
    assert refused["statusCode"] == 403
    assert room.connection_manager(connect_event("a-2", "alice"), None)["statusCode"] == 200

    act(room, "unban", "mod-1", "mod", moderates=["*"], user="mallory")
    assert room.connection_manager(connect_event("m-5", "mallory"), None)["statusCode"] == 200


@pytest.mark.parametrize(
    "moderates, fields",
    [
        ([], {"channel": CHANNEL}),
        (None, {"channel": CHANNEL}),
        (["other"], {"channel": CHANNEL}),
        (["gen"], {"channel": CHANNEL}),
        ([CHANNEL], {}),  # the whole service needs "*"
        (["gen*"], {}),
    ],
)
def test_only_a_moderator_of_that_place_bans(room: Any, moderates: Any, fields: dict[str, Any]) -> None:
    result = act(room, "ban", "mod-1", "mod", moderates=moderates, user="mallory", **fields)

    assert code(result) == "forbidden"
    assert code(act(room, "sendMessage", "m-1", "mallory", channel=CHANNEL, content="not banned")) == "200 ok"


@pytest.mark.parametrize(
    "fields",
    [{"seconds": 0}, {"seconds": -5}, {"seconds": True}, {"seconds": 1.5}, {"seconds": moderation.MAX_BAN_SECONDS + 1},
     {"seconds": "60"}, {"reason": ""}, {"reason": "r" * 501}, {"user": ""}, {"user": None}, {"channel": "no spaces"}],
)
def test_a_ban_that_cannot_mean_anything_is_refused_and_stores_nothing(room: Any, fields: dict[str, Any]) -> None:
    result = act(room, "ban", "mod-1", "mod", moderates=["*"], **{"user": "mallory", "channel": CHANNEL, **fields})

    assert code(result) == "bad_request"
    assert code(act(room, "join", "m-1", "mallory", channel=CHANNEL)) == "200 ok"


def test_a_moderator_cannot_ban_themselves_and_an_anonymous_connection_bans_nobody(room: Any, connect: Any) -> None:
    assert code(act(room, "ban", "mod-1", "mod", moderates=["*"], user="mod")) == "bad_request"
    assert code(act(room, "ban", "anon-1", None, user="mallory", channel=CHANNEL)) == "forbidden"


def test_a_join_that_races_a_channel_ban_takes_itself_back(room: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The join checked (no ban yet), the moderator banned and found no membership to take out,
    then the join wrote its membership: it reads the ban after its write, and leaves."""
    from chat import members

    act(room, "leave", "m-1", "mallory", channel=CHANNEL)
    real = members.join

    def ban_meanwhile(*args: Any, **kwargs: Any) -> Any:
        ban(room, channel=CHANNEL)
        return real(*args, **kwargs)

    monkeypatch.setattr(members, "join", ban_meanwhile)
    assert code(act(room, "join", "m-1", "mallory", channel=CHANNEL)) == "banned"
    monkeypatch.setattr(members, "join", real)

    assert not members.is_member(CHANNEL, "m-1", "mallory")


def test_leaving_a_channel_one_is_banned_from_is_allowed(room: Any) -> None:
    ban(room, channel=CHANNEL)

    assert code(act(room, "leave", "m-1", "mallory", channel=CHANNEL)) == "200 ok"


def test_a_connect_whose_ban_check_fails_leaves_no_row(room: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.exceptions import EndpointConnectionError

    from chat import bans, connections

    def down(*args: Any, **kwargs: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://dynamodb")

    monkeypatch.setattr(bans, "active", down)
    assert room.connection_manager(connect_event("a-9", "alice"), None)["statusCode"] == 500

    assert connections.row("a-9") is None
