"""The fan-out path: rooms above FANOUT_THRESHOLD go through SQS to the delivery workers."""

from __future__ import annotations

import json
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from chat import connections, delivery, fanout, jobs, rounds, worker
from tests.support.lambda_sqs import FakeLambdaContext
from tests.support.events import MANAGEMENT_ENDPOINT, message_event, send_message_body
from tests.support.helpers import queue_depth

SENT_OK = {"statusCode": 200, "body": "Message sent to all connections."}


@pytest.fixture
def small_rooms(handler: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Fan out above 10 connections, 25 to a job, so tests stay small."""
    monkeypatch.setattr(fanout, "FANOUT_THRESHOLD", 10)
    monkeypatch.setattr(fanout, "DELIVERY_BATCH_SIZE", 25)
    return handler


def add_connections(table: Any, count: int, padding: int = 0, prefix: str = "conn") -> list[str]:
    ids = [f"{prefix}-{n:05d}" for n in range(count)]
    with table.batch_writer() as batch:
        for connection_id in ids:
            batch.put_item(Item={"connection_id": connection_id, "ttl": 2_000_000_000, **({"padding": "p" * padding} if padding else {})})
    return ids


def say(handler: Any, text: str, sender: str = "conn-00000") -> dict[str, Any]:
    return handler.send_message(message_event(sender, send_message_body(text)), None)


def frames(management: Any, connection_id: str) -> list[Any]:
    return management.received(connection_id)


# --- which path -----------------------------------------------------------------------------


def test_a_room_at_the_threshold_is_posted_inline_and_nothing_is_queued(
    small_rooms: Any, management: Any, table: Any, workers: Any
) -> None:
    ids = add_connections(table, 10)

    assert say(small_rooms, "inline") == SENT_OK

    assert workers.pending_jobs() == []
    assert all(frames(management, cid) == [{"messages": [{"content": "inline"}]}] for cid in ids)


def test_a_room_above_the_threshold_is_queued_for_the_workers_not_posted_by_the_sender(
    small_rooms: Any, management: Any, table: Any, workers: Any
) -> None:
    ids = add_connections(table, 11)

    assert say(small_rooms, "fan-out") == SENT_OK

    assert management.attempts == {}  # the sender posted nothing itself
    (job,) = workers.pending_jobs()
    assert sorted(job.connections) == ids and job.attempt == 1
    assert json.loads(job.payload) == {"messages": [{"content": "fan-out"}]}
    assert job.endpoint == MANAGEMENT_ENDPOINT


def test_jobs_cover_every_connection_exactly_once_across_scan_pages(
    small_rooms: Any, management: Any, table: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "DELIVERY_BATCH_SIZE", 100)
    ids = add_connections(table, 700, padding=5000)  # about 3.5 MB: several 1 MB Scan pages
    pages: list[int] = []
    table_client = connections.table().meta.client
    table_client.meta.events.register("after-call.dynamodb.Scan", lambda parsed, **_: pages.append(parsed["Count"]))

    assert say(small_rooms, "all pages") == SENT_OK

    jobs = workers.pending_jobs()
    assert len(pages) >= 3 and sum(pages[1:]) == 700  # the first: is it small? (at most 11 read)
    assert pages[0] <= fanout.FANOUT_THRESHOLD + 1
    assert all(len(job.connections) <= 100 for job in jobs) and len(jobs) == 7
    covered = Counter(cid for job in jobs for cid in job.connections)
    assert set(covered) == set(ids) and set(covered.values()) == {1}


def test_the_workers_deliver_one_copy_to_every_connection_and_the_queue_ends_empty(
    small_rooms: Any, management: Any, table: Any, workers: Any, queues: dict[str, str]
) -> None:
    ids = add_connections(table, 260)

    assert say(small_rooms, "서버리스 웹소켓 API 테스트") == SENT_OK
    workers.drain()

    assert {cid: management.attempts.get(cid) for cid in ids} == dict.fromkeys(ids, 1)
    assert all(frames(management, cid) == [{"messages": [{"content": "서버리스 웹소켓 API 테스트"}]}] for cid in ids)
    assert workers.count(queues["DeliveryQueue"]) == 0 and workers.count(queues["DeliveryDeadLetterQueue"]) == 0
    assert all(response == {"batchItemFailures": []} for response in workers.invocations)


def test_the_frame_is_carried_byte_for_byte_even_with_characters_sqs_refuses(
    small_rooms: Any, management: Any, table: Any, workers: Any
) -> None:
    ids = add_connections(table, 12)
    content = "끝\uffff\u0000 \"quoted\" 🙂"  # U+FFFF is not allowed in an SQS message body

    assert say(small_rooms, content) == SENT_OK
    workers.drain()

    assert all(frames(management, cid) == [{"messages": [{"content": content}]}] for cid in ids)


def test_jobs_are_sent_at_most_ten_and_256_kb_to_a_batch(
    small_rooms: Any, management: Any, table: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_connections(table, 300)
    batches: list[tuple[int, int]] = []
    sqs = fanout.sqs_client()
    sqs.meta.events.register(
        "before-parameter-build.sqs.SendMessageBatch",
        lambda params, **_: batches.append((len(params["Entries"]), sum(len(e["MessageBody"]) for e in params["Entries"]))),
    )

    assert say(small_rooms, "small") == SENT_OK  # 12 jobs of a few hundred bytes: 10 + 2
    assert sorted(count for count, _ in batches) == [2, 10]
    batches.clear()
    time.sleep(rounds.interval_ms() / 1000)  # a round of its own, from the send (not the next round's)
    assert say(small_rooms, "x" * 90_000) == SENT_OK  # 12 jobs of about 120 KB (base64): 2 a batch
    assert sorted(count for count, _ in batches) == [2] * 6
    assert all(size <= 256 * 1024 for _, size in batches)


# --- retries ------------------------------------------------------------------------------


def test_a_failed_connection_is_retried_alone_and_nobody_gets_a_second_copy(
    small_rooms: Any, management: Any, table: Any, workers: Any, queues: dict[str, str]
) -> None:
    ids = add_connections(table, 60)
    management.answer("conn-00007", 500, "InternalServerError", times=1)
    management.answer("conn-00042", 403, "ForbiddenException", times=2)

    assert say(small_rooms, "once each") == SENT_OK
    workers.drain()

    expected_attempts = {cid: 1 for cid in ids} | {"conn-00007": 2, "conn-00042": 3}
    assert {cid: management.attempts.get(cid) for cid in ids} == expected_attempts
    assert all(frames(management, cid) == [{"messages": [{"content": "once each"}]}] for cid in ids)
    assert workers.count(queues["DeliveryQueue"]) == 0


def test_a_connection_that_keeps_failing_is_given_up_after_the_last_attempt(
    small_rooms: Any, management: Any, table: Any, workers: Any, queues: dict[str, str], caplog: Any
) -> None:
    add_connections(table, 20)
    management.answer("conn-00003", 403, "ForbiddenException")  # botocore does not retry a 403

    say(small_rooms, "try hard")
    workers.drain()

    assert management.attempts["conn-00003"] == worker.MAX_DELIVERY_ATTEMPTS
    assert "Gave up delivering" in caplog.text and "to 1 connections after 4 attempts" in caplog.text
    assert workers.count(queues["DeliveryQueue"]) == 0 and workers.count(queues["DeliveryDeadLetterQueue"]) == 0


def test_an_inline_post_that_failed_goes_to_the_workers_and_nobody_gets_a_second_copy(
    small_rooms: Any, management: Any, table: Any, workers: Any, queues: dict[str, str]
) -> None:
    """A small room is posted to by the sender; a post that timed out or answered 5xx there is
    handed to the workers as a failed job's connections are, not dropped (CI lost one this way:
    a 3 s read timeout on a loaded machine, and the reader never saw seq 1 live)."""
    ids = add_connections(table, 5)
    management.answer("conn-00003", 500, "InternalServerError", times=1)

    assert say(small_rooms, "small and sure") == SENT_OK
    (job,) = workers.pending_jobs()
    assert job.connections == ("conn-00003",) and job.attempt == 2
    workers.drain()

    expected_attempts = {cid: 1 for cid in ids} | {"conn-00003": 2}
    assert {cid: management.attempts.get(cid) for cid in ids} == expected_attempts
    assert all(frames(management, cid) == [{"messages": [{"content": "small and sure"}]}] for cid in ids)
    assert workers.count(queues["DeliveryQueue"]) == 0


def test_retries_wait_longer_each_time() -> None:

    assert [fanout.retry_delay_seconds(attempt) for attempt in (1, 2, 3, 8)] == [10, 20, 40, 900]


# botocore makes one attempt per post (a retried post may land twice): throttled posts are
# tried again only by the handler's own rounds, after a backoff.
BOTOCORE_ATTEMPTS = 1


@pytest.mark.parametrize("code", ["LimitExceededException", "ThrottlingException", "TooManyRequestsException", None])
def test_throttled_posts_are_retried_with_backoff_in_the_same_invocation(
    small_rooms: Any, management: Any, table: Any, workers: Any, monkeypatch: pytest.MonkeyPatch, code: str | None
) -> None:
    ids = add_connections(table, 30)
    # The backoff's wait, recognisable among the pacer's; recorded, not slept.
    wait = 0.0123456
    monkeypatch.setattr(delivery, "backoff", lambda attempt: wait)
    sleeps: list[float] = []
    monkeypatch.setattr(delivery, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleeps.append))
    for cid in ids[:5]:
        management.answer(cid, 429, code, times=BOTOCORE_ATTEMPTS)  # the first call fails, the next succeeds

    say(small_rooms, "slow down")
    workers.drain()

    assert all(frames(management, cid) == [{"messages": [{"content": "slow down"}]}] for cid in ids)
    # A second round for the throttled ones only, after the backoff's wait.
    assert {cid: management.attempts[cid] for cid in ids} == {cid: BOTOCORE_ATTEMPTS + 1 if cid in ids[:5] else 1 for cid in ids}
    assert wait in sleeps
    assert len(workers.invocations) == 1  # both jobs in one invocation: nothing was queued again


def test_the_backoff_between_throttled_rounds_is_full_jitter_doubling_to_two_seconds() -> None:
    # The test above replaces delivery.backoff (and the handler fixture makes it 0): this one
    # checks the wait itself, so a backoff of 0 (retrying a throttled post at once) fails here.
    for attempt, ceiling in ((0, 0.2), (1, 0.4), (2, 0.8), (3, 1.6), (4, 2.0), (9, 2.0)):
        waits = [delivery.backoff(attempt) for _ in range(400)]
        assert all(0 <= wait <= ceiling for wait in waits), (attempt, max(waits))
        # Spread over the whole range (full jitter): each bound fails by chance with p < 1e-49.
        assert max(waits) > 0.75 * ceiling and min(waits) < 0.25 * ceiling, (attempt, min(waits), max(waits))


def test_posts_throttled_beyond_the_rounds_are_queued_again(
    small_rooms: Any, management: Any, table: Any, workers: Any
) -> None:
    ids = add_connections(table, 12)
    management.answer("conn-00001", 429, None, times=worker.WORKER_THROTTLE_ROUNDS * BOTOCORE_ATTEMPTS)

    say(small_rooms, "later")
    workers.drain()

    assert all(frames(management, cid) == [{"messages": [{"content": "later"}]}] for cid in ids)
    assert len(workers.invocations) == 2  # the second: the throttled connection's job, alone


def test_the_inline_path_retries_throttled_posts_too(
    handler: Any, management: Any, table: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = add_connections(table, 5)
    management.answer(ids[2], 429, None, times=BOTOCORE_ATTEMPTS)

    assert say(handler, "inline, throttled") == SENT_OK

    assert frames(management, ids[2]) == [{"messages": [{"content": "inline, throttled"}]}]


# --- gone connections, poison records, time --------------------------------------------------


def test_workers_prune_gone_connections_and_keep_the_others(
    small_rooms: Any, management: Any, table: Any, workers: Any
) -> None:
    ids = add_connections(table, 90)
    gone = set(ids[::4])
    for cid in gone:
        management.answer(cid, 410, "GoneException" if ids.index(cid) % 8 else None)

    say(small_rooms, "who is here")
    workers.drain()

    remaining = {item["connection_id"] for item in table.scan()["Items"]}
    assert remaining == set(ids) - gone
    assert all(management.attempts[cid] == 1 for cid in gone)  # posted once, then pruned


def test_pruning_that_fails_is_logged_and_does_not_fail_the_job(
    small_rooms: Any, management: Any, table: Any, workers: Any, aws_failure: Any, caplog: Any
) -> None:
    ids = add_connections(table, 15)
    management.answer(ids[4], 410)
    aws_failure(connections.prune_table().meta.client, "DeleteItem", EndpointConnectionError(endpoint_url="x"))

    say(small_rooms, "prune later")
    workers.drain()

    assert workers.invocations and all(r == {"batchItemFailures": []} for r in workers.invocations)
    assert "Could not delete 1 gone connections" in caplog.text
    assert all(management.attempts[cid] == 1 for cid in ids)


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        '{"v": 1}',
        json.dumps({"message_id": "m", "endpoint": "https://x", "payload": "%%%", "connections": ["a"], "attempt": 1}),
        json.dumps({"message_id": "m", "endpoint": "ftp://x", "payload": "", "connections": ["a"], "attempt": 1}),
        json.dumps({"message_id": "m", "endpoint": "https://x", "payload": "", "connections": [], "attempt": 1}),
        json.dumps({"message_id": "m", "endpoint": "https://x", "payload": "", "connections": [7], "attempt": 1}),
    ],
    ids=["not-json", "no-fields", "bad-base64", "bad-endpoint", "no-connections", "bad-connection"],
)
def test_a_poison_record_ends_in_the_dead_letter_queue_after_five_receives(
    handler: Any, management: Any, table: Any, workers: Any, queues: dict[str, str], caplog: Any, body: str
) -> None:
    add_connections(table, 3)
    workers.send_raw(body)

    workers.drain()

    assert len(workers.invocations) == 5  # maxReceiveCount in serverless.yml
    assert all(len(r["batchItemFailures"]) == 1 for r in workers.invocations)
    assert workers.count(queues["DeliveryQueue"]) == 0
    (dead,) = boto3.client("sqs").receive_message(QueueUrl=queues["DeliveryDeadLetterQueue"])["Messages"]
    assert dead["Body"] == body
    assert management.attempts == {}
    assert "not a delivery job" in caplog.text


def test_a_good_record_beside_a_poison_one_is_delivered_once(
    small_rooms: Any, management: Any, table: Any, workers: Any, queues: dict[str, str]
) -> None:
    ids = add_connections(table, 12)
    workers.send_raw("poison")
    say(small_rooms, "fine")

    workers.drain()

    assert all(frames(management, cid) == [{"messages": [{"content": "fine"}]}] for cid in ids)
    assert workers.count(queues["DeliveryDeadLetterQueue"]) == 1


def test_a_worker_short_of_time_hands_the_job_back_untouched_and_visible_at_once(
    small_rooms: Any, management: Any, table: Any, workers: Any, queues: dict[str, str]
) -> None:
    ids = add_connections(table, 12)
    say(small_rooms, "not now")

    received = boto3.client("sqs").receive_message(QueueUrl=queues["DeliveryQueue"], AttributeNames=["All"])["Messages"]
    event = {"Records": [workers._record(received[0])]}
    response = small_rooms.deliver_messages(event, FakeLambdaContext(remaining_ms=worker.WORKER_RESERVE_MS - 1))

    assert response == {"batchItemFailures": []}  # done: the job itself is queued again
    assert management.attempts == {}
    workers.sqs.delete_message(QueueUrl=queues["DeliveryQueue"], ReceiptHandle=received[0]["ReceiptHandle"])
    workers.drain()  # no time passes for SQS
    assert all(frames(management, cid) == [{"messages": [{"content": "not now"}]}] for cid in ids)


def test_queueing_a_retry_that_fails_is_logged_and_nobody_gets_a_second_copy(
    small_rooms: Any, management: Any, table: Any, workers: Any, aws_failure: Any, caplog: Any
) -> None:
    ids = add_connections(table, 12)
    management.answer(ids[5], 403, "ForbiddenException", times=1)
    say(small_rooms, "best effort")
    aws_failure(fanout.requeue_client(), "SendMessage", EndpointConnectionError(endpoint_url="x"))

    workers.drain()

    assert "Could not queue" in caplog.text and "for 1 connections; they miss it" in caplog.text
    assert all(management.attempts[cid] == 1 for cid in ids)  # the others were not posted to again
    assert frames(management, ids[5]) == []


def test_when_the_queue_cannot_be_reached_the_sender_learns_the_message_was_stored_not_delivered(
    small_rooms: Any, management: Any, table: Any, messages: Any, aws_failure: Any
) -> None:
    """Measured before: a 500 after the message was stored, and the client's retry doubled it."""
    add_connections(table, 20)
    aws_failure(fanout.sqs_client(), "SendMessageBatch", EndpointConnectionError(endpoint_url="x"))

    response = say(small_rooms, "lost?")

    assert response["statusCode"] == 200
    assert response["body"] == ("Message stored as seq 1, but not delivered to everyone: do not send it again; "
                                "it is in the room's history.")
    assert [item["seq"] for item in messages.scan()["Items"]] == [1]


