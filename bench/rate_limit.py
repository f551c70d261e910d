"""What the per-user rate limit adds to a message, measured in one process on moto.

sendMessage from a connected client to a room of --room connections, --messages times with the
limiter on (its conditional UpdateItem in the limits table; the rate set so high that nothing
is refused) and as many times with it off (MESSAGE_RATE_PER_SECOND=0), alternating in rounds
so both see the same machine. Printed: the median time per message of each, the difference,
and the DynamoDB calls per message. Then what a refused frame costs: a user floods frames over
their budget, and the bench prints the DynamoDB calls per refused frame and its median time
against an accepted one's, in the same run.

On AWS the limiter adds one UpdateItem in the same region to each message; DynamoDB's usual
single-digit-millisecond latency is AWS's own figure, not measured here.

Usage: python bench/rate_limit.py [--messages 300] [--room 10] [--rounds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_aws import create_tables, use_fake_aws  # noqa: E402

use_fake_aws()

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

from tests.support.events import connect_event, message_event, send_message_body  # noqa: E402


def per_message(handler: Any, count: int) -> list[float]:
    times = []
    for n in range(count):
        started = time.perf_counter()
        response = handler.send_message(message_event("sender", send_message_body(n)), None)
        times.append(time.perf_counter() - started)
        assert response["statusCode"] == 200, response
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--room", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    with mock_aws():
        create_tables(boto3.client("dynamodb"))
        import handler
        from chat import connections, ratelimit

        for connection_id in ["sender"] + [f"c{n}" for n in range(args.room - 1)]:
            handler.connection_manager(connect_event(connection_id), None)
        calls: list[str] = []
        for client in {connections.table().meta.client, ratelimit.table().meta.client}:
            client.meta.events.register("before-call.dynamodb", lambda event_name, **_: calls.append(event_name))

        samples: dict[str, list[float]] = {"on": [], "off": []}
        ratelimit.MESSAGE_RATE_PER_SECOND = 1e9
        with contextlib.redirect_stdout(open(os.devnull, "w")):  # the functions' JSON logs and metrics
            per_message(handler, 20)  # warm up
            for _ in range(args.rounds):
                for mode, rate in (("on", 1e9), ("off", 0.0)):
                    ratelimit.MESSAGE_RATE_PER_SECOND = rate
                    calls.clear()
                    samples[mode] += per_message(handler, args.messages // args.rounds)
                    if mode == "on":
                        on_calls = len(calls) / (args.messages // args.rounds)
                    else:
                        off_calls = len(calls) / (args.messages // args.rounds)

        refused_calls, refused_ms = refused_frames(handler, ratelimit, calls, args.messages)

    on, off = statistics.median(samples["on"]) * 1000, statistics.median(samples["off"]) * 1000
    print(f"sendMessage to a room of {args.room} on moto, {args.messages} messages each way, in {args.rounds} alternating rounds:")
    print(f"  limiter off: median {off:.2f} ms a message, {off_calls:.1f} DynamoDB calls")
    print(f"  limiter on:  median {on:.2f} ms a message, {on_calls:.1f} DynamoDB calls")
    print(f"  the limiter adds {on - off:.2f} ms a message here ({on / off:.2f}x), one conditional UpdateItem")
    print(f"a refused frame (over the user's budget), {args.messages} of them:")
    print(f"  median {refused_ms:.2f} ms ({refused_ms / on:.2f}x an accepted message), {refused_calls:.1f} DynamoDB calls:"
          " the one conditional write that refuses it")
    return 0


def refused_frames(handler: Any, ratelimit: Any, calls: list[str], count: int) -> tuple[float, float]:
    """(DynamoDB calls, median ms) per frame refused by the rate limit, the budget long spent."""
    ratelimit.MESSAGE_RATE_PER_SECOND, ratelimit.MESSAGE_BURST = 1.0, 1
    times = []
    with contextlib.redirect_stdout(open(os.devnull, "w")):
        handler.send_message(message_event("sender", send_message_body("spends the budget")), None)
        calls.clear()
        for n in range(count):
            started = time.perf_counter()
            response = handler.send_message(message_event("sender", send_message_body(n)), None)
            times.append(time.perf_counter() - started)
            assert response["statusCode"] == 429, response
    return len(calls) / count, statistics.median(times) * 1000


if __name__ == "__main__":
    sys.exit(main())
