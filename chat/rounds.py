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
from dataclasses import dataclass
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
    a worker runs (the holder's). Raises an AWS error if it could not be handed on."""
    conversation = _conversation(channel)
    now = _now_ms()
    if conversations.request_round(conversation, frozenset({seq})).busy_until_ms > now:
        count("RoundJoined")  # the holder sees this seq before it lets go
        return
    job = RoundJob(channel, endpoint, uuid.uuid4().hex)
    state = conversations.take_round(conversation, job.holder, now, now + ROUND_LEASE_MS)
    if state is None:
        count("RoundJoined")  # taken since: its holder read the round after this seq was added
        return
    if now < state.last_ms + interval_ms():
        fanout.schedule(job)  # the round a worker runs after the interval
        return
    run(job, state)


def resume(job: RoundJob) -> None:
    """A worker's turn at a round it holds: wait out the interval, deliver, then let go or queue
    the next round. A job whose holder lost the round (its lease ran out) does nothing."""
    conversation = _conversation(job.channel)
    state = conversations.keep_round(conversation, job.holder, _now_ms() + ROUND_LEASE_MS, frozenset(), None)
    if state is None:
        logger.warning("Round of %s: holder %s lost it; another holds it", conversation, job.holder)
        return
    wait_ms = state.last_ms + interval_ms() - _now_ms()
    if wait_ms > 0:
        time.sleep(wait_ms / 1000)
    run(job, state)


def run(job: RoundJob, state: conversations.Round) -> None:
    """One round: every waiting message that fits in one frame, to every member; then let go if
    nothing else waits, or queue the next round (a worker's, after the interval). The seqs are
    taken out of those waiting before the frame goes, so that no two holders ever deliver the same
    seq (one whose lease ran out while it was slow delivers nothing); if the frame cannot be
    queued they are put back and the round let go, for the next send to take over at once."""
    conversation = _conversation(job.channel)
    frame = _frame(conversation, sorted(state.pending)[:ROUND_MESSAGES])
    if conversations.keep_round(conversation, job.holder, _now_ms() + ROUND_LEASE_MS, frame.taken, None) is None:
        return  # the lease ran out meanwhile: the new holder has them all
    if frame.messages:
        try:
            deliver(job, frame)
        except aws.AWS_ERRORS:
            conversations.request_round(conversation, frame.taken)
            conversations.drop_round(conversation, job.holder)
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
    stored = history.messages_at([(conversation, seq) for seq in seqs])
    messages = [history.stored_to_message(stored[conversation, seq]) for seq in seqs if (conversation, seq) in stored]
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


def _now_ms() -> int:
    return int(time.time() * 1000)
