"""Connections that end when their token does: after `exp` any frame is refused with the reason
and the connection closed (DeleteConnection) and cleaned up; renewToken with a later token for
the same user extends it, any other token changes nothing; the sweeper closes silent ones and
sends the notice once, 30 to 90 s before."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from chat import connections, frames, sweeper
from tests.support.actions import renew, send
from tests.support.events import (
    MANAGEMENT_ENDPOINT,
    action_body,
    connect_event,
    exp_of,
    message_event,
    token,
)

EXPIRED = "Your token has expired: renew it or reconnect."
# What renewToken answers a token it will not take (docs/protocol.md), word for word.
NOT_VALID = "The token is not valid (malformed, wrongly signed or expired): nothing was renewed."
ANOTHER_USER = "The token is for another user: a connection keeps its user. Nothing was renewed."
OTHER_CHANNELS = "The token allows other channels than this connection's: reconnect to change them. Nothing was renewed."
NOT_LATER = "The token does not expire later than this connection's: nothing was renewed."
# The clock these tests stand still at and move: today, so that PyJWT (which reads the real
# clock) agrees with the service about which tokens are valid.
START = int(time.time()) // 60 * 60


@pytest.fixture
def now(frozen_clock: list[float]) -> list[float]:
    frozen_clock[0] = START + 1000.0
    return frozen_clock


def open_with_token(handler: Any, connection_id: str, user: str, expires_at: int) -> None:
    event = connect_event(connection_id, user, expires_at)
    event["requestContext"]["connectedAt"] = (START + 1000) * 1000  # the connection opened now
    assert handler.connection_manager(event, None)["statusCode"] == 200


def say(handler: Any, connection_id: str, user: str, expires_at: int, content: Any = "hi") -> dict[str, Any]:
    body = action_body("sendMessage", content=content)
    return handler.send_message(message_event(connection_id, body, "sendMessage", user, expires_at), None)


def test_the_row_remembers_when_the_token_expires(handler: Any, management: Any, table: Any, now: list[float]) -> None:
    open_with_token(handler, "c1", "alice", START + 3600)

    row = table.get_item(Key={"connection_id": "c1"})["Item"]
    assert row["expires_at"] == START + 3600
    assert row["due_bucket"] == connections.due_bucket(START + 3600 - connections.EXPIRY_NOTICE_SECONDS)


def test_after_exp_a_frame_is_refused_and_the_connection_closed_and_cleaned_up(
    handler: Any, management: Any, table: Any, messages: Any, now: list[float]
) -> None:
    expires = START + 1100
    open_with_token(handler, "c1", "alice", expires)
    assert say(handler, "c1", "alice", expires)["statusCode"] == 200
    now[0] = expires + 1

    response = say(handler, "c1", "alice", expires, "too late")

    assert response == {"statusCode": 401, "body": EXPIRED}
    assert management.closed == ["c1"]
    assert EXPIRED in management.received("c1")  # told before it was closed
    assert "Item" not in table.get_item(Key={"connection_id": "c1"})
    assert [json.loads(item["content_json"]) for item in messages.scan()["Items"]] == ["hi"]


def test_a_frame_at_the_exp_second_itself_is_refused(handler: Any, management: Any, now: list[float]) -> None:
    # RFC 7519 4.1.4: the token must not be accepted "on or after" exp.
    expires = START + 1100
    open_with_token(handler, "c1", "alice", expires)
    now[0] = expires - 0.001
    assert say(handler, "c1", "alice", expires)["statusCode"] == 200
    now[0] = expires

    assert say(handler, "c1", "alice", expires) == {"statusCode": 401, "body": EXPIRED}


def test_a_frame_at_a_renewed_tokens_exp_second_is_refused(
    handler: Any, management: Any, jwt_secret: str, now: list[float]
) -> None:
    first = START + 1100
    open_with_token(handler, "c1", "alice", first)
    later = token(jwt_secret, "alice", expires_in=3600)
    assert renew(handler, "c1", "alice", first, later)["statusCode"] == 200
    now[0] = exp_of(later) - 0.001
    assert say(handler, "c1", "alice", first)["statusCode"] == 200  # the context still says `first`
    now[0] = exp_of(later)

    assert say(handler, "c1", "alice", first) == {"statusCode": 401, "body": EXPIRED}


@pytest.mark.parametrize("route", ["getRecentMessages", "join", "leave", "getPresence", "sendDirectMessage", "renewToken"])
def test_every_action_after_exp_gets_the_same_answer(handler: Any, management: Any, now: list[float], route: str) -> None:
    expires = START + 1100
    open_with_token(handler, "c1", "alice", expires)
    now[0] = expires + 5
    response = send(handler, route, "c1", "alice", expires_at=expires, channel="x", to="bob", content="y")

    assert response == {"statusCode": 401, "body": EXPIRED}
    assert management.closed == ["c1"]


def test_a_renewed_connection_lives_past_its_first_exp(
    handler: Any, management: Any, table: Any, jwt_secret: str, now: list[float]
) -> None:
    first = START + 1100
    open_with_token(handler, "c1", "alice", first)
    later = token(jwt_secret, "alice", expires_in=3600)
    later_exp = exp_of(later)

    response = renew(handler, "c1", "alice", first, later)

    assert response["statusCode"] == 200
    assert json.loads(response["body"])["renewed"]["expiresAt"] == frames.iso(later_exp * 1000)
    assert table.get_item(Key={"connection_id": "c1"})["Item"]["expires_at"] == later_exp
    now[0] = first + 60  # past the token it connected with
    assert say(handler, "c1", "alice", first)["statusCode"] == 200  # the context still says `first`
    assert management.closed == []


@pytest.mark.parametrize(
    ("make_token", "reason"),
    [
        (lambda secret: token(secret, "mallory", expires_in=3600), ANOTHER_USER),
        (lambda secret: token(secret, "alice", expires_in=-3600), NOT_VALID),
        (lambda secret: token("not-the-secret-" + "z" * 50, "alice", expires_in=3600), NOT_VALID),
        (lambda secret: token(secret, "alice", expires_in=100), NOT_LATER),
        (lambda secret: token(secret, "alice", expires_in=3600, channels=["team-*"]), OTHER_CHANNELS),
        (lambda secret: "not.a.token", NOT_VALID),
        # exp past the year 9999 was stored, then crashed the reply (year 33658 is out of range)
        (lambda secret: token(secret, "alice", expires_in=None, exp=10**12), NOT_VALID),
        (lambda secret: token(secret, "alice", expires_in=367 * 86400), NOT_VALID),
        (lambda secret: token(secret, "alice", expires_in=None, exp=str(int(time.time()) + 3600)), NOT_VALID),
        (lambda secret: token(secret, "alice", expires_in=None, exp=True), NOT_VALID),
    ],
    ids=["another-sub", "expired", "bad-signature", "earlier-exp", "other-channels", "garbage", "year-33658",
         "beyond-a-year", "exp-as-text", "exp-true"],
)
def test_any_other_token_is_refused_and_changes_nothing(
    handler: Any, management: Any, table: Any, jwt_secret: str, now: list[float], make_token: Any, reason: str
) -> None:
    exp = int(now[0]) + 3000  # later than `earlier-exp`'s
    open_with_token(handler, "c1", "alice", exp)

    response = renew(handler, "c1", "alice", exp, make_token(jwt_secret))

    assert response == {"statusCode": 403, "body": reason}
    assert table.get_item(Key={"connection_id": "c1"})["Item"]["expires_at"] == exp


@pytest.mark.parametrize("renewed_claim", [["lobby", "team-*"], ["team-*", "lobby", "lobby"]], ids=["reordered", "repeated"])
def test_a_renewal_with_the_same_channels_in_another_order_or_repeated_is_taken(
    handler: Any, management: Any, table: Any, jwt_secret: str, now: list[float], renewed_claim: list[str]
) -> None:
    # The claim is a set of patterns: its order and repeats mean nothing.
    exp = int(now[0]) + 300
    event = connect_event("c1", "alice", exp)
    event["requestContext"]["authorizer"]["channels"] = json.dumps(["team-*", "lobby"])
    assert handler.connection_manager(event, None)["statusCode"] == 200
    later = token(jwt_secret, "alice", expires_in=3600, channels=renewed_claim)
    body = message_event("c1", action_body("renewToken", token=later), "renewToken", "alice", exp)
    body["requestContext"]["authorizer"]["channels"] = json.dumps(["team-*", "lobby"])

    response = handler.renew_token(body, None)

    assert response["statusCode"] == 200, response
    assert table.get_item(Key={"connection_id": "c1"})["Item"]["expires_at"] == exp_of(later)


def test_a_token_whose_exp_has_a_fraction_is_taken_to_the_second(
    handler: Any, management: Any, table: Any, jwt_secret: str, now: list[float]
) -> None:
    exp = int(now[0]) + 300
    open_with_token(handler, "c1", "alice", exp)
    later = int(time.time()) + 3600

    response = renew(handler, "c1", "alice", exp, token(jwt_secret, "alice", expires_in=None, exp=later + 0.75))

    assert response["statusCode"] == 200
    assert table.get_item(Key={"connection_id": "c1"})["Item"]["expires_at"] == later


def test_an_anonymous_connection_has_nothing_to_renew(handler: Any, management: Any, jwt_secret: str) -> None:
    body = action_body("renewToken", token=token(jwt_secret, "alice"))

    response = handler.renew_token(message_event("anon", body, "renewToken"), None)

    assert response == {"statusCode": 403, "body": "Only a signed-in connection has a token to renew."}


@pytest.mark.parametrize("value", [None, "", 7, ["t"]], ids=["missing", "empty", "number", "list"])
def test_a_renewal_without_a_token_is_refused(handler: Any, management: Any, now: list[float], value: Any) -> None:
    open_with_token(handler, "c1", "alice", START + 3000)

    response = renew(handler, "c1", "alice", START + 3000, value)  # type: ignore[arg-type]

    assert response == {"statusCode": 400, "body": '"token" must be a JWT: {"action": "renewToken", "token": "<JWT>"}.'}


def test_a_renewal_that_is_not_an_object_is_shown_what_to_send(handler: Any, management: Any) -> None:
    open_with_token(handler, "c1", "alice", START + 3000)

    response = handler.renew_token(message_event("c1", "[]", "renewToken", "alice", START + 3000), None)

    assert response == {"statusCode": 400, "body": 'Message body must be a JSON object like {"action": "renewToken", "token": "<JWT>"}.'}


# --- the sweeper ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweeper has no event to read the API from: the template gives it the endpoint."""
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", MANAGEMENT_ENDPOINT)