# --- the posting budget -------------------------------------------------------------------


def test_a_worker_posts_at_most_its_share_of_the_posting_budget(
    handler: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "POSTING_BUDGET_PER_SECOND", 400.0)
    monkeypatch.setattr(worker, "DELIVERY_CONCURRENCY", 4)
    pacer = worker.worker_pacer()

    started = time.monotonic()
    for _ in range(51):
        pacer.wait()
    elapsed = time.monotonic() - started

    assert pacer.interval == pytest.approx(1 / 100)  # 400/s shared by 4 workers
    assert 0.45 <= elapsed < 1.0  # 50 intervals of 10 ms


def test_the_worker_paces_its_posts(
    small_rooms: Any, management: Any, table: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker, "POSTING_BUDGET_PER_SECOND", 200.0)
    monkeypatch.setattr(worker, "DELIVERY_CONCURRENCY", 2)  # 100 posts/s for this worker
    add_connections(table, 40)
    say(small_rooms, "paced")

    started = time.monotonic()
    workers.drain()

    assert time.monotonic() - started >= 0.35  # 40 posts at 100/s


def test_a_job_as_large_as_a_job_may_be_is_read_back_whole() -> None:
    ids = tuple(f"c{n}" for n in range(jobs.MAX_JOB_CONNECTIONS))
    job = jobs.DeliveryJob("m1", MANAGEMENT_ENDPOINT, b"hi", ids)

    assert jobs.DeliveryJob.from_body(job.to_body()) == job


