"""Who hears about failures: one structured log line per invocation, and the metrics, in
Embedded Metric Format."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from chat import delivery, fanout, history, jobs, messaging
from tests.support.helpers import emitted, metric_values
from tests.support.lambda_sqs import FakeLambdaContext
from tests.support.events import (
    MANAGEMENT_ENDPOINT,
    authorizer_event,
    connect_event,
    message_event,
    send_message_body,
)

# --- observability --------------------------------------------------------------------------


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
    handler: Any, management: Any, connect: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect("alice", "bob", "gone")
    management.answer("gone", 410)
    management.answer("bob", 403, "ForbiddenException", times=1)
    # The broadcast's clock stands still but for the post to alice, which takes 0.25 s.
    clock = [10.0]
    monkeypatch.setattr(messaging, "time", SimpleNamespace(perf_counter=lambda: clock[0], time=time.time))
    delivery.management_client(MANAGEMENT_ENDPOINT).meta.events.register(
        "before-send.apigatewaymanagementapi.PostToConnection",
        lambda request, **_: clock.__setitem__(0, clock[0] + 0.25) if request.url.endswith("/alice") else None,
    )
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
        "BroadcastDuration": 250.0,  # from the send until the posts are done, in milliseconds
    }
    (document,) = [line for line in lines if "DeliveriesSent" in line]
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert {"Name": "BroadcastDuration", "Unit": "Milliseconds"} in directive["Metrics"]
    assert {"Name": "DeliveriesSent", "Unit": "Count"} in directive["Metrics"]  # a count, which CloudWatch sums
    assert directive["Namespace"] == "ServerlessWebsocket" and directive["Dimensions"] == [["service"]]
    assert document["service"] == "serverless-websocket"


def test_refused_connections_and_rate_limits_are_counted(
    limited: Any, handler: Any, management: Any, connect: Any, jwt_secret: str, frozen_clock: Any, capsys: Any
) -> None:
    handler.authorize(authorizer_event(query_token="nope"), None)
    connect("flood")
    for n in range(12):
        handler.send_message(message_event("flood", send_message_body(n)), None)

    totals = metric_values(emitted(capsys))
    assert totals["ConnectionsRefused"] == 1
    assert totals["MessagesRateLimited"] == 2 and totals["MessagesAccepted"] == 10


def test_the_worker_counts_its_deliveries(handler: Any, management: Any, workers: Any, table: Any, capsys: Any) -> None:
    job = jobs.DeliveryJob("m1", "https://abc123.execute-api.us-east-1.amazonaws.com/dev", b'{"messages": []}', ("a", "b", "c"))
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

    aws_failure(history.history_table().meta.client, "TransactWriteItems", EndpointConnectionError(endpoint_url="x"))

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