def test_the_sweeper_sends_the_notice_about_a_minute_before_and_closes_a_silent_connection(
    handler: Any, management: Any, table: Any, now: list[float]
) -> None:
    expires = START + 1150
    open_with_token(handler, "quiet", "alice", expires)

    sweeper.sweep(expires - 100)  # not yet: the notice is due 90 s before
    assert management.received("quiet") == []
    sweeper.sweep(expires - 30)
    assert management.received("quiet") == [{"tokenExpiring": {"at": frames.iso(expires * 1000)}}]
    sweeper.sweep(expires - 10)
    assert len(management.received("quiet")) == 1  # once
    sweeper.sweep(expires + 60)  # the first run in the bucket after exp

    assert management.closed == ["quiet"] and EXPIRED in management.received("quiet")
    assert "Item" not in table.get_item(Key={"connection_id": "quiet"})


def test_a_renewal_moves_the_notice_and_the_close(handler: Any, management: Any, table: Any, jwt_secret: str, now: list[float]) -> None:
    expires = START + 1150
    open_with_token(handler, "c1", "alice", expires)
    sweeper.sweep(expires - 30)  # noticed
    renew(handler, "c1", "alice", expires, token(jwt_secret, "alice", expires_in=7200))

    sweeper.sweep(expires + 60)

    assert management.closed == [] and "Item" in table.get_item(Key={"connection_id": "c1"})


