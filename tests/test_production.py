"""What bites after the first deploy: custom domains, SSM throttling in reconnect storms, a client
flooding the account, and nobody hearing about failures."""

from __future__ import annotations

import json
import logging
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from tests.conftest import FakeLambdaContext, _RawBody
from tests.events import (
    API_ID,
    REGION,
    STAGE,
    action_body,
    authorizer_event,
    connect_event,
    message_event,
    send_message_body,
    token,
)

# --- the management endpoint -------------------------------------------------------------


def custom_domain_event(connection_id: str = "alice", body: str = "{}") -> dict[str, Any]:
    event = message_event(connection_id, body)
    event["requestContext"].update(domainName="chat.example.com", stage=STAGE)
    return event


def test_behind_a_custom_domain_the_endpoint_is_the_apis_own(handler: Any) -> None:
    # https://chat.example.com/dev answers 403 "No method found matching route" for @connections.
    assert handler.management_endpoint(custom_domain_event()) == f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/{STAGE}"


def test_the_endpoint_built_in_the_template_wins(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", "https://zz9.execute-api.cn-north-1.amazonaws.com.cn/prod")

    assert handler.management_endpoint(custom_domain_event()) == "https://zz9.execute-api.cn-north-1.amazonaws.com.cn/prod"


def test_in_a_china_region_the_fallback_uses_its_partitions_suffix(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "cn-northwest-1")

    assert handler.management_endpoint(custom_domain_event()) == f"https://{API_ID}.execute-api.cn-northwest-1.amazonaws.com.cn/{STAGE}"


def test_a_broadcast_behind_a_custom_domain_reaches_everyone(handler: Any, management: Any, connect: Any) -> None:
    connect("alice", "bob")

    response = handler.send_message(custom_domain_event("alice", send_message_body("via chat.example.com")), None)

    assert response == {"statusCode": 200, "body": "Message sent to all connections."}
    assert management.received("bob") == [{"messages": [{"content": "via chat.example.com"}]}]


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
    return SsmAnswers(handler.ssm_client())


def allowed(handler: Any, secret: str, user: str = "alice") -> bool:
    policy = handler.authorize(authorizer_event(query_token=token(secret, user)), None)
    return policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"


def test_a_cold_start_read_throttled_three_times_still_lets_the_user_in(handler: Any, jwt_secret: str, ssm: SsmAnswers) -> None:
    ssm.throttle = 3  # a reconnect storm: SSM's 40 requests/s are used up

    assert allowed(handler, jwt_secret)
    assert ssm.requests == 4


def test_a_cold_start_that_cannot_read_the_secret_denies(handler: Any, jwt_secret: str, ssm: SsmAnswers, caplog: Any) -> None:
    ssm.down = True

    assert not allowed(handler, jwt_secret)
    assert "Could not read the token secret" in caplog.text


@pytest.fixture
def secret_clock(handler: Any, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The clock of the secret's cache, moved by the test."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(handler, "_now", lambda: now[0])
    return now


def test_a_failed_refresh_keeps_using_the_known_secret(
    handler: Any, jwt_secret: str, ssm: SsmAnswers, secret_clock: list[float], caplog: Any
) -> None:
    assert allowed(handler, jwt_secret)
    ssm.down = True
    secret_clock[0] += handler.SECRET_CACHE_SECONDS + 1  # due for a refresh

    with caplog.at_level(logging.WARNING):
        assert allowed(handler, jwt_secret, "bob")

    assert "using the one read 301 s ago" in caplog.text


def test_a_known_secret_is_used_no_longer_than_the_staleness_bound(
    handler: Any, jwt_secret: str, ssm: SsmAnswers, secret_clock: list[float]
) -> None:
    assert allowed(handler, jwt_secret)
    ssm.down = True
    secret_clock[0] += handler.SECRET_MAX_STALENESS_SECONDS + 1

    assert not allowed(handler, jwt_secret)


def test_a_refreshed_secret_replaces_the_old_one(
    handler: Any, jwt_secret: str, ssm: SsmAnswers, secret_clock: list[float]
) -> None:
    assert allowed(handler, jwt_secret)
    rotated = "rotated-" + "z" * 60
    boto3.client("ssm").put_parameter(Name="/serverless-websocket/test/jwt-secret", Value=rotated, Type="SecureString", Overwrite=True)
    secret_clock[0] += handler.SECRET_CACHE_SECONDS + 1

    assert allowed(handler, rotated) and not allowed(handler, jwt_secret)


# --- a per-connection send rate --------------------------------------------------------------


@pytest.fixture
def frozen_clock(handler: Any, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The handler's clock, standing still until a test moves it (now[0] += seconds)."""
    now = [1_764_000_000.0]
    monkeypatch.setattr(handler.time, "time", lambda: now[0])
    return now


RATE_LIMITED = {
    "statusCode": 429,
    "body": "Too many messages: at most 5 a second (10 at once) per connection. This one was not sent; wait a moment.",
}


def test_a_client_pipelining_150_frames_gets_its_burst_then_a_clear_refusal(
    handler: Any, management: Any, connect: Any, messages: Any, frozen_clock: Any
) -> None:
    connect("flood", "bob")

    responses = [handler.send_message(message_event("flood", send_message_body(n)), None) for n in range(150)]

    assert [r["statusCode"] for r in responses[:10]] == [200] * 10
    assert all(r == RATE_LIMITED for r in responses[10:])
    assert [d["messages"][0]["content"] for d in management.received("bob")] == list(range(10))
    assert messages.scan()["Count"] == 10  # refused messages are not stored either


def test_the_bucket_refills_at_the_rate(handler: Any, management: Any, connect: Any, frozen_clock: Any) -> None:
    connect("steady")
    for n in range(10):
        assert handler.send_message(message_event("steady", send_message_body(n)), None)["statusCode"] == 200
    assert handler.send_message(message_event("steady", send_message_body("11th")), None) == RATE_LIMITED

    frozen_clock[0] += 0.2  # one message's worth at 5 a second
    assert handler.send_message(message_event("steady", send_message_body("later")), None)["statusCode"] == 200
    assert handler.send_message(message_event("steady", send_message_body("too soon")), None) == RATE_LIMITED
    frozen_clock[0] += 10  # idle: the whole burst is back
    assert all(handler.send_message(message_event("steady", send_message_body(n)), None)["statusCode"] == 200 for n in range(10))


@pytest.mark.parametrize("route", ["sendDirectMessage", "getRecentMessages"])
def test_direct_messages_and_history_share_the_same_bucket(
    handler: Any, management: Any, connect: Any, frozen_clock: Any, route: str
) -> None:
    connect("busy", user="alice")
    for n in range(10):
        handler.send_message(message_event("busy", send_message_body(n), user="alice"), None)
    body = action_body(route, **({"to": "bob", "content": "hi"} if route == "sendDirectMessage" else {}))
    entry_point = handler.send_direct_message if route == "sendDirectMessage" else handler.get_recent_messages

    assert entry_point(message_event("busy", body, route, "alice"), None) == RATE_LIMITED


def test_one_connections_flood_does_not_limit_another(handler: Any, management: Any, connect: Any, frozen_clock: Any) -> None:
    connect("flood", "calm")
    for n in range(20):
        handler.send_message(message_event("flood", send_message_body(n)), None)

    assert handler.send_message(message_event("calm", send_message_body("hello")), None)["statusCode"] == 200


def test_a_connection_without_a_row_is_not_limited_and_gets_no_row(handler: Any, management: Any, table: Any, frozen_clock: Any) -> None:
    for n in range(15):
        assert handler.send_message(message_event("rowless", send_message_body(n)), None)["statusCode"] == 200
    assert table.scan()["Items"] == []  # the limiter never creates a connection row


def test_the_limit_is_one_conditional_write_per_message(handler: Any, management: Any, connect: Any, frozen_clock: Any) -> None:
    connect("one")
    calls: list[str] = []
    client = handler.connections_table().meta.client
    for operation in ("GetItem", "UpdateItem", "PutItem", "Query"):
        client.meta.events.register(f"before-call.dynamodb.{operation}", lambda op=operation, **_: calls.append(op))

    handler.send_message(message_event("one", send_message_body("x")), None)

    assert calls == ["UpdateItem"]


# --- observability --------------------------------------------------------------------------


def emitted(capsys: Any) -> list[dict[str, Any]]:
    """Every JSON line the functions printed: structured logs and EMF metrics."""
    lines = []
    for line in capsys.readouterr().out.splitlines():
        try:
            lines.append(json.loads(line))
        except ValueError:
            continue
    return lines


def metric_values(lines: list[dict[str, Any]]) -> dict[str, float]:
    """The EMF metrics, summed over every document."""
    totals: dict[str, float] = {}
    for line in lines:
        for directive in line.get("_aws", {}).get("CloudWatchMetrics", []):
            for metric in directive["Metrics"]:
                value = line[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + (sum(value) if isinstance(value, list) else value)
    return totals


def test_each_invocation_logs_one_structured_line_with_connection_user_route_and_outcome(
    handler: Any, management: Any, connect: Any, capsys: Any
) -> None:
    connect("alice-1", user="alice")
    capsys.readouterr()

    handler.send_message(message_event("alice-1", send_message_body("hi"), user="alice"), FakeLambdaContext())
    handler.send_message(message_event("alice-1", "{}", user="alice"), FakeLambdaContext())

    handled = [line for line in emitted(capsys) if line.get("message") == "Handled"]
    assert [(h["route"], h["connection_id"], h["user"], h["status_code"], h["outcome"]) for h in handled] == [
        ("sendMessage", "alice-1", "alice", 200, "accepted"),
        ("sendMessage", "alice-1", "alice", 400, "rejected"),
    ]
    assert all(h["service"] == "serverless-websocket" and h["level"] == "INFO" for h in handled)


def test_messages_and_deliveries_are_counted_in_embedded_metric_format(
    handler: Any, management: Any, connect: Any, capsys: Any
) -> None:
    connect("alice", "bob", "gone")
    management.answer("gone", 410)
    management.answer("bob", 403, "ForbiddenException", times=1)
    capsys.readouterr()

    handler.send_message(message_event("alice", send_message_body("one")), None)
    handler.send_message(message_event("alice", "{}"), None)

    lines = emitted(capsys)
    assert metric_values(lines) == {
        "MessagesAccepted": 1,
        "MessagesRejected": 1,
        "DeliveriesSent": 1,
        "DeliveriesGone": 1,
        "DeliveriesFailed": 1,
        "BroadcastDuration": pytest.approx(metric_values(lines)["BroadcastDuration"]),
    }
    (document,) = [line for line in lines if "DeliveriesSent" in line]
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "ServerlessWebsocket" and directive["Dimensions"] == [["service"]]
    assert document["service"] == "serverless-websocket"


def test_refused_connections_and_rate_limits_are_counted(
    handler: Any, management: Any, connect: Any, jwt_secret: str, frozen_clock: Any, capsys: Any
) -> None:
    handler.authorize(authorizer_event(query_token="nope"), None)
    connect("flood")
    for n in range(12):
        handler.send_message(message_event("flood", send_message_body(n)), None)

    totals = metric_values(emitted(capsys))
    assert totals["ConnectionsRefused"] == 1
    assert totals["MessagesRateLimited"] == 2 and totals["MessagesAccepted"] == 10


def test_the_worker_counts_its_deliveries(handler: Any, management: Any, workers: Any, table: Any, capsys: Any) -> None:
    job = handler.DeliveryJob("m1", "https://abc123.execute-api.us-east-1.amazonaws.com/dev", b'{"messages": []}', ("a", "b", "c"))
    management.answer("c", 410)
    workers.sqs.send_message(QueueUrl=workers.queue, MessageBody=job.to_body())
    capsys.readouterr()

    workers.drain()

    totals = metric_values(emitted(capsys))
    assert totals["DeliveriesSent"] == 2 and totals["DeliveriesGone"] == 1
    assert "DeliveryJobDuration" in totals


def test_an_aws_failure_is_counted_and_logged_as_an_error(
    handler: Any, management: Any, aws_failure: Any, capsys: Any
) -> None:
    from botocore.exceptions import EndpointConnectionError

    aws_failure(handler.messages_table().meta.client, "PutItem", EndpointConnectionError(endpoint_url="x"))

    handler.send_message(message_event("alice", send_message_body("x")), None)

    lines = emitted(capsys)
    assert metric_values(lines)["AwsErrors"] == 1
    (error,) = [line for line in lines if line.get("level") == "ERROR"]
    assert error["message"].startswith("Broadcast from alice failed") and "EndpointConnectionError" in error["exception"]
    handled = [line for line in lines if line.get("message") == "Handled"]
    assert handled[-1]["outcome"] == "failed" and handled[-1]["status_code"] == 500


def test_connects_are_logged_with_the_user(handler: Any, table: Any, capsys: Any) -> None:
    handler.connection_manager(connect_event("c-9", user="김철수"), None)

    (handled,) = [line for line in emitted(capsys) if line.get("message") == "Handled"]
    assert (handled["route"], handled["user"], handled["outcome"]) == ("$connect", "김철수", "accepted")
