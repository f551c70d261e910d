"""The delivery worker under faults (issues 16 and 18): a slow API Gateway, an invocation that
runs out of time, a post whose answer never comes, records that are not jobs. On moto's SQS,
with a real (slow) HTTP server on loopback standing in for the management API."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator
from urllib.parse import unquote

import boto3
import pytest

from chat import delivery, fanout, jobs, worker
from tests.support.lambda_sqs import FakeLambdaContext

PAYLOAD = json.dumps({"messages": [{"content": "slow"}]}).encode()


class SlowApi:
    """The @connections API on 127.0.0.1, answering every post after `delay` seconds (200,
    or `status` for the connections listed in `answers`). Records each post it received."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.answers: dict[str, int] = {}
        self.posts: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                connection_id = unquote(self.path.rsplit("/@connections/", 1)[1])
                with api._lock:
                    api.posts.append((connection_id, time.monotonic()))
                time.sleep(api.delay)
                status = api.answers.get(connection_id, 200)
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the client gave up waiting (its read timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://localhost:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def counts(self) -> Counter:
        with self._lock:
            return Counter(cid for cid, _ in self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def slow_api(handler: Any) -> Iterator[SlowApi]:
    api = SlowApi()
    yield api
    api.close()


def queue_job(connections: list[str], endpoint: str, attempt: int = 1) -> jobs.DeliveryJob:
    job = jobs.DeliveryJob("0" * 32, endpoint, PAYLOAD, tuple(connections), attempt=attempt, sent_at_ms=1)
    fanout.enqueue([job])
    return job


def visible_jobs(queues: dict[str, str]) -> list[jobs.DeliveryJob]:
    """The jobs a receive would get now (taken with a visibility timeout of 0, so they stay)."""
    sqs = boto3.client("sqs")
    received = sqs.receive_message(QueueUrl=queues["DeliveryQueue"], MaxNumberOfMessages=10, VisibilityTimeout=0)
    return [jobs.DeliveryJob.from_body(message["Body"]) for message in received.get("Messages", [])]


# --- a slow API and a running-down invocation ---------------------------------------------


def test_a_slow_api_cannot_make_the_worker_overrun_and_nobody_gets_two_copies(
    handler: Any, slow_api: SlowApi, workers: Any, queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "BROADCAST_CONCURRENCY", 4)
    monkeypatch.setattr(worker, "WORKER_RESERVE_MS", 1_000)
    slow_api.delay = 0.4  # 4 posts at a time, 0.4 s each: 10 posts a second
    ids = [f"c{n:02d}" for n in range(40)]  # 4 s of posting
    queue_job(ids, slow_api.endpoint)
    context = FakeLambdaContext(remaining_ms=2_200)  # 1.2 s to post in, then the reserve

    started = time.monotonic()
    received = workers.sqs.receive_message(QueueUrl=queues["DeliveryQueue"], MaxNumberOfMessages=5, AttributeNames=["All"])["Messages"]
    response = handler.deliver_messages({"Records": [workers._record(m) for m in received]}, context)
    elapsed = time.monotonic() - started

    assert elapsed < 2.2, f"the invocation overran its time: {elapsed:.2f} s of 2.2 s"
    assert response == {"batchItemFailures": []}  # reported done: SQS will not deliver it again
    workers.sqs.delete_message(QueueUrl=queues["DeliveryQueue"], ReceiptHandle=received[0]["ReceiptHandle"])
    posted = set(slow_api.counts())
    assert 4 <= len(posted) < 40
    (rest,) = visible_jobs(queues)  # what was not posted in time is a job of its own, at once
    assert set(rest.connections) == set(ids) - posted and rest.attempt == 1 and rest.payload == PAYLOAD

    workers.drain()

    assert slow_api.counts() == Counter(dict.fromkeys(ids, 1))  # every connection once, none twice
    assert workers.count(queues["DeliveryQueue"]) == 0 and workers.count(queues["DeliveryDeadLetterQueue"]) == 0


def test_every_post_checks_the_time_not_only_each_round(
    handler: Any, slow_api: SlowApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "BROADCAST_CONCURRENCY", 2)
    slow_api.delay = 0.2
    ids = [f"c{n}" for n in range(20)]

    started = time.monotonic()
    outcomes = delivery.deliver(slow_api.endpoint, ids, PAYLOAD, rounds=4, deadline=started + 0.5)

    assert time.monotonic() - started < 0.5 + 0.2 + 0.15  # the last post started before the deadline
    unsent = {cid for cid, outcome in outcomes.items() if outcome == delivery.UNSENT}
    assert set(slow_api.counts()) == set(ids) - unsent and 2 <= len(unsent) <= 18


def test_a_job_started_too_late_is_queued_again_at_once_and_the_record_is_done(
    handler: Any, slow_api: SlowApi, workers: Any, queues: dict[str, str]
) -> None:
    ids = ["a1", "a2", "a3"]
    queue_job(ids, slow_api.endpoint, attempt=2)
    received = workers.sqs.receive_message(QueueUrl=queues["DeliveryQueue"], AttributeNames=["All"])["Messages"]

    response = handler.deliver_messages(
        {"Records": [workers._record(received[0])]}, FakeLambdaContext(remaining_ms=worker.WORKER_RESERVE_MS - 1)
    )

    assert response == {"batchItemFailures": []}
    workers.sqs.delete_message(QueueUrl=queues["DeliveryQueue"], ReceiptHandle=received[0]["ReceiptHandle"])
    assert slow_api.counts() == Counter()  # nothing posted
    (again,) = visible_jobs(queues)  # back within seconds, not after the 360 s visibility timeout
    assert again.connections == tuple(ids) and again.attempt == 2
    workers.drain()
    assert slow_api.counts() == Counter(dict.fromkeys(ids, 1))


def test_a_job_handed_back_many_times_never_lands_in_the_dead_letter_queue(
    handler: Any, slow_api: SlowApi, workers: Any, queues: dict[str, str]
) -> None:
    queue_job(["b1"], slow_api.endpoint)

    for _ in range(8):  # more than maxReceiveCount (5): a hand-back is not a failure
        received = workers.sqs.receive_message(QueueUrl=queues["DeliveryQueue"], AttributeNames=["All"])["Messages"]
        response = handler.deliver_messages(
            {"Records": [workers._record(received[0])]}, FakeLambdaContext(remaining_ms=worker.WORKER_RESERVE_MS - 1)
        )
        assert response == {"batchItemFailures": []}
        workers.sqs.delete_message(QueueUrl=queues["DeliveryQueue"], ReceiptHandle=received[0]["ReceiptHandle"])

    assert workers.count(queues["DeliveryDeadLetterQueue"]) == 0
    workers.drain()
    assert slow_api.counts() == Counter({"b1": 1})


# --- one post's own time ------------------------------------------------------------------


def test_a_post_whose_answer_times_out_is_not_retried_by_botocore(
    handler: Any, slow_api: SlowApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(delivery, "POST_READ_TIMEOUT_SECONDS", 0.3)
    slow_api.delay = 1.0  # the post lands, its answer comes too late

    outcomes = delivery.deliver(slow_api.endpoint, ["late"], PAYLOAD, rounds=4)

    assert outcomes == {"late": delivery.FAILED}
    assert slow_api.counts() == Counter({"late": 1})  # one attempt: it may have landed


def test_a_throttled_post_is_still_tried_again_it_did_not_land(
    handler: Any, slow_api: SlowApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_api.answers["busy"] = 429

    outcomes = delivery.deliver(slow_api.endpoint, ["busy", "calm"], PAYLOAD, rounds=3)

    assert outcomes == {"busy": delivery.THROTTLED, "calm": delivery.SENT}
    assert slow_api.counts() == Counter({"busy": 3, "calm": 1})


def test_one_post_is_bounded_well_inside_the_workers_reserve() -> None:
    config = delivery.management_client_config()

    assert config.retries == {"mode": "standard", "total_max_attempts": 1}
    post_seconds = config.connect_timeout + config.read_timeout
    hand_back_seconds = fanout.REQUEUE_CLIENT_CONFIG.retries["total_max_attempts"] * (
        fanout.REQUEUE_CLIENT_CONFIG.connect_timeout + fanout.REQUEUE_CLIENT_CONFIG.read_timeout
    )
    assert post_seconds + hand_back_seconds + 2 <= worker.WORKER_RESERVE_MS / 1000


# --- records that are not jobs --------------------------------------------------------------


def job_body(**changes: Any) -> str:
    document = {
        "v": 1,
        "message_id": "f" * 32,
        "endpoint": "https://abc123.execute-api.us-east-1.amazonaws.com/dev",
        "payload": base64.b64encode(PAYLOAD).decode(),
        "connections": ["a", "b"],
        "attempt": 1,
        "sent_at_ms": 1_764_000_000_000,
    }
    document.update(changes)
    return json.dumps({key: value for key, value in document.items() if value is not ...})


def test_a_valid_job_round_trips() -> None:
    job = jobs.DeliveryJob.from_body(job_body())

    assert job.connections == ("a", "b") and job.attempt == 1 and jobs.DeliveryJob.from_body(job.to_body()) == job


BAD_JOBS = {
    "connections-a-string": job_body(connections="abc"),
    "connections-an-object": job_body(connections={"a": 1}),
    "connection-empty": job_body(connections=["a", ""]),
    "connection-not-text": job_body(connections=["a", 7]),
    "connection-with-a-space": job_body(connections=["a b"]),
    "connection-too-long": job_body(connections=["x" * 200]),
    "connections-repeated": job_body(connections=["a", "a"]),
    "connections-too-many": job_body(connections=[f"c{n}" for n in range(getattr(fanout, "MAX_JOB_CONNECTIONS", 10_000) + 1)]),
    "attempt-negative": job_body(attempt=-1),
    "attempt-zero": job_body(attempt=0),
    "attempt-beyond-the-last": job_body(attempt=worker.MAX_DELIVERY_ATTEMPTS + 1),
    "attempt-a-float": job_body(attempt=1.5),
    "attempt-a-string": job_body(attempt="1"),
    "attempt-true": job_body(attempt=True),
    "version-unknown": job_body(v=2),
    "version-missing": job_body(v=...),
    "version-a-string": job_body(v="1"),
    "message-id-not-text": job_body(message_id=12),
    "message-id-empty": job_body(message_id=""),
    "payload-not-text": job_body(payload=5),
    "payload-empty": job_body(payload=""),
    "sent-at-negative": job_body(sent_at_ms=-5),
    "sent-at-a-string": job_body(sent_at_ms="now"),
    "endpoint-not-text": job_body(endpoint=["https://x"]),
    "unknown-field": job_body(extra=1),
    "a-list": json.dumps([1, 2]),
    "null": "null",
}


@pytest.mark.parametrize("body", BAD_JOBS.values(), ids=BAD_JOBS.keys())
def test_a_malformed_job_is_refused(body: str) -> None:
    with pytest.raises(jobs.PoisonJob, match="not a delivery job"):
        jobs.DeliveryJob.from_body(body)


@pytest.mark.parametrize("body", ["[1, 2]", "null", '"abc"', "7"], ids=["a-list", "null", "a-string", "a-number"])
def test_json_that_is_not_an_object_reaches_the_dead_letter_queue_in_seconds(
    handler: Any, management: Any, workers: Any, queues: dict[str, str], body: str
) -> None:
    workers.send_raw(body)

    workers.drain()  # no time passes for SQS: the record must come back by itself, at once

    assert management.attempts == {}
    assert len(workers.invocations) == 5  # maxReceiveCount
    assert workers.count(queues["DeliveryQueue"]) == 0 and workers.count(queues["DeliveryDeadLetterQueue"]) == 1


def test_a_malformed_leave_check_is_logged_with_what_is_wrong_with_it(handler: Any, workers: Any, capsys: Any) -> None:
    workers.send_raw(json.dumps({"v": 1, "kind": "presence-leave", "channel": "lobby", "user": "x"}))  # no left_at, no endpoint

    workers.drain()

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    failures = [line["message"] for line in lines if line.get("level") == "ERROR" and "fails:" in line.get("message", "")]
    assert len(failures) == 5 and all(
        message.endswith("fails: not a presence check: a presence check must have exactly "
                         "['channel', 'endpoint', 'kind', 'left_at', 'user', 'v'] and v 1") for message in failures
    ), failures


def test_connections_abc_posts_to_nobody_and_reaches_the_dead_letter_queue_in_seconds(
    handler: Any, management: Any, workers: Any, queues: dict[str, str]
) -> None:
    workers.send_raw(job_body(connections="abc"))

    workers.drain()  # no time passes for SQS: the record must come back by itself, at once

    assert management.attempts == {}
    assert len(workers.invocations) == 5  # maxReceiveCount
    assert workers.count(queues["DeliveryQueue"]) == 0 and workers.count(queues["DeliveryDeadLetterQueue"]) == 1


def test_a_record_that_fails_otherwise_waits_for_the_visibility_timeout(
    handler: Any, workers: Any, queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The emulation applies the queue's visibility timeout: a failed record is not retried at
    once unless the worker says so (only a record that is not a job is)."""
    def crash(job: Any, context: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(worker, "deliver_job", crash)
    workers.send_raw(job_body())

    workers.drain()
    assert len(workers.invocations) == 1 and workers.count(queues["DeliveryQueue"]) == 1
    workers.advance(359)
    workers.drain()
    assert len(workers.invocations) == 1
    workers.advance(2)
    received = workers.sqs.receive_message(QueueUrl=queues["DeliveryQueue"]).get("Messages", [])
    assert len(received) == 1


def test_a_job_that_cannot_be_handed_back_fails_only_if_nothing_was_posted(
    handler: Any, slow_api: SlowApi, workers: Any, queues: dict[str, str], aws_failure: Any
) -> None:
    from botocore.exceptions import EndpointConnectionError

    queue_job(["d1", "d2"], slow_api.endpoint)
    received = workers.sqs.receive_message(QueueUrl=queues["DeliveryQueue"], AttributeNames=["All"])["Messages"]
    aws_failure(fanout.requeue_client(), "SendMessage", EndpointConnectionError(endpoint_url="x"))

    response = handler.deliver_messages(
        {"Records": [workers._record(received[0])]}, FakeLambdaContext(remaining_ms=worker.WORKER_RESERVE_MS - 1)
    )

    # Nobody has it yet: the record fails, and SQS gives it out again after its visibility timeout.
    assert response == {"batchItemFailures": [{"itemIdentifier": received[0]["MessageId"]}]}
    assert slow_api.counts() == Counter()


def test_a_job_that_cannot_be_handed_back_after_some_posts_is_still_done(
    handler: Any, slow_api: SlowApi, workers: Any, queues: dict[str, str], aws_failure: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    monkeypatch.setattr(delivery, "BROADCAST_CONCURRENCY", 1)
    monkeypatch.setattr(worker, "WORKER_RESERVE_MS", 1_000)
    slow_api.delay = 0.3  # one post at a time, 0.3 s each: 3 s for all ten
    ids = [f"e{n}" for n in range(10)]
    queue_job(ids, slow_api.endpoint)
    received = workers.sqs.receive_message(QueueUrl=queues["DeliveryQueue"], AttributeNames=["All"])["Messages"]
    aws_failure(fanout.requeue_client(), "SendMessage", EndpointConnectionError(endpoint_url="x"))

    response = handler.deliver_messages(
        {"Records": [workers._record(received[0])]}, FakeLambdaContext(remaining_ms=1_500)  # 0.5 s to post in
    )

    # Some have it: failing the record would post to them twice, so the rest miss it (logged).
    assert response == {"batchItemFailures": []}
    posted = slow_api.counts()
    assert 1 <= len(posted) < len(ids) and set(posted.values()) == {1}
