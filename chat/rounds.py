"""Busy rooms and channels: deliver the log, not the message. A message for an audience the
delivery workers serve joins its conversation's round: the seqs stored and not yet delivered, one
holder at a time. The holder sends one frame with every waiting message (in seq order, within
128 KB) to every member, at most ROUNDS_PER_SECOND rounds a second; a quiet conversation's
message goes out at once, from the send that stored it. So a member of a channel taking 20
messages a second gets at most 4 frames a second, and the posts a message costs fall with the
rate (docs/delivery.md: "Busy channels").

Why no message is left behind: a send adds its seq to the round (one unconditional write) before
it looks for a holder; a holder lets go only with a write that fails if anything waits
(conversations.end_round), and otherwise runs another round. Why none goes twice: a holder takes
the seqs out of those waiting, conditional on still holding the round, before it delivers them.
A holder that dies keeps the round until its lease (ROUND_LEASE_MS) runs out; the next send
takes it over, and clients that noticed the gap recover it with `after`."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any

from chat import aws, connections, conversations, dispatch, fanout, frames, history, members
from chat.jobs import RoundJob
from chat.telemetry import count, logger

# Frames a member of a busy conversation gets a second at most (the `roundsPerSecond` parameter).
ROUNDS_PER_SECOND = float(os.environ.get("ROUNDS_PER_SECOND", "4"))
# How long a holder may hold the round without writing to it: longer than a round takes
# (a worker's posts are queued, not made, in a round) and than a round job waits in the queue.
ROUND_LEASE_MS = 30_000
# Messages read for one round at most (one BatchGetItem); more wait for the next.
ROUND_MESSAGES = 100


def interval_ms() -> int:
    return int(1000 / ROUNDS_PER_SECOND)


def request(channel: str | None, seq: int, endpoint: str) -> None:
    """A stored room (`channel` None) or channel message joins its conversation's round: delivered
    now, from here, if no round went out within the interval; otherwise with the next round, which
    a worker runs (the holder's). Raises an AWS error if it could not be handed on (the round is
    let go: a retry of the send, or the next send, takes it over at once)."""
    conversation = _conversation(channel)
    now = _now_ms()
    if conversations.request_round(conversation, frozenset({seq})).busy_until_ms > now:
        count("RoundJoined")  # the holder sees this seq before it lets go
        return
    job = RoundJob(channel, endpoint, _token())
    state = conversations.take_round(conversation, job.holder, now, now + ROUND_LEASE_MS)
    if state is None:
        count("RoundJoined")  # taken since: its holder read the round after this seq was added
        return
    _turn(job, state, wait=False)


def resume(job: RoundJob) -> None:
    """A worker's turn at a round. Each turn passes the round to a token of its own, so a second
    copy of the same job (SQS delivers at least once; a send retried by botocore may be stored
    twice) finds it passed on and does nothing. A job whose round nobody holds any more (a holder
    that failed let it go) takes it: SQS's retry of a failed turn is the backstop for seqs left
    waiting."""
    conversation = _conversation(job.channel)
    turn = replace(job, holder=_token())
    now = _now_ms()
    state = conversations.pass_round(conversation, job.holder, turn.holder, now + ROUND_LEASE_MS)
    if state is None:
        state = conversations.take_round(conversation, turn.holder, now, now + ROUND_LEASE_MS)
    if state is None:
        logger.info("Round of %s: %s was passed on or taken over; nothing to do", conversation, job.holder)
        return
    _turn(turn, state, wait=True)


def _turn(job: RoundJob, state: conversations.Round, wait: bool) -> None:
    """The holder's turn: the round now (a worker waits out the interval first), or, from a send
    within the interval, a worker's round after it. Whatever fails lets the round go, so that it
    is never held by nobody for a whole lease."""
    conversation = _conversation(job.channel)
    try:
        wait_ms = state.last_ms + interval_ms() - _now_ms()
        if wait_ms > 0 and not wait:
            fanout.schedule(job)  # the round a worker runs after the interval
            return
        if wait_ms > 0:
            time.sleep(wait_ms / 1000)
        run(job, state)
    except Exception:
        try:
            conversations.drop_round(conversation, job.holder)
        except aws.AWS_ERRORS:
            logger.exception("Could not let go of the round of %s: it is free when its lease ends", conversation)
        raise


def run(job: RoundJob, state: conversations.Round) -> None:
    """One round: every waiting message that fits in one frame, to every member; then let go if
    nothing else waits, or queue the next round (a worker's, after the interval). The seqs are
    taken out of those waiting before the frame goes, so that no two holders deliver the same seq
    (one whose lease ran out while it was slow delivers nothing); if the frame cannot be queued
    they are put back, to go with the next round (members a part of the frame reached then get
    them again, and drop the seqs they have)."""
    conversation = _conversation(job.channel)
    frame = _frame(conversation, sorted(state.pending)[:ROUND_MESSAGES])
    if conversations.keep_round(conversation, job.holder, _now_ms() + ROUND_LEASE_MS, frame.taken, None) is None:
        return  # the lease ran out meanwhile: the new holder has them all
    if frame.messages:
        try:
            deliver(job, frame)
        except aws.AWS_ERRORS:
            conversations.request_round(conversation, frame.taken)
            raise
    now = _now_ms()
    if conversations.end_round(conversation, job.holder, now):
        return
    if conversations.keep_round(conversation, job.holder, now + ROUND_LEASE_MS, frozenset(), now) is None:
        return  # the lease ran out meanwhile: the new holder has what is left
    fanout.schedule(job)


@dataclass(frozen=True)
class Frame:
    """A round's frame: the messages it carries (in seq order), its bytes, and the seqs it takes out
    of those waiting (those it carries, and any no longer stored)."""

    messages: list[dict[str, Any]]
    payload: bytes
    taken: frozenset[int]


def _frame(conversation: str, seqs: list[int]) -> Frame:
    """The frame for these seqs: a seq no longer stored, or stored unreadably (history.entry logs
    it), is taken out with the rest and delivered to nobody, so it never stops the rounds."""
    stored = history.messages_at([(conversation, seq) for seq in seqs])
    readable = [history.entry(stored[conversation, seq])[1] for seq in seqs if (conversation, seq) in stored]
    messages = [message for message in readable if message is not None]
    if not messages:
        return Frame([], b"", frozenset(seqs))
    payload, included = frames.encode_round(messages)
    last = messages[included - 1]["seq"]
    return Frame(messages[:included], payload, frozenset(seq for seq in seqs if seq <= last))


def deliver(job: RoundJob, frame: Frame) -> None:
    """Queue the round's frame for the members (through the workers, paced to the budget)."""
    conversation = _conversation(job.channel)
    first, last = frame.messages[0], frame.messages[-1]
    audience = members.member_ids(job.channel) if job.channel is not None else connections.all_ids()
    dispatch.queue(job.endpoint, audience, frame.payload, first["id"], first["sent_at_ms"])
    logger.info("Round of %s: seq %d to %d, %d messages", conversation, first["seq"], last["seq"], len(frame.messages))
    count("RoundMessages", len(frame.messages))


def _conversation(channel: str | None) -> str:
    return history.channel_conversation(channel) if channel is not None else history.ROOM


def _token() -> str:
    return uuid.uuid4().hex


def _now_ms() -> int:
    return int(time.time() * 1000)