@pytest.mark.parametrize("noticed_before", [30, 1])
def test_a_token_is_expired_at_its_exp_second_itself(
    handler: Any, management: Any, table: Any, now: list[float], noticed_before: int
) -> None:
    expires = START + 1200  # a bucket boundary: the run at exp itself reads the row
    open_with_token(handler, "c1", "alice", expires)

    assert sweeper.sweep(expires - noticed_before) == {"notified": 1}
    assert sweeper.sweep(expires) == {"expired": 1}  # JWT: valid only before exp

    assert management.closed == ["c1"] and "Item" not in table.get_item(Key={"connection_id": "c1"})


def test_the_notice_goes_at_exactly_90_seconds_before_exp_and_the_next_look_is_at_exp(
    handler: Any, management: Any, table: Any, now: list[float]
) -> None:
    expires = START + 1290  # its notice is due at START + 1200, a bucket boundary
    open_with_token(handler, "c1", "alice", expires)

    assert sweeper.sweep(expires - connections.EXPIRY_NOTICE_SECONDS) == {"notified": 1}

    assert management.received("c1") == [{"tokenExpiring": {"at": frames.iso(expires * 1000)}}]
    assert table.get_item(Key={"connection_id": "c1"})["Item"]["due_bucket"] == connections.due_bucket(expires)
    assert sweeper.sweep(expires - 30) == {} and management.asked == []  # nothing to do until exp