def test_queueing_a_job_again_is_a_bounded_call(handler: Any, queues: dict[str, str]) -> None:
    # The worker requeues near the end of its invocation: it must always end in time.
    config = fanout.requeue_client().meta.config

    assert (config.connect_timeout, config.read_timeout, config.retries) == (2, 3, {"mode": "standard", "total_max_attempts": 2})


def job_document(**changes: Any) -> dict[str, Any]:
    document = json.loads(jobs.DeliveryJob("m1", MANAGEMENT_ENDPOINT, b"hi", ("c1",), sent_at_ms=5).to_body())
    document.update(changes)
    return {name: value for name, value in document.items() if value is not None}


def test_a_job_queued_before_jobs_carried_their_send_time_is_still_delivered() -> None:
    job = jobs.DeliveryJob.from_body(json.dumps(job_document(sent_at_ms=None)))  # an older version's job

    assert (job.connections, job.payload, job.sent_at_ms) == (("c1",), b"hi", 0)


def test_a_job_whose_payload_is_not_strictly_base64_is_poison() -> None:
    with pytest.raises(jobs.PoisonJob):
        jobs.DeliveryJob.from_body(json.dumps(job_document(payload="aGk=!")))  # "hi", and a stray "!"


def test_jobs_sqs_did_not_take_are_sent_again_and_a_batch_that_keeps_failing_raises(
    handler: Any, queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    client, sent = fanout.sqs_client(), []
    real = client.send_message_batch

    def first_entry_fails(times: int, sender_fault: bool = False) -> Any:
        def send(**kwargs: Any) -> dict[str, Any]:
            sent.append(len(kwargs["Entries"]))
            if len(sent) <= times:  # SQS took all but the first (a fault on its side)
                rest = kwargs["Entries"][1:]
                answer = real(**{**kwargs, "Entries": rest}) if rest else {"Successful": []}
                return {**answer, "Failed": [{"Id": kwargs["Entries"][0]["Id"], "SenderFault": sender_fault, "Code": "InternalError"}]}
            return real(**kwargs)
        return send

    monkeypatch.setattr(client, "send_message_batch", first_entry_fails(times=1))
    queued = [jobs.DeliveryJob(f"m{n}", MANAGEMENT_ENDPOINT, b"hi", (f"c{n}",)) for n in range(3)]
    assert fanout.enqueue(queued) == {"queued": 3, "jobs": 3}
    assert sent == [3, 1] and queue_depth(boto3.client("sqs"), queues["DeliveryQueue"]) == 3

    sent.clear()
    monkeypatch.setattr(client, "send_message_batch", first_entry_fails(times=10))
    with pytest.raises(ClientError) as raised:
        fanout.enqueue(queued)
    assert raised.value.response["Error"] == {"Code": "SendMessageBatchFailed", "Message": "entries still failing"}
    assert raised.value.operation_name == "SendMessageBatch" and sent == [3, 1, 1]  # three tries in all

    sent.clear()  # the entry itself is at fault: sending it again cannot help
    monkeypatch.setattr(client, "send_message_batch", first_entry_fails(times=1, sender_fault=True))
    with pytest.raises(ClientError) as raised:
        fanout.enqueue(queued)
    assert raised.value.response["Error"] == {"Code": "SendMessageBatchFailed",
                                              "Message": "[{'Id': '0', 'SenderFault': True, 'Code': 'InternalError'}]"}
    assert raised.value.operation_name == "SendMessageBatch" and sent == [3]


# --- admission by the workers' backlog (issue 28) ---------------------------------------------------


def test_over_the_backlog_bound_a_room_message_is_refused_unstored_and_a_dm_still_goes(
    small_rooms: Any, management: Any, table: Any, workers: Any, messages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.support.actions import dm_response

    monkeypatch.setattr(fanout, "BACKLOG_READ_SECONDS", 0.0)
    monkeypatch.setattr(fanout, "POSTING_BUDGET_PER_SECOND", 25.0)
    monkeypatch.setattr(fanout, "MAX_BACKLOG_SECONDS", 3.0)  # 3 s x 25 posts/s: 3 jobs of 25
    add_connections(table, 60)
    assert say(small_rooms, "queued one") == SENT_OK  # 3 jobs: 3 s of work, at the bound
    assert say(small_rooms, "queued two") == SENT_OK  # 6 jobs now: over it

    refused = say(small_rooms, "one too many")
    assert refused["statusCode"] == 429
    assert "delivering a backlog" in refused["body"] and "was not stored" in refused["body"]
    stored = [json.loads(item["content_json"]) for item in messages.scan()["Items"]]
    assert "one too many" not in stored and "queued two" in stored
    assert dm_response(small_rooms, "alice", "bob", "a DM is not held up")["statusCode"] == 200

    workers.drain()  # the workers catch up: admitted again
    assert say(small_rooms, "after the backlog") == SENT_OK


def test_a_queue_that_cannot_be_read_admits(small_rooms: Any, table: Any, workers: Any, aws_failure: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fanout, "MAX_BACKLOG_SECONDS", 0.001)
    aws_failure(fanout.sqs_client(), "GetQueueAttributes", EndpointConnectionError(endpoint_url="https://sqs"))
    add_connections(table, 3)
    assert say(small_rooms, "delivery decides") == SENT_OK
