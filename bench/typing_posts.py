"""Typing in a busy channel (issue 30, docs/costs.md), counted in process on moto: --members
members of one channel each send a typing frame every --every seconds for --seconds (the
service's clock moved, not waited for), through the real handler and the delivery workers.
Printed: frames sent, frames forwarded, posts made, against the bound members x (members - 1) x
seconds / 2 (one forwarded frame per 2 s per typist, to every other member), and against what
the same frames would cost unthrottled (each one posted to every other member).

Usage: python bench/typing_posts.py [--members 50] [--seconds 10] [--every 0.5]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.fake_aws import create_tables, use_fake_aws  # noqa: E402

use_fake_aws(DELIVERY_QUEUE_NAME="bench-delivery")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402

CHANNEL = "busy"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=0.5)
    args = parser.parse_args()
    with mock_aws():
        create_tables(boto3.client("dynamodb"))
        import handler
        from chat import dispatch, indicators, ratelimit
        from chat.telemetry import logger, metrics

        logger.setLevel("ERROR")
        posts = {"count": 0, "frames": 0}

        def count_posts(endpoint: str, connection_ids: object, payload: bytes, message_id: str, *rest: object) -> frozenset[str]:
            ids = list(connection_ids)  # type: ignore[call-overload]
            posts["count"] += len(ids)
            posts["frames"] += 1
            return frozenset(ids)

        # Every post counted where the frame is handed over (inline, or to the workers' queue).
        dispatch.post = count_posts  # type: ignore[assignment]
        dispatch.queue = count_posts  # type: ignore[assignment]
        clock = [1_800_000_000_000]
        ratelimit._now_ms = lambda: clock[0]  # type: ignore[assignment]
        ratelimit.TYPING_RATE_PER_SECOND = 0  # each user's own frame budget is not what is measured
        from tests.support.events import connect_event, message_event

        users = [f"u{n:03d}" for n in range(args.members)]
        for user in users:
            handler.connection_manager(connect_event(f"{user}-1", user), None)
            handler.join(message_event(f"{user}-1", '{"action": "join", "channel": "busy"}', "join", user), None)
            clock[0] += 50  # the users' own budgets, not what is measured
        posts.update(count=0, frames=0)  # the joins' presence announcements

        sent = 0
        quiet = contextlib.redirect_stdout(io.StringIO())  # each invocation prints its metrics (EMF)
        quiet.__enter__()
        for _ in range(round(args.seconds / args.every)):
            for user in users:
                event = message_event(f"{user}-1", '{"action": "typing", "channel": "busy"}', "typing", user)
                handler.typing(event, None)
                sent += 1
                metrics.clear_metrics()
            clock[0] += round(args.every * 1000)
        quiet.__exit__(None, None, None)
        bound = args.members * (args.members - 1) * args.seconds / indicators.TYPING_INTERVAL_SECONDS
        issue_bound = args.members * args.members * args.seconds / indicators.TYPING_INTERVAL_SECONDS
    print(f"Typing: {args.members} members of one channel, a frame every {args.every:g} s each for {args.seconds:g} s, in process:")
    print(f"  {sent:,} typing frames sent, {posts['frames']:,} forwarded, {posts['count']:,} posts")
    print(f"  at most {issue_bound:,.0f} (members x members x seconds / 2, issue 30's bound); exactly {bound:,.0f} "
          f"with each typist's own connection left out: {posts['count'] / bound:.2f} of it")
    print(f"  unthrottled, the same frames would be {sent * (args.members - 1):,} posts: {sent * (args.members - 1) / max(1, posts['count']):.1f}x")


if __name__ == "__main__":
    main()
