"""The delivery worker: each SQS record is one job (one message for one batch of connections),
posted at the workers' share of the account's posting budget; or a presence leave check, events
for EventBridge, or a busy conversation's next round (chat/rounds.py)."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from functools import cache
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from chat import aws, channels, delivery, events, fanout, jobs, rounds, sessions
from chat.jobs import DeliveryJob, PoisonJob
from chat.telemetry import logger, milliseconds

# Posts per second that all delivery workers together may make (API Gateway's account limit
# is 10,000 requests/s for every API and @connections call in the account and region), and
# how many workers run at once (the SQS event source's maximumConcurrency): each worker posts
# at most POSTING_BUDGET_PER_SECOND / DELIVERY_CONCURRENCY a second.
POSTING_BUDGET_PER_SECOND = fanout.POSTING_BUDGET_PER_SECOND
DELIVERY_CONCURRENCY = int(os.environ.get("DELIVERY_CONCURRENCY", "5"))
# Throttled posts are tried this many times in all within one invocation, then queued again;
# a job is tried MAX_DELIVERY_ATTEMPTS times before its failures are given up.
WORKER_THROTTLE_ROUNDS = 6
MAX_DELIVERY_ATTEMPTS = jobs.MAX_DELIVERY_ATTEMPTS
# No post starts with less than this left of the invocation: the last post (at most 5 s:
# delivery.POST_*_TIMEOUT_SECONDS, one attempt), queueing again what was not posted (at most
# 10 s: fanout.REQUEUE_CLIENT_CONFIG) and the log line must fit in it, so that Lambda never
# kills a worker half-way (SQS would then deliver the whole record again, and everyone
# already served would get the message twice).
WORKER_RESERVE_MS = 20_000
# Gone rows are deleted only while this much is left (each delete: connections.PRUNE_CLIENT_CONFIG).
PRUNE_RESERVE_MS = 4_000


_batch_processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def deliver_batch(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Powertools reports the records that failed, and SQS retries only those."""
    return dict(
        process_partial_response(
            event=event, record_handler=deliver_record, processor=_batch_processor, context=context
        )
    )


def deliver_record(record: SQSRecord, lambda_context: Any = None) -> None:
    """One record: a job is delivered (in part, the rest queued again) and the record reported
    done; a presence leave check is confirmed (and the leave announced); a record that is
    neither fails, and is made visible again at once, so that it reaches the dead-letter queue
    after maxReceiveCount receives within seconds."""
    try:
        found = jobs.parse(record.body)
    except PoisonJob as error:
        logger.error(
            "Record %s (receive %s) fails: %s", record.message_id, record.attributes.approximate_receive_count, error
        )
        _release(record)
        raise
    if isinstance(found, jobs.LeaveCheck):
        channels.confirm_leave(found)
        return
    if isinstance(found, jobs.EventsJob):
        events.put(list(found.entries))  # what still fails fails the record: SQS sends it again
        return
    if isinstance(found, jobs.RoundJob):
        rounds.resume(found)  # a failure fails the record: SQS sends it again, to the same holder
        return
    try:
        deliver_job(found, lambda_context)
    except Exception:
        logger.exception("Record %s fails", record.message_id)
        raise


def _release(record: SQSRecord) -> None:
    try:
        fanout.release(record.receipt_handle)
    except aws.AWS_ERRORS:
        logger.exception(
            "Could not make record %s visible again; it returns after the visibility timeout", record.message_id
        )


def deliver_job(job: DeliveryJob, lambda_context: Any = None) -> None:
    """Deliver one job, checking the time before every post. What there is no time for is
    queued again, untouched, as a job of its own (visible at once); the connections whose post
    failed are queued again after a delay. The record itself never fails once this starts: a
    retry of the whole record would post twice to the connections already served. No post is
    both made and queued again: a connection is either posted to or handed on."""
    started = time.perf_counter()
    ends_at = _ends_at(lambda_context)
    deadline = None if ends_at is None else ends_at - WORKER_RESERVE_MS / 1000
    if deadline is not None and time.monotonic() >= deadline:
        outcomes = dict.fromkeys(job.connections, delivery.UNSENT)  # not started at all
    else:
        outcomes = delivery.deliver(
            job.endpoint,
            job.connections,
            job.payload,
            rounds=WORKER_THROTTLE_ROUNDS,
            pace=worker_pacer(),
            deadline=deadline,
        )
    unsent = tuple(cid for cid, outcome in outcomes.items() if outcome == delivery.UNSENT)
    failed = tuple(cid for cid, outcome in outcomes.items() if outcome in delivery.RETRIABLE)
    if unsent:
        hand_back(job, unsent, posted_any=len(unsent) < len(outcomes))
    if failed:
        fanout.retry_failed(job, failed)
    sessions.forget(
        delivery.gone(outcomes), job.endpoint, deadline=None if ends_at is None else ends_at - PRUNE_RESERVE_MS / 1000
    )
    logger.info("Delivery of %s (attempt %d)", job.message_id, job.attempt, extra=delivery.summary(outcomes))
    milliseconds("DeliveryJobDuration", (time.perf_counter() - started) * 1000)
    if job.sent_at_ms:
        milliseconds("DeliveryLag", max(0, time.time() * 1000 - job.sent_at_ms))


def _ends_at(lambda_context: Any) -> float | None:
    """When the invocation ends, on time.monotonic()'s clock; None without a context."""
    if lambda_context is None:
        return None
    remaining_ms: int = lambda_context.get_remaining_time_in_millis()
    return time.monotonic() + remaining_ms / 1000


def hand_back(job: DeliveryJob, unsent: tuple[str, ...], posted_any: bool) -> None:
    """Queue the connections there was no time for as a job of their own, same attempt, no
    delay. If that fails and nothing was posted, the record fails instead (SQS delivers it
    again after its visibility timeout, and nobody has it yet); if some were posted, failing
    the record would post to them twice, so the rest miss it (logged)."""
    logger.warning("Too little time left: %d connections of %s go back to the queue", len(unsent), job.message_id)
    try:
        fanout.requeue(replace(job, connections=unsent), 0)
    except aws.AWS_ERRORS:
        if not posted_any:
            raise
        logger.exception("Could not queue %s again for %d connections; they miss it", job.message_id, len(unsent))


@cache
def worker_pacer() -> delivery.Pacer:
    return delivery.Pacer(POSTING_BUDGET_PER_SECOND / DELIVERY_CONCURRENCY)
