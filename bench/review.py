"""What the review hook costs a sender (docs/moderation.md, "What it costs"), in process on moto:
the real publisher storing channel messages and posting them to two members, timed per message.

- baseline: no review function;
- a review function answering in --function-ms (10 by default), on 127.0.0.1 behind Lambda's
  Invoke API (tests/support/review_function.py, the example word list);
- the timeout path: a function that never answers in time (REVIEW_TIMEOUT_MS, 1,000 by default),
  so every message waits the whole timeout and the fallback (allow) stores it.

Printed: the median and p95 per message, and each as a ratio to the baseline of this same run.
On AWS the call is a synchronous Lambda Invoke within the Region: add its round trip (a warm
function answers in a few ms; a cold one can take longer than the timeout: that is what the
fallback is for). This measures what the hook adds around the call, not Lambda itself.

Usage: python bench/review.py [--messages 200] [--function-ms 10] [--timeout-messages 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fake_aws import create_tables, use_fake_aws  # noqa: E402

use_fake_aws()

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

ENDPOINT = "https://bench.execute-api.us-east-1.amazonaws.com/bench"
CHANNEL = "bench"


def timed_sends(count: int, label: str) -> list[float]:
    """Milliseconds each of `count` channel messages took to store and deliver."""
    from chat import history, publisher
    from chat.telemetry import metrics

    took = []
    for n in range(count):
        message = history.new_message(f"{label} message {n}", "alice", channel=CHANNEL)
        started = time.perf_counter()
        publisher.publish(publisher.Target(channel=CHANNEL), message, "alice", ENDPOINT)
        took.append((time.perf_counter() - started) * 1000)
        metrics.clear_metrics()  # a Lambda flushes them after each invocation; here they would be printed
    return took


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[18]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--function-ms", type=float, default=10.0)
    parser.add_argument("--timeout-messages", type=int, default=5)
    args = parser.parse_args()

    from tests.support.review_function import ReviewFunction

    function = ReviewFunction()
    os.environ["AWS_ENDPOINT_URL_LAMBDA"] = function.endpoint
    with mock_aws():
        create_tables(boto3.client("dynamodb"))
        from chat import members, review
        from chat.telemetry import logger

        logger.setLevel("ERROR")  # each fallback is logged as a warning: 5 lines of noise here
        for user in ("alice", "bob"):
            members.table().put_item(Item={"channel": CHANNEL, "member": f"{user}#{user}-1", "connection_id": f"{user}-1", "user_id": user})
        timed_sends(20, "warm-up")  # imports, clients, the tables' first writes

        baseline = timed_sends(args.messages, "baseline")
        review.REVIEW_FUNCTION = "bench-review"
        function.delay = args.function_ms / 1000
        reviewed = timed_sends(args.messages, "reviewed")
        function.delay = review.REVIEW_TIMEOUT_MS / 1000 + 1
        timing_out = timed_sends(args.timeout_messages, "timing out")
    function.close()

    base = statistics.median(baseline)
    print(f"Review hook, {args.messages} channel messages each (2 members), in process on moto:")
    for label, values in (
        ("no review function (baseline)", baseline),
        (f"a function answering in {args.function_ms:g} ms", reviewed),
        (f"a function past the {review.REVIEW_TIMEOUT_MS} ms timeout (fallback allow), {len(timing_out)} messages", timing_out),
    ):
        median = statistics.median(values)
        tail = p95(values) if len(values) >= 20 else max(values)
        print(f"  {label}: median {median:.1f} ms ({median / base:.2f}x), {'p95' if len(values) >= 20 else 'max'} {tail:.1f} ms")
    added = statistics.median(reviewed) - base
    print(f"  added per message by the hook: {added:.1f} ms, of which the function's own {args.function_ms:g} ms")


if __name__ == "__main__":
    main()
