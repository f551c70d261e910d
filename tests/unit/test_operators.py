"""POST /moderate (issue 29): the app's backend deletes a room or channel message, bans, unbans
and disconnects a user, signed with IAM; unsigned calls are refused outside the local stack."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.support.actions import send
from tests.support.events import MANAGEMENT_ENDPOINT, connect_event

ARN = "arn:aws:sts::123456789012:assumed-role/ops/x"


def moderate(handler: Any, document: Any, signed: bool = True) -> tuple[int, Any]:
    event = {"httpMethod": "POST", "path": "/moderate", "resource": "/moderate", "headers": {},
             "body": document if isinstance(document, str) else json.dumps(document), "isBase64Encoded": False,
             "requestContext": {"identity": {"userArn": ARN if signed else None}}}
    response = handler.moderate(event, None)
    return response["statusCode"], json.loads(response["body"])


@pytest.fixture
def stage(connect: Any, handler: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.delenv("IS_OFFLINE", raising=False)
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", MANAGEMENT_ENDPOINT)  # as the template sets it
    for connection_id, user in (("m-1", "mallory"), ("m-2", "mallory"), ("a-1", "alice")):
        connect(connection_id, user=user)
        assert send(handler, "join", connection_id, user, channel="general")["statusCode"] == 200
    return handler


def test_an_unsigned_call_is_refused_and_does_nothing(stage: Any, management: Any) -> None:
    status, body = moderate(stage, {"action": "disconnect", "user": "mallory"}, signed=False)

    assert (status, body["error"]["code"]) == (403, "forbidden")
    assert management.closed == []


def test_the_backend_deletes_a_channel_message_as_by_says(stage: Any) -> None:
    reply = send(stage, "sendMessage", "m-1", "mallory", content="spam", channel="general")
    seq = json.loads(reply["body"])["sent"]["seq"]

    status, body = moderate(stage, {"action": "deleteMessage", "channel": "general", "seq": seq, "by": "ops"})

    assert status == 200 and body["deleted"]["seq"] == seq and body["deleted"]["channel"] == "general"
    shown = json.loads(send(stage, "getRecentMessages", "a-1", "alice", channel="general")["body"])["history"]["messages"]
    assert [(m["seq"], m.get("deleted"), m.get("deletedBy")) for m in shown][0] == (seq, True, "ops")


def test_a_direct_message_stays_its_senders_to_delete(stage: Any) -> None:
    """The backend has no direct conversation with alice: "with" names the caller's own, so no
    DM of two users can be reached from here."""
    reply = send(stage, "sendDirectMessage", "m-1", "mallory", to="alice", content="hi", clientMessageId="d1")
    seq = json.loads(reply["body"])["sent"]["seq"]

    status, body = moderate(stage, {"action": "deleteMessage", "with": "alice", "seq": seq})

    assert (status, body["error"]["code"]) == (404, "not_found")


def test_the_backend_bans_from_the_service_and_lifts_it(stage: Any, management: Any) -> None:
    status, body = moderate(stage, {"action": "ban", "user": "mallory", "reason": "abuse", "by": "ops"})

    assert status == 200 and body["ban"] == {"user": "mallory", "channel": None, "until": None, "removed": 2}
    assert sorted(management.closed) == ["m-1", "m-2"]
    assert stage.connection_manager(connect_event("m-3", "mallory"), None)["statusCode"] == 403

    assert moderate(stage, {"action": "unban", "user": "mallory"}) == (200, {"unban": {"user": "mallory", "channel": None}})
    assert stage.connection_manager(connect_event("m-4", "mallory"), None)["statusCode"] == 200


def test_disconnect_closes_every_connection_of_the_user_and_bans_nothing(stage: Any, management: Any) -> None:
    status, body = moderate(stage, {"action": "disconnect", "user": "mallory"})

    assert (status, body) == (200, {"disconnected": {"user": "mallory", "closed": 2}})
    assert sorted(management.closed) == ["m-1", "m-2"]
    assert stage.connection_manager(connect_event("m-3", "mallory"), None)["statusCode"] == 200


@pytest.mark.parametrize(
    "document, code",
    [
        ({"action": "editMessage", "channel": "general", "seq": 1, "content": "x"}, "bad_request"),
        ({"user": "mallory"}, "bad_request"),
        ({"action": "ban", "user": "mallory", "by": "not a user id"}, "bad_request"),
        ({"action": "ban", "user": "mallory", "seconds": 0}, "bad_request"),
        ({"action": "disconnect"}, "bad_request"),
        ("not json", "bad_request"),
        ([1, 2], "bad_request"),
    ],
)
def test_what_cannot_mean_anything_is_refused_with_its_code(stage: Any, management: Any, document: Any, code: str) -> None:
    status, body = moderate(stage, document)

    assert (status, body["error"]["code"]) == (400, code)
    assert management.closed == []
