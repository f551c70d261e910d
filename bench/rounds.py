"""Posts per message, with and without rounds (docs/delivery.md, "Busy channels"), counted in
process on moto: the real publisher, history, conversations table and rounds; the posts are
counted where the frames are handed to the delivery workers (each connection id in a job is one
post), and round jobs run at once on threads, as the SQS-triggered worker would. "Before" is the
same code with a round after every message (roundsPerSecond unbounded): what the service did
before rounds, one frame per message per member.

For each audience (a channel of 10, 200 and 2,000 members) and rate (1 and 20 messages/s), one
sender publishes for --seconds; printed: messages, posts, posts per message, before and after,
and what a million messages cost in posts at API Gateway's $1 per million messages (a
PROJECTION: the price page's first tier, "Amazon API Gateway pricing", WebSocket messages).

Then the busy channel of issue 28: 2,000 members, 20 messages/s for 10 s: that every member got
all 200 messages once and in seq order, the posts against 2,000 x 4 x 10 = 80,000 (400,000
before), and the delay from store to the frame's hand-off to the workers, median and p99 (the
SQS hop and the post itself, about 1 s and 1 ms on AWS, are not in it).

Usage: python bench/rounds.py [--seconds 5] [--busy-seconds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fake_aws import create_tables, use_fake_aws  # noqa: E402

use_fake_aws(FANOUT_THRESHOLD="10")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

ENDPOINT = "https://bench.execute-api.us-east-1.amazonaws.com/bench"
PRICE_PER_MILLION_MESSAGES = 1.00  # USD, API Gateway WebSocket messages, first tier


class Counted:
    """Every frame handed to the workers: the connections it goes to, what it holds, when."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.posts = 0
        self.received: dict[str, list[list[int]]] = {}
        self.handed_at: dict[int, float] = {}

    def fan_out(self, endpoint: str, connection_ids: Any, payload: bytes, message: dict[str, Any]) -> dict[str, int]:
        ids = list(connection_ids)
        seqs = [m["seq"] for m in json.loads(payload)["messages"]]
        now = time.time()
        with self.lock:
            self.posts += len(ids)
            for cid in ids:
                self.received.setdefault(cid, []).append(seqs)
            for seq in seqs:
                self.handed_at.setdefault(seq, now)
        return {"queued": len(ids), "jobs": 1}


