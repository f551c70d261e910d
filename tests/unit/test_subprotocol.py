"""The token as a WebSocket subprotocol (docs/protocol.md: "Connecting"): a browser offers
["serverless-websocket", "bearer.<JWT>"], so the token stays out of the URL (and out of the
browser's console, logs and history); $connect selects "serverless-websocket", as the handshake
requires and API Gateway passes on."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.events import authorizer_event, connect_event, token


def allowed(policy: dict[str, Any]) -> bool:
    return policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"


@pytest.mark.parametrize("spacing", [", ", ","], ids=["browser", "no-space"])
def test_a_token_offered_as_a_subprotocol_is_verified(handler: Any, jwt_secret: str, spacing: str) -> None:
    offered = spacing.join(["serverless-websocket", "bearer." + token(jwt_secret, "alice")])

    policy = handler.authorize(authorizer_event(protocols=offered), None)

    assert allowed(policy) and policy["context"]["userId"] == "alice"


@pytest.mark.parametrize(
    "offered", ["serverless-websocket", "bearer.", "bearer", "Bearer.{token}", "token.{token}", "serverless-websocket, bearer.junk"],
    ids=["no-token", "empty-token", "no-dot", "capital", "other-prefix", "garbage"],
)
def test_a_subprotocol_that_carries_no_valid_token_is_refused(handler: Any, jwt_secret: str, offered: str) -> None:
    policy = handler.authorize(authorizer_event(protocols=offered.format(token=token(jwt_secret, "alice"))), None)

    assert not allowed(policy)


def test_the_subprotocol_token_wins_over_one_in_the_url(handler: Any, jwt_secret: str) -> None:
    event = authorizer_event(query_token=token(jwt_secret, "mallory"), protocols="bearer." + token(jwt_secret, "alice"))

    assert handler.authorize(event, None)["context"]["userId"] == "alice"


def test_connect_selects_the_subprotocol_when_offered(handler: Any) -> None:
    response = handler.connection_manager(connect_event("c1", "alice", protocols="serverless-websocket, bearer.x.y.z"), None)

    assert response == {"statusCode": 200, "body": "Connect successful.", "headers": {"Sec-WebSocket-Protocol": "serverless-websocket"}}


@pytest.mark.parametrize("protocols", [None, "bearer.x.y.z", "chat, superchat"], ids=["none", "token-only", "others"])
def test_connect_selects_no_subprotocol_the_client_did_not_offer(handler: Any, protocols: str | None) -> None:
    # Selecting one the client did not offer fails its handshake; a client that offered none
    # (wscat, the tutorial) must get no header at all.
    response = handler.connection_manager(connect_event("c1", "alice", protocols=protocols), None)

    assert response == {"statusCode": 200, "body": "Connect successful."}


def test_a_refused_connect_selects_nothing(handler: Any, connect: Any) -> None:
    connect(*[f"c{n}" for n in range(5)], user="alice")  # the most one user may have

    response = handler.connection_manager(connect_event("c6", "alice", protocols="serverless-websocket"), None)

    assert response["statusCode"] == 429 and "headers" not in response
