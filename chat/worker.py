"""The delivery worker: each SQS record is one job (one message for one batch of connections),
posted at the workers' share of the account's posting budget."""

from __future__ import annotations

import os
import time
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chat import aws, delivery, fanout, sessions
from chat.fanout import DeliveryJob, PoisonJob
from chat.telemetry import logger, milliseconds

# Posts per second that all delivery workers together may make (API Gateway's account limit
# is 10,000 requests/s for every API and @connections call in the account and region), and
# how many workers run at once (the SQS event source's maximumConcurrency): each worker posts
# at most POSTING_BUDGET_PER_SECOND / DELIVERY_CONCURRENCY a second.
POSTING_BUDGET_PER_SECOND = float(os.environ.get("POSTING_BUDGET_PER_SECOND", "5000"))
DELIVERY_CONCURRENCY = int(os.environ.get("DELIVERY_CONCURRENCY", "5"))
# Throttled posts are tried this many times in all within one invocation, then queued again;
# a job is tried MAX_DELIVERY_ATTEMPTS times before its failures are given up.
WORKER_THROTTLE_ROUNDS = 4
MAX_DELIVERY_ATTEMPTS = 4
# A worker starts a job only with this much time left, so it never stops half-way through.
WORKER_RESERVE_MS = 15_000


class NotStarted(RuntimeError):
    """Too little time left to deliver this job: it goes back to the queue untouched."""


_batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver_batch(event: dict, context: Any) -> dict[str, Any]:
    """Powertools reports the records that failed, and SQS retries only those."""
    return process_partial_response(event=event, record_handler=deliver_record, processor=_batch_processor, context=context)


def deliver_record(record: SQSRecord, lambda_context: Any = None) -> None:
    try:
        deliver_job(DeliveryJob.from_body(record.body), lambda_context)
    except PoisonJob as error:
        logger.error("Record %s (receive %s) fails: %s", record.message_id, record.attributes.approximate_receive_count, error)
        raise
    except NotStarted as error:
        logger.warning("Record %s goes back to the queue untouched: %s", record.message_id, error)
        raise
    except Exception:
        logger.exception("Record %s fails", record.message_id)
        raise


def deliver_job(job: DeliveryJob, lambda_context: Any = None) -> None:
    """Deliver one job. Once posting has started the record never fails (a retry of the whole
    record would post twice to the connections already served): the connections that failed
    are queued again, alone, as a new job."""
    started = time.perf_counter()
    deadline = None
    if lambda_context is not None:
        spare_ms = lambda_context.get_remaining_time_in_millis() - WORKER_RESERVE_MS
        if spare_ms < 0:
            raise NotStarted(f"only {spare_ms + WORKER_RESERVE_MS} ms left")
        deadline = time.monotonic() + spare_ms / 1000
    outcomes = delivery.deliver(
        job.endpoint, job.connections, job.payload, rounds=WORKER_THROTTLE_ROUNDS, pace=worker_pacer(), deadline=deadline,
    )
    sessions.forget(delivery.gone(outcomes))
    failed = tuple(cid for cid, outcome in outcomes.items() if outcome in (delivery.FAILED, delivery.THROTTLED))
    logger.info("Delivery of %s (attempt %d)", job.message_id, job.attempt, **delivery.summary(outcomes))
    milliseconds("DeliveryJobDuration", (time.perf_counter() - started) * 1000)
    if job.sent_at_ms:
        milliseconds("DeliveryLag", max(0, time.time() * 1000 - job.sent_at_ms))
    if failed:
        retry_failed(job, failed)


def retry_failed(job: DeliveryJob, failed: tuple[str, ...]) -> None:
    """Queue the failed connections again, after a delay that grows with each attempt."""
    if job.attempt >= MAX_DELIVERY_ATTEMPTS:
        logger.error("Gave up delivering %s to %d connections after %d attempts", job.message_id, len(failed), job.attempt)
        return
    retry = DeliveryJob(job.message_id, job.endpoint, job.payload, failed, job.attempt + 1, job.sent_at_ms)
    try:
        fanout.requeue(retry, retry_delay_seconds(job.attempt))
    except aws.AWS_ERRORS:
        logger.exception("Could not queue %s again for %d connections; they miss it", job.message_id, len(failed))


def retry_delay_seconds(attempt: int) -> int:
    """How long a job's failed connections wait in the queue: 10 s, 20 s, 40 s (SQS: <= 900)."""
    return min(900, 5 * 2**attempt)


@lru_cache(maxsize=None)
def worker_pacer() -> delivery.Pacer:
    return delivery.Pacer(POSTING_BUDGET_PER_SECOND / DELIVERY_CONCURRENCY)