def run(channel: str, members: int, rate: float, seconds: float, rounds_per_second: float) -> tuple[Counted, dict[int, float]]:
    """One sender, `rate` messages a second for `seconds`, to a channel of `members`: what was
    handed to the workers, and when each seq was stored."""
    from chat import fanout, history, members as members_module, publisher, rounds
    from chat.jobs import RoundJob

    table = members_module.table()
    with table.batch_writer() as batch:
        for n in range(members):
            cid = f"{channel}-{n:05d}"
            batch.put_item(Item={"channel": channel, "member": f"u{n}#{cid}", "connection_id": cid, "user_id": f"u{n}"})
    counted = Counted()
    workers: list[threading.Thread] = []
    fanout.fan_out = counted.fan_out  # type: ignore[assignment]
    real_schedule = fanout.schedule

    def schedule(job: Any, delay_seconds: int = 0) -> None:
        if isinstance(job, RoundJob):
            worker = threading.Thread(target=rounds.resume, args=(job,))
            workers.append(worker)
            worker.start()
        else:
            real_schedule(job, delay_seconds)

    fanout.schedule = schedule  # type: ignore[assignment]
    rounds.ROUNDS_PER_SECOND = rounds_per_second
    stored_at: dict[int, float] = {}
    started = time.monotonic()
    for n in range(int(rate * seconds)):
        time.sleep(max(0.0, started + n / rate - time.monotonic()))
        message = history.new_message(f"m{n}", "sender", channel=channel)
        published = publisher.publish(publisher.Target(channel=channel), message, "sender", ENDPOINT)
        stored_at[published.message["seq"]] = published.message["sent_at_ms"] / 1000
    achieved = len(stored_at) / max(time.monotonic() - started, 1e-9)
    if achieved < rate * 0.9:
        print(f"    (the sender reached {achieved:.1f} messages/s on moto, not {rate:g})")
    while any(worker.is_alive() for worker in list(workers)):
        time.sleep(0.05)
    fanout.schedule = real_schedule  # type: ignore[assignment]
    return counted, stored_at


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--busy-seconds", type=float, default=10)
    args = parser.parse_args()
    with mock_aws():
        create_tables(boto3.client("dynamodb"))
        from chat import fanout, telemetry

        telemetry.metrics.add_metric = lambda **_: None  # type: ignore[method-assign]  # no EMF lines in the figures

        boto3.client("sqs").create_queue(QueueName=fanout.DEFAULT_DELIVERY_QUEUE)  # its depth: admission

        real_fan_out = fanout.fan_out
        print(f"Posts per message, one sender for {args.seconds:g} s (counted on moto; cost: PROJECTION at $1/million posts)")
        print(f"{'audience':>22} {'rate':>6} {'messages':>8} {'before':>8} {'after':>8} {'ratio':>6} {'$/1M msgs before':>17} {'after':>8}")
        print(f"{'a DM (1 connection)':>22} {'any':>6} {'-':>8} {1:>8} {1:>8} {'1.0x':>6} {'1':>17} {'1':>8}")
        number = 0
        for members in (10, 200, 2000):
            for rate in (1.0, 20.0):
                per_message = {}
                messages = int(rate * args.seconds)
                for label, rounds_per_second in (("before", 1e9), ("after", 4.0)):
                    number += 1
                    fanout.fan_out = real_fan_out  # type: ignore[assignment]
                    if members <= fanout.FANOUT_THRESHOLD:
                        per_message[label] = float(members)  # posted from the send, message by message
                        continue
                    counted, _ = run(f"c{number}", members, rate, args.seconds, rounds_per_second)
                    per_message[label] = counted.posts / messages
                before, after = per_message["before"], per_message["after"]
                print(
                    f"{f'a channel of {members:,}':>22} {rate:>5g}/s {messages:>8} {before:>8,.0f} {after:>8,.0f} "
                    f"{before / after:>5.1f}x {before * PRICE_PER_MILLION_MESSAGES:>17,.0f} {after * PRICE_PER_MILLION_MESSAGES:>8,.0f}"
                )

        fanout.fan_out = real_fan_out  # type: ignore[assignment]
        rate, members = 20.0, 2000
        counted, stored_at = run("busy", members, rate, args.busy_seconds, 4.0)
        messages = int(rate * args.busy_seconds)
        everyone = all(
            [seq for frame in frames for seq in frame] == list(range(1, messages + 1)) for frames in counted.received.values()
        )
        delays = [counted.handed_at[seq] - stored_at[seq] for seq in stored_at]
        frames_each = statistics.mean(len(frames) for frames in counted.received.values())
        print(f"\nA busy channel: {members:,} members, {rate:g} messages/s for {args.busy_seconds:g} s ({messages} messages)")
        print(f"  every member got every seq once, in order: {everyone} ({len(counted.received):,} members)")
        print(f"  posts: {counted.posts:,} (bound {members:,} x 4 x {args.busy_seconds:g} = {members * 4 * args.busy_seconds:,.0f}; "
              f"before rounds {members * messages:,}: {members * messages / counted.posts:.1f}x as many)")
        print(f"  frames per member: {frames_each:.1f} in {args.busy_seconds:g} s ({frames_each / args.busy_seconds:.2f} a second)")
        print("  (moto in process: a round's read of 2,000 members takes most of a second here, a few ms on DynamoDB)")
        print(f"  store to hand-off: median {statistics.median(delays) * 1000:.0f} ms, p99 {percentile(delays, 0.99) * 1000:.0f} ms")
        return 0 if everyone and counted.posts <= members * 4 * args.busy_seconds + members else 1


if __name__ == "__main__":
    raise SystemExit(main())
