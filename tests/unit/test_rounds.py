"""Busy rooms and channels (issue 28): the workers' audiences get one frame per round carrying
every message stored since the last, at most ROUNDS_PER_SECOND rounds a second; a quiet one gets
each message at once; nobody misses or repeats a seq."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest

from chat import conversations, fanout, history, jobs, members, publisher, rounds
from tests.support.events import MANAGEMENT_ENDPOINT

CHANNEL = "live"
CONVERSATION = history.channel_conversation(CHANNEL)


@pytest.fixture
def channel(connect: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A channel of 12 connections (above a threshold of 10: the workers' audience), 25 a job."""
    monkeypatch.setattr(fanout, "FANOUT_THRESHOLD", 10)
    monkeypatch.setattr(fanout, "DELIVERY_BATCH_SIZE", 25)
    ids = [f"member-{n:02d}" for n in range(12)]
    for n, connection_id in enumerate(ids):
        connect(connection_id, user=f"user-{n}")
        members.join(CHANNEL, connection_id, f"user-{n}")
    return ids


def publish(content: Any, sender: str = "user-0", paced: bool = False) -> publisher.Published:
    message = history.new_message(content, sender, channel=CHANNEL)
    return publisher.publish(publisher.Target(channel=CHANNEL), message, sender, MANAGEMENT_ENDPOINT, paced=paced)


def frames_of(management: Any, connection_id: str) -> list[list[int]]:
    """The seqs each frame the connection got carried, frame by frame."""
    return [[m["seq"] for m in frame["messages"]] for frame in management.received(connection_id)]


def the_round() -> conversations.Round:
    return conversations.read_round(CONVERSATION)


# --- a quiet channel ----------------------------------------------------------------------------


def test_a_quiet_channels_message_goes_out_at_once_from_the_send_alone_in_its_frame(
    channel: list[str], management: Any, workers: Any
) -> None:
    published = publish("hello")
    jobs_queued = workers.pending_jobs()

    assert published.delivery == publisher.COMPLETE
    assert all(isinstance(job, jobs.DeliveryJob) for job in jobs_queued) and len(jobs_queued) == 1  # no round job
    workers.drain()
    assert all(frames_of(management, cid) == [[1]] for cid in channel)
    assert the_round() == conversations.Round(frozenset(), None, 0, the_round().last_ms)  # let go, nothing waiting


def test_messages_an_interval_apart_each_go_out_alone(channel: list[str], management: Any, workers: Any) -> None:
    for n in range(3):
        publish(f"m{n}")
        time.sleep(rounds.interval_ms() / 1000)
    workers.drain()

    assert all(frames_of(management, cid) == [[1], [2], [3]] for cid in channel)


# --- a busy channel -----------------------------------------------------------------------------


def test_a_busy_channels_messages_go_out_in_rounds_every_seq_once_in_order(
    channel: list[str], management: Any, workers: Any
) -> None:
    started = time.monotonic()
    for n in range(20):  # back to back: far faster than 4 a second
        assert publish(f"m{n}").delivery == publisher.COMPLETE
    workers.drain()
    seconds = time.monotonic() - started

    for cid in channel:
        got = frames_of(management, cid)
        assert [seq for frame in got for seq in frame] == list(range(1, 21))  # each once, in order
        # the first at once, then at most ROUNDS_PER_SECOND a second (on a fast machine: 2 or 3 frames, not 20)
        assert len(got) <= 1 + seconds * rounds.ROUNDS_PER_SECOND
    assert the_round().pending == frozenset() and the_round().holder is None


