"""The $connect authorizer: a valid JWT from the query string or a Bearer header, or no entry."""

from __future__ import annotations

import base64
import json
import logging
import time
from typing import Any

import boto3
import jwt
import pytest
from botocore.awsrequest import AWSResponse

from chat import tokens, verifier
from tests.support.management_api import _RawBody
from tests.support.events import authorizer_event, connect_event, token


def test_the_context_carries_the_tokens_expiry_for_every_route(handler: Any, jwt_secret: str) -> None:
    exp = int(time.time()) + 600
    policy = handler.authorize(authorizer_event(query_token=jwt.encode({"sub": "alice", "exp": exp}, jwt_secret, "HS256")), None)

    assert policy["context"] == {"userId": "alice", "exp": exp}


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
    assert policy["context"]["userId"] == "alice" and set(policy["context"]) == {"userId", "exp"}
    assert policy["policyDocument"]["Statement"][0]["Resource"] == event["methodArn"]


@pytest.mark.parametrize("header_name", ["Authorization", "authorization"])
def test_valid_bearer_header_is_allowed(handler: Any, jwt_secret: str, header_name: str) -> None:
    event = authorizer_event()
    event["headers"][header_name] = f"Bearer {token(jwt_secret, 'bob')}"

    policy = handler.authorize(event, None)

    assert allowed(policy) and policy["context"]["userId"] == "bob" and set(policy["context"]) == {"userId", "exp"}


def test_korean_user_id_is_allowed(handler: Any, jwt_secret: str) -> None:
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, "김철수")), None)

    assert allowed(policy) and policy["context"]["userId"] == "김철수" and set(policy["context"]) == {"userId", "exp"}


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
        authorizer_event(query_token=token(SECRET, expires_in=None, exp=10**12)),  # the year 33658
        authorizer_event(query_token=token(SECRET, expires_in=367 * 86400)),  # more than a year away
        authorizer_event(query_token=token(SECRET, expires_in=None, exp=str(int(time.time()) + 3600))),  # RFC 7519: a number
        authorizer_event(query_token=token(SECRET, expires_in=None, exp=True)),
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
        "exp-year-33658",
        "exp-beyond-a-year",
        "exp-as-text",
        "exp-true",
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

    assert denied(policy, event)
    assert "context" not in policy


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (authorizer_event(), "no token in a bearer.<JWT> subprotocol, the query string or an Authorization: Bearer header"),
        (authorizer_event(query_token=token(SECRET, expires_in=-3600)), "ExpiredSignatureError: Signature has expired"),
        (authorizer_event(query_token=token(SECRET, sub="evil#dm")), "the token's sub is not a valid user id"),
        (authorizer_event(query_token=token(SECRET, channels=[f"c{n}" for n in range(verifier.MAX_CHANNEL_PATTERNS + 1)])),
         f"the token's channels claim is not a list of at most {verifier.MAX_CHANNEL_PATTERNS} channel names or prefixes*"),
    ],
    ids=["missing", "expired", "bad-sub", "too-many-channels"],
)
def test_each_refusal_is_logged_with_its_reason(handler: Any, jwt_secret: str, event: dict[str, Any], reason: str, caplog: Any) -> None:
    # A client only sees 403: the log line is how the service's owner learns why.
    with caplog.at_level(logging.INFO):
        handler.authorize(event, None)

    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("Refused")] == [f"Refused connection: {reason}"]


def test_an_unset_secret_parameter_is_logged_as_such(handler: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    monkeypatch.delenv("JWT_SECRET_PARAMETER", raising=False)

    with caplog.at_level(logging.INFO):
        handler.authorize(authorizer_event(query_token=token(SECRET)), None)

    assert "Refused connection: JWT_SECRET_PARAMETER is not set: no secret to verify tokens with" in [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("header", ["Bearer  {}", "Bearer {} ", "bearer {}"], ids=["two-spaces", "trailing-space", "lowercase"])
def test_a_bearer_header_is_read_as_rfc_7235_writes_it(handler: Any, jwt_secret: str, header: str) -> None:
    # credentials = auth-scheme [ 1*SP token68 ]; the scheme is case-insensitive (RFC 7235, 2.1)
    assert allowed(handler.authorize(authorizer_event(header=header.format(token(jwt_secret, "alice"))), None))


def test_a_request_without_a_method_arn_is_denied_for_everything(handler: Any, jwt_secret: str) -> None:
    event = {key: value for key, value in authorizer_event().items() if key != "methodArn"}

    assert handler.authorize(event, None)["policyDocument"] == iam_policy("Deny", "*")


def denied(policy: dict[str, Any], event: dict[str, Any]) -> bool:
    """A refusal API Gateway can read: an IAM policy that denies invoking this $connect (not
    merely "not Allow": a malformed policy is an authorizer error, a 500, on AWS)."""
    return policy["policyDocument"] == iam_policy("Deny", event["methodArn"]) and policy["principalId"] == "anonymous"


def iam_policy(effect: str, resource: str) -> dict[str, Any]:
    """The policy document API Gateway expects from a Lambda authorizer (AWS: "Output from an
    API Gateway Lambda authorizer")."""
    return {"Version": "2012-10-17", "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}]}


def test_the_policy_is_the_document_api_gateway_reads(handler: Any, jwt_secret: str) -> None:
    event = authorizer_event(query_token=token(jwt_secret, "alice"))

    policy = handler.authorize(event, None)

    assert policy["policyDocument"] == iam_policy("Allow", event["methodArn"]) and policy["principalId"] == "alice"


def test_a_valid_token_under_another_scheme_than_bearer_is_denied(handler: Any, jwt_secret: str) -> None:
    event = authorizer_event(header=f"Token {token(jwt_secret, 'alice')}")

    assert denied(handler.authorize(event, None), event)


@pytest.mark.parametrize("patterns", [["team-*"], ["lobby", "ops", "*"], [f"c{n}" for n in range(verifier.MAX_CHANNEL_PATTERNS)]],
                         ids=["prefix", "several", "the-most"])
def test_the_channels_claim_reaches_every_route_as_the_token_said(handler: Any, jwt_secret: str, patterns: list[str]) -> None:
    from chat.callers import allowed_channels

    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, "alice", channels=patterns)), None)

    assert allowed(policy)
    # API Gateway passes the context on to every route of the connection as it is
    route_event = {"requestContext": {"connectionId": "c1", "authorizer": dict(policy["context"])}}
    assert allowed_channels(route_event) == tuple(patterns)