def test_a_renewal_while_the_notice_is_being_sent_is_not_undone_by_the_sweep(
    handler: Any, management: Any, table: Any, jwt_secret: str, now: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import delivery

    expires = START + 1150
    open_with_token(handler, "c1", "alice", expires)
    later = token(jwt_secret, "alice", expires_in=7200)
    post = delivery.post_to_connection
    renewed: list[dict[str, Any]] = []

    def renewed_meanwhile(client: Any, connection_id: str, payload: bytes) -> str:
        assert renew(handler, "c1", "alice", expires, later)["statusCode"] == 200  # the client renews as the notice goes
        renewed.append(table.get_item(Key={"connection_id": "c1"})["Item"])
        return post(client, connection_id, payload)

    monkeypatch.setattr(delivery, "post_to_connection", renewed_meanwhile)
    assert sweeper.sweep(expires - 30) == {"notified": 1}

    row = table.get_item(Key={"connection_id": "c1"})["Item"]
    assert row == renewed[0] and row["expires_at"] == exp_of(later)
    assert "notified" not in row  # the renewed token's own notice is still to come


def test_a_token_with_less_than_the_notice_left_at_connect_is_noticed_at_once_and_only_once(
    handler: Any, management: Any, workers: Any, now: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # 30 s left: the sweeps, a minute apart, may all come after its exp, which closed it without
    # a notice. $connect queues the notice itself (it cannot post during its own $connect).
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", "https://abc123.execute-api.us-east-1.amazonaws.com/dev")
    expires = int(now[0]) + 30
    open_with_token(handler, "c1", "alice", expires)
    workers.advance(3)  # the notice is queued with a 2 s delay: the handshake is done by then
    workers.drain()
    now[0] = expires + 60  # the first sweep after the connect that looks at it comes after the exp

    assert sweeper.sweep(now[0]) == {"expired": 1}
    notices = [frame for frame in management.received("c1") if isinstance(frame, dict) and "tokenExpiring" in frame]
    assert notices == [{"tokenExpiring": {"at": frames.iso(expires * 1000)}}]