def test_rounds_are_at_least_an_interval_apart(
    channel: list[str], management: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    posted_at: list[float] = []
    queue = fanout.fan_out

    def noting(*args: Any, **kwargs: Any) -> Any:
        posted_at.append(time.monotonic())
        return queue(*args, **kwargs)

    monkeypatch.setattr(fanout, "fan_out", noting)
    for n in range(12):
        publish(f"m{n}")
        workers.drain()  # a worker takes the round at once, and waits out the interval
        time.sleep(0.05)

    gaps = [later - earlier for earlier, later in zip(posted_at, posted_at[1:])]
    assert len(posted_at) >= 2 and min(gaps) >= rounds.interval_ms() / 1000 * 0.95
    assert [seq for frame in frames_of(management, channel[0]) for seq in frame] == list(range(1, 13))


def test_a_round_holds_what_fits_in_128_kb_and_the_rest_goes_with_the_next(
    channel: list[str], management: Any, workers: Any
) -> None:
    big = "x" * 50_000  # two fit in a frame, not three
    for n in range(5):
        publish(f"{n}{big}")
    workers.drain()

    got = frames_of(management, channel[0])
    assert [seq for frame in got for seq in frame] == [1, 2, 3, 4, 5]
    assert max(len(frame) for frame in got) == 2
    assert all(len(raw) <= 128 * 1024 for raw in management.raw(channel[0]))


def test_sends_from_many_threads_at_once_leave_no_seq_behind(channel: list[str], management: Any, workers: Any) -> None:
    def send_ten(sender: str) -> None:
        for n in range(10):
            publish(f"{sender} {n}", sender=sender)

    threads = [threading.Thread(target=send_ten, args=(f"user-{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    workers.drain()

    for cid in channel:
        assert sorted(seq for frame in frames_of(management, cid) for seq in frame) == list(range(1, 41))
        assert all(frame == sorted(frame) for frame in frames_of(management, cid))
    assert the_round().pending == frozenset() and the_round().holder is None


@pytest.mark.parametrize("paced", [True, False], ids=["the backend's, paced", "a client's"])
def test_a_small_channel_gets_a_clients_messages_from_the_send_and_the_backends_in_rounds(
    connect: Any, management: Any, workers: Any, paced: bool
) -> None:
    connect("only-one", user="user-1")
    members.join(CHANNEL, "only-one", "user-1")
    for n in range(5):
        publish(f"m{n}", paced=paced)
    from_the_send = frames_of(management, "only-one")
    workers.drain()

    got = frames_of(management, "only-one")
    assert [seq for frame in got for seq in frame] == [1, 2, 3, 4, 5]
    if paced:  # through the workers' budget, a few frames
        assert from_the_send == [] and len(got) < 5
    else:
        assert from_the_send == [[1], [2], [3], [4], [5]]


# --- the round's state --------------------------------------------------------------------------


def test_a_holder_cannot_let_go_while_a_seq_waits(handler: Any) -> None:
    conversations.request_round(CONVERSATION, frozenset({1}))
    state = conversations.take_round(CONVERSATION, "a" * 32, 1_000, 31_000)
    assert state is not None and state.pending == {1}
    taken = conversations.keep_round(CONVERSATION, "a" * 32, 31_000, frozenset({1}), None)  # before delivering
    assert taken is not None and taken.pending == frozenset()
    conversations.request_round(CONVERSATION, frozenset({2}))  # a send while the holder delivers seq 1

    assert conversations.take_round(CONVERSATION, "b" * 32, 2_000, 32_000) is None  # held
    assert conversations.end_round(CONVERSATION, "a" * 32, 3_000) is False
    kept = conversations.keep_round(CONVERSATION, "a" * 32, 33_000, frozenset({2}), 3_000)
    assert kept is not None and kept.pending == frozenset() and kept.holder == "a" * 32 and kept.last_ms == 3_000
    assert conversations.end_round(CONVERSATION, "a" * 32, 4_000) is True
    assert the_round() == conversations.Round(frozenset(), None, 0, 4_000)


def test_a_holder_whose_lease_ran_out_takes_nothing_and_changes_nothing(handler: Any) -> None:
    conversations.request_round(CONVERSATION, frozenset({1}))
    assert conversations.take_round(CONVERSATION, "a" * 32, 1_000, 31_000) is not None
    assert conversations.take_round(CONVERSATION, "b" * 32, 31_001, 61_001) is not None  # a's time ran out

    assert conversations.keep_round(CONVERSATION, "a" * 32, 70_000, frozenset({1}), 40_000) is None
    assert conversations.end_round(CONVERSATION, "a" * 32, 40_000) is False
    assert the_round().pending == {1} and the_round().holder == "b" * 32  # b delivers it, once


def test_a_slow_holder_whose_lease_ran_out_delivers_nothing_the_new_holder_delivers(
    channel: list[str], management: Any, workers: Any
) -> None:
    """Holder a read the round, then stalled past its lease; b took the round over and delivered.
    When a goes on, it delivers nothing: no seq twice."""
    seq = history.append(CONVERSATION, history.new_message("once", "user-0", channel=CHANNEL)).message["seq"]
    conversations.request_round(CONVERSATION, frozenset({seq}))
    now = rounds._now_ms()
    slow = conversations.take_round(CONVERSATION, "a" * 32, now - 60_000, now - 30_000)  # its lease is over
    fresh = conversations.take_round(CONVERSATION, "b" * 32, now, now + 30_000)
    assert slow is not None and fresh is not None and slow.pending == fresh.pending == {seq}

    rounds.run(jobs.RoundJob(CHANNEL, MANAGEMENT_ENDPOINT, "b" * 32), fresh)
    rounds.run(jobs.RoundJob(CHANNEL, MANAGEMENT_ENDPOINT, "a" * 32), slow)
    workers.drain()

    assert all(frames_of(management, cid) == [[seq]] for cid in channel)


def test_a_round_whose_frame_cannot_be_queued_puts_its_seqs_back_and_lets_go(
    channel: list[str], management: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    def down(*args: Any, **kwargs: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://sqs")

    monkeypatch.setattr(fanout, "fan_out", down)
    published = publish("lost?")
    assert published.delivery == publisher.INCOMPLETE
    assert the_round().pending == {1} and the_round().holder is None  # back, and let go
    monkeypatch.undo()
    monkeypatch.setattr(fanout, "FANOUT_THRESHOLD", 10)
    monkeypatch.setattr(fanout, "DELIVERY_BATCH_SIZE", 25)
    time.sleep(rounds.interval_ms() / 1000)
    publish("next")
    workers.drain()

    assert [seq for frame in frames_of(management, channel[0]) for seq in frame] == [1, 2]


def test_a_round_job_of_a_holder_that_lost_the_round_posts_nothing(
    channel: list[str], management: Any, workers: Any
) -> None:
    conversations.request_round(CONVERSATION, frozenset({1}))
    rounds.resume(jobs.RoundJob(CHANNEL, MANAGEMENT_ENDPOINT, "c" * 32))  # never held it

    assert workers.pending_jobs() == [] and management.received(channel[0]) == []


def test_a_holder_that_died_is_taken_over_by_the_next_send_after_its_lease(
    channel: list[str], management: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    publish("first")
    workers.drain()
    now = rounds._now_ms()
    conversations.request_round(CONVERSATION, frozenset({99}))  # a seq nobody stored: nothing to deliver
    assert conversations.take_round(CONVERSATION, "d" * 32, now, now + 60_000) is not None  # then it died
    publish("held up")  # joins the dead holder's round
    workers.drain()
    assert frames_of(management, channel[0]) == [[1]]

    monkeypatch.setattr(rounds, "_now_ms", lambda: now + 60_001)
    publish("after the lease")
    workers.drain()

    assert frames_of(management, channel[0]) == [[1], [2, 3]]
    assert the_round().pending == frozenset()


def test_a_round_job_is_checked_in_full_before_anything_acts_on_it() -> None:
    job = jobs.RoundJob(CHANNEL, MANAGEMENT_ENDPOINT, "e" * 32)
    assert jobs.parse(job.to_body()) == job
    assert jobs.parse(jobs.RoundJob(None, MANAGEMENT_ENDPOINT, "e" * 32).to_body()).channel is None
    for bad in (
        {"holder": "not hex"},
        {"channel": "no spaces allowed"},
        {"endpoint": "https-less"},
        {"extra": 1},
        {"v": 2},
    ):
        document = {"v": 1, "kind": "round", "channel": CHANNEL, "endpoint": MANAGEMENT_ENDPOINT, "holder": "e" * 32}
        with pytest.raises(jobs.PoisonJob, match="not a round"):
            jobs.parse(json.dumps({**document, **bad}))
    with pytest.raises(jobs.PoisonJob, match="a round"):
        jobs.DeliveryJob.from_body(job.to_body())


def test_two_copies_of_one_round_job_deliver_once(channel: list[str], management: Any, workers: Any) -> None:
    """SQS delivers at least once (and a send botocore retried may be stored twice): each turn
    passes the round to a token of its own, so the second copy finds it passed on."""
    seq = history.append(CONVERSATION, history.new_message("once", "user-0", channel=CHANNEL)).message["seq"]
    conversations.request_round(CONVERSATION, frozenset({seq}))
    now = rounds._now_ms()
    assert conversations.take_round(CONVERSATION, "e" * 32, now - 1_000, now + 30_000) is not None
    job = jobs.RoundJob(CHANNEL, MANAGEMENT_ENDPOINT, "e" * 32)

    rounds.resume(job)
    rounds.resume(job)
    workers.drain()

    assert all(frames_of(management, cid) == [[seq]] for cid in channel)


def test_a_turn_that_fails_lets_the_round_go_and_the_jobs_retry_delivers(
    channel: list[str], management: Any, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from botocore.exceptions import EndpointConnectionError

    seq = history.append(CONVERSATION, history.new_message("late", "user-0", channel=CHANNEL)).message["seq"]
    conversations.request_round(CONVERSATION, frozenset({seq}))
    now = rounds._now_ms()
    assert conversations.take_round(CONVERSATION, "f" * 32, now - 1_000, now + 30_000) is not None
    job = jobs.RoundJob(CHANNEL, MANAGEMENT_ENDPOINT, "f" * 32)
    real = fanout.fan_out

    def down(*args: Any, **kwargs: Any) -> Any:
        raise EndpointConnectionError(endpoint_url="https://sqs")

    monkeypatch.setattr(fanout, "fan_out", down)
    with pytest.raises(EndpointConnectionError):
        rounds.resume(job)  # the record fails: SQS sends the same job again later
    assert the_round().holder is None and the_round().pending == {seq}  # let go, nothing lost
    monkeypatch.setattr(fanout, "fan_out", real)

    rounds.resume(job)  # the retry: the round is nobody's, so it takes it
    workers.drain()

    assert all(frames_of(management, cid) == [[seq]] for cid in channel)