def test_more_channel_patterns_than_the_most_are_refused(handler: Any, jwt_secret: str) -> None:
    patterns = [f"c{n}" for n in range(verifier.MAX_CHANNEL_PATTERNS + 1)]
    event = authorizer_event(query_token=token(jwt_secret, "alice", channels=patterns))

    assert denied(handler.authorize(event, None), event)


def test_missing_secret_parameter_denies(handler: Any, aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWT_SECRET_PARAMETER", "/does/not/exist")
    event = authorizer_event(query_token=token(SECRET))

    assert denied(handler.authorize(event, None), event)


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


# --- the token secret: throttling and outages --------------------------------------------


class SsmAnswers:
    """SSM's GetParameter answered at the HTTP layer: throttled the next `n` times, or down."""

    def __init__(self, client: Any) -> None:
        self.throttle = 0
        self.down = False
        self.requests = 0
        client.meta.events.register_first("before-send.ssm.GetParameter", self._before_send)

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        self.requests += 1
        if self.down or self.throttle > 0:
            self.throttle -= 1
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
            return AWSResponse(request.url, 400, {"x-amzn-RequestId": "r"}, _RawBody(body))
        return None


@pytest.fixture
def ssm(handler: Any, jwt_secret: str) -> SsmAnswers:
    return SsmAnswers(verifier.ssm_client())


def signs_in(handler: Any, secret: str, user: str = "alice") -> bool:
    policy = handler.authorize(authorizer_event(query_token=token(secret, user)), None)
    return policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_a_cold_start_read_throttled_three_times_still_lets_the_user_in(handler: Any, jwt_secret: str, ssm: SsmAnswers) -> None:
    ssm.throttle = 3  # a reconnect storm: SSM's 40 requests/s are used up

    assert signs_in(handler, jwt_secret)
    assert ssm.requests == 4


def test_a_cold_start_that_cannot_read_the_secret_denies(handler: Any, jwt_secret: str, ssm: SsmAnswers, caplog: Any) -> None:
    ssm.down = True

    assert not signs_in(handler, jwt_secret)
    assert "Could not read the token secret" in caplog.text


@pytest.fixture
def secret_clock(handler: Any, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clock of the secret's cache, moved by the test."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(verifier, "_now", lambda: now[0])
    return now


def test_a_failed_refresh_keeps_using_the_known_secret(
    handler: Any, jwt_secret: str, ssm: SsmAnswers, secret_clock: list[float], caplog: Any
) -> None:
    assert signs_in(handler, jwt_secret)
    ssm.down = True
    secret_clock[0] += verifier.SECRET_CACHE_SECONDS + 1  # due for a refresh

    with caplog.at_level(logging.WARNING):
        assert signs_in(handler, jwt_secret, "bob")

    assert "using the one read 301 s ago" in caplog.text


def test_the_secret_is_read_again_once_its_cache_time_is_up(handler: Any, jwt_secret: str, ssm: SsmAnswers, secret_clock: list[float]) -> None:
    assert signs_in(handler, jwt_secret)
    secret_clock[0] += verifier.SECRET_CACHE_SECONDS - 1
    assert signs_in(handler, jwt_secret) and ssm.requests == 1
    secret_clock[0] += 1  # exactly SECRET_CACHE_SECONDS after the read

    assert signs_in(handler, jwt_secret) and ssm.requests == 2


def test_a_known_secret_is_not_used_at_the_staleness_bound(
    handler: Any, jwt_secret: str, ssm: SsmAnswers, secret_clock: list[float]
) -> None:
    assert signs_in(handler, jwt_secret)
    ssm.down = True
    secret_clock[0] += verifier.SECRET_MAX_STALENESS_SECONDS

    assert not signs_in(handler, jwt_secret)


def test_a_known_secret_is_used_no_longer_than_the_staleness_bound(
    handler: Any, jwt_secret: str, ssm: SsmAnswers, secret_clock: list[float]
) -> None:
    assert signs_in(handler, jwt_secret)
    ssm.down = True
    secret_clock[0] += verifier.SECRET_MAX_STALENESS_SECONDS + 1

    assert not signs_in(handler, jwt_secret)


def test_a_refreshed_secret_replaces_the_old_one(
    handler: Any, jwt_secret: str, ssm: SsmAnswers, secret_clock: list[float]
) -> None:
    assert signs_in(handler, jwt_secret)
    rotated = "rotated-" + "z" * 60
    boto3.client("ssm").put_parameter(Name="/serverless-websocket/test/jwt-secret", Value=rotated, Type="SecureString", Overwrite=True)
    secret_clock[0] += verifier.SECRET_CACHE_SECONDS + 1

    assert signs_in(handler, rotated) and not signs_in(handler, jwt_secret)
