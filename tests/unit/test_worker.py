"""The delivery worker's retries as a client meets them: a connection whose post failed is tried
again after a wait that grows with each attempt (10 s, 20 s, 40 s), not at once and not never;
the ones served are not posted to again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from chat import fanout, jobs, worker
from chat.fanout import retry_delay_seconds as real_retry_delay_seconds  # the handler fixture sets it to 0
from tests.support.lambda_sqs import FakeLambdaContext
from tests.support.events import MANAGEMENT_ENDPOINT


def test_a_failed_post_is_tried_again_after_10_then_20_then_40_seconds(
    handler: Any, management: Any, workers: Any, queues: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fanout, "retry_delay_seconds", real_retry_delay_seconds)
    management.answer("bad", 500)  # every post to it fails (it may have landed: never retried at once)
    fanout.enqueue([jobs.DeliveryJob("m" * 32, MANAGEMENT_ENDPOINT, b"hello", ("good", "bad"))])

    workers.drain()
    assert management.received("good") == ["hello"] and management.attempts["bad"] == 1

    for attempt, delay in ((2, 10), (3, 20), (4, 40)):
        workers.advance(delay - 2)
        workers.drain()
        assert management.attempts["bad"] == attempt - 1, f"attempt {attempt} came before its {delay} s"
        workers.advance(3)
        workers.drain()
        assert management.attempts["bad"] == attempt, f"attempt {attempt} did not come after {delay} s"

    workers.advance(900)
    workers.drain()
    assert management.attempts["bad"] == worker.MAX_DELIVERY_ATTEMPTS  # then given up
    assert management.received("good") == ["hello"]
    assert workers.count(queues["DeliveryQueue"]) == 0 and workers.count(queues["DeliveryDeadLetterQueue"]) == 0


def test_a_connection_the_worker_finds_gone_leaves_its_channels_with_a_leave(
    handler: Any, management: Any, connect: Any, workers: Any, clock: list[float]
) -> None:
    from chat import presence
    from tests.support.events import action_body, message_event

    connect("carol-1", user="carol")
    connect("dave-1", user="dave")
    for connection_id, user in (("carol-1", "carol"), ("dave-1", "dave")):
        assert handler.join(message_event(connection_id, action_body("join", channel="lobby"), "join", user), None)["statusCode"] == 200
    management.answer("dave-1", 410)  # gone, and no $disconnect came
    clock[0] += 60  # past the handshake window

    fanout.enqueue([jobs.DeliveryJob("m" * 32, MANAGEMENT_ENDPOINT, b"hello", ("dave-1",))])
    workers.drain()
    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()

    changes = [frame["presenceChange"] for frame in management.received("carol-1") if "presenceChange" in frame]
    assert [(change["user"], change["state"]) for change in changes] == [("carol", "enter"), ("dave", "enter"), ("dave", "leave")]
    assert workers.count(workers.dead_letters) == 0


def test_a_job_delivered_without_a_lambda_context_has_no_deadline(handler: Any, management: Any) -> None:
    worker.deliver_job(jobs.DeliveryJob("m" * 32, MANAGEMENT_ENDPOINT, b"hello", ("a", "b")))

    assert management.received("a") == ["hello"] and management.received("b") == ["hello"]


@pytest.fixture
def still_monotonic(handler: Any, monkeypatch: pytest.MonkeyPatch) -> float:
    """time.monotonic() standing still: the time a context says is left stays exactly that."""
    frozen = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: frozen)
    return frozen


@pytest.mark.parametrize(("beyond_the_reserve_ms", "posted"), [(1, True), (0, False)])
def test_a_worker_posts_only_with_more_than_its_reserve_left_to_the_millisecond(
    handler: Any, management: Any, workers: Any, still_monotonic: float, beyond_the_reserve_ms: int, posted: bool
) -> None:
    job = jobs.DeliveryJob("m" * 32, MANAGEMENT_ENDPOINT, b"hello", ("a",))

    worker.deliver_job(job, FakeLambdaContext(remaining_ms=worker.WORKER_RESERVE_MS + beyond_the_reserve_ms))

    assert management.received("a") == (["hello"] if posted else [])
    assert [j.connections for j in workers.pending_jobs()] == ([] if posted else [("a",)])  # handed back


@pytest.mark.parametrize(("left_ms", "deleted"), [(worker.PRUNE_RESERVE_MS + 1, True), (worker.PRUNE_RESERVE_MS, False)])
def test_a_worker_deletes_gone_rows_only_with_more_than_the_prune_reserve_left(
    handler: Any, management: Any, connect: Any, table: Any, frozen_clock: list[float], still_monotonic: float,
    monkeypatch: pytest.MonkeyPatch, left_ms: int, deleted: bool,
) -> None:
    monkeypatch.setattr(worker, "WORKER_RESERVE_MS", 1_000)  # time to post with only seconds left
    connect("gone-1", user="dave")
    frozen_clock[0] += 60  # past the handshake window
    management.answer("gone-1", 410)  # no $disconnect came

    worker.deliver_job(jobs.DeliveryJob("m" * 32, MANAGEMENT_ENDPOINT, b"hello", ("gone-1",)), FakeLambdaContext(remaining_ms=left_ms))

    assert management.attempts == {"gone-1": 1}
    assert ("Item" in table.get_item(Key={"connection_id": "gone-1"})) is not deleted  # kept: the next 410 finds it
