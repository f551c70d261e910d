"""The $connect authorizer: a valid JWT from the query string or a Bearer header, or no entry."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import boto3
import pytest

from tests.events import authorizer_event, connect_event, token


def allowed(policy: dict[str, Any]) -> bool:
    (statement,) = policy["policyDocument"]["Statement"]
    return statement["Effect"] == "Allow"


def unsigned(claims: dict[str, Any], header: dict[str, Any]) -> str:
    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part(header)}.{part(claims)}."


def test_valid_token_in_query_string_is_allowed_with_user_in_context(handler: Any, jwt_secret: str) -> None:
    event = authorizer_event(query_token=token(jwt_secret, "alice"))

    policy = handler.authorize(event, None)

    assert allowed(policy)
    assert policy["principalId"] == "alice"
    assert policy["context"] == {"userId": "alice"}
    assert policy["policyDocument"]["Statement"][0]["Resource"] == event["methodArn"]


@pytest.mark.parametrize("header_name", ["Authorization", "authorization"])
def test_valid_bearer_header_is_allowed(handler: Any, jwt_secret: str, header_name: str) -> None:
    event = authorizer_event()
    event["headers"][header_name] = f"Bearer {token(jwt_secret, 'bob')}"

    policy = handler.authorize(event, None)

    assert allowed(policy) and policy["context"] == {"userId": "bob"}


def test_korean_user_id_is_allowed(handler: Any, jwt_secret: str) -> None:
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, "김철수")), None)

    assert allowed(policy) and policy["context"] == {"userId": "김철수"}


def test_token_just_expired_within_leeway_is_allowed(handler: Any, jwt_secret: str) -> None:
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, expires_in=-10)), None)

    assert allowed(policy)


SECRET = "test-secret-" + "x" * 60  # the jwt_secret fixture's value


@pytest.mark.parametrize(
    "event",
    [
        authorizer_event(),
        authorizer_event(query_token=""),
        authorizer_event(header="Bearer "),
        authorizer_event(header="Basic YWxpY2U6cGFzcw=="),
        authorizer_event(query_token="not-a-jwt"),
        authorizer_event(query_token="a.b.c"),
        authorizer_event(query_token=token(SECRET, expires_in=-3600)),
        authorizer_event(query_token=token("another-secret-" + "y" * 60)),
        authorizer_event(query_token=token(SECRET, algorithm="HS512")),
        authorizer_event(query_token=unsigned({"sub": "alice", "exp": int(time.time()) + 3600}, {"alg": "none", "typ": "JWT"})),
        authorizer_event(query_token=token(SECRET, expires_in=None)),  # no exp
        authorizer_event(query_token=token(SECRET, sub=None)),
        authorizer_event(query_token=token(SECRET, sub="")),
        authorizer_event(query_token=token(SECRET, sub="evil#dm")),
        authorizer_event(query_token=token(SECRET, sub="x" * 129)),
        authorizer_event(query_token=token(SECRET)[:-4]),  # signature cut
        authorizer_event(query_token="\ud800"),  # found by Hypothesis: PyJWT raised UnicodeEncodeError
        authorizer_event(header="Bearer a.\udfff.c"),
    ],
    ids=[
        "missing",
        "empty-query",
        "empty-bearer",
        "basic-auth",
        "malformed",
        "garbage-segments",
        "expired",
        "wrong-signature",
        "wrong-algorithm-hs512",
        "alg-none",
        "no-exp",
        "no-sub",
        "empty-sub",
        "sub-with-hash",
        "sub-too-long",
        "truncated",
        "lone-surrogate-query",
        "lone-surrogate-header",
    ],
)
def test_bad_token_is_denied(handler: Any, jwt_secret: str, event: dict[str, Any]) -> None:
    assert jwt_secret == SECRET

    policy = handler.authorize(event, None)

    assert not allowed(policy)
    assert "context" not in policy


def test_missing_secret_parameter_denies(handler: Any, aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/does/not/exist")

    assert not allowed(handler.authorize(authorizer_event(query_token=token(SECRET)), None))


def test_unset_secret_parameter_denies(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_SECRET_PARAMETER", raising=False)

    assert not allowed(handler.authorize(authorizer_event(query_token=token(SECRET)), None))


def test_secret_is_read_once_per_container(handler: Any, jwt_secret: str) -> None:
    calls = []
    boto3.DEFAULT_SESSION.events.register("before-call.ssm.GetParameter", lambda **_: calls.append(1))

    for user in ("alice", "bob", "carol"):
        assert allowed(handler.authorize(authorizer_event(query_token=token(jwt_secret, user)), None))

    assert len(calls) == 1


def test_connect_stores_the_authorized_user(handler: Any, table: Any) -> None:
    handler.connection_manager(connect_event("conn-1", user="alice"), None)
    handler.connection_manager(connect_event("conn-2"), None)

    rows = {item["connection_id"]: item for item in table.scan()["Items"]}
    assert rows["conn-1"]["user_id"] == "alice"
    assert "user_id" not in rows["conn-2"]  # anonymous still works, outside the user index
