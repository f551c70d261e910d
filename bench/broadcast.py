"""Broadcast cost: this handler against the tutorial's way, in one process, on moto.

Every post to the mocked management API is delayed by POST_DELAY_MS (a stand-in for the
network round trip to API Gateway), then moto records it. Three runs over the same N
connections:

  tutorial  sequential posts, a new boto3 client per recipient (as the tutorial does)
  handler   handler.send_message: one cached client, a bounded pool of concurrent posts
            (it also stores the message in the history table first, as it must)
  floor     handler.send_message with no delay: the CPU cost that no concurrency can hide

The tutorial's run is long and steady (it is mostly sleeping), so it runs once; the handler
and floor runs are short and share two cores with moto, so they alternate --repeat times
and the medians are compared.

With --channel, the N connections are the members of one channel (each joined it) and the sender
sends to the channel: the same posts, found by a Query on the members table instead of a Scan.

Usage: python bench/broadcast.py [--connections 500] [--delay-ms 20] [--repeat 5] [--channel]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path
from collections import Counter
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_aws import create_tables, use_fake_aws  # noqa: E402

# This compares ways of posting from one invocation: the inline path, whatever the room, and
# one sender sending again and again.
use_fake_aws(FANOUT_THRESHOLD="1000000", MESSAGE_RATE_PER_SECOND="0")

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends  # noqa: E402
from moto.core import DEFAULT_ACCOUNT_ID  # noqa: E402

from tests.support.events import MANAGEMENT_ENDPOINT, action_body, connect_event, message_event, send_message_body  # noqa: E402


class Delay:
    """A before-send hook that counts each connection's posts, sleeps, then lets moto answer."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.posts: Counter[str] = Counter()

    def __call__(self, request: Any, **_: Any) -> None:
        self.posts[request.url.rsplit("/", 1)[1]] += 1
        if self.seconds:
            time.sleep(self.seconds)


def tutorial_broadcast(table: Any, payload: bytes) -> None:
    """The tutorial's send loop: one Scan page, sequential posts, a new client each time."""
    for item in table.scan(ProjectionExpression="connection_id")["Items"]:
        client = boto3.client("apigatewaymanagementapi", endpoint_url=MANAGEMENT_ENDPOINT)
        client.post_to_connection(ConnectionId=item["connection_id"], Data=payload)


def timed(run: Callable[[], Any]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=500)
    parser.add_argument("--delay-ms", type=float, default=20.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--channel", action="store_true", help="the connections are a channel's members")
    args = parser.parse_args()

    with mock_aws():
        delay = Delay()
        # Registered first on the default session, so every client made from it (the
        # handler's one, and each of the tutorial's) sleeps before moto answers.
        boto3.setup_default_session()
        emitter = boto3.DEFAULT_SESSION._session.get_component("event_emitter")
        emitter.register_first("before-send.apigatewaymanagementapi.PostToConnection", delay)

        create_tables(boto3.client("dynamodb"))
        import handler
        from chat import connections, delivery, frames, history

        ids = [f"conn-{i:05d}" for i in range(args.connections)]
        user = "bench" if args.channel else None  # channels need a signed-in sender
        for connection_id in ids:
            handler.connection_manager(connect_event(connection_id, user), None)
            if args.channel:
                handler.join(message_event(connection_id, action_body("join", channel="bench"), "join", user), None)
        table = connections.table()
        if args.channel:
            event = message_event(ids[0], action_body("sendMessage", channel="bench", content="벤치마크 메시지"), user=user)
        else:
            event = message_event(ids[0], send_message_body("벤치마크 메시지"))
        # The tutorial posts the same frame: what an anonymous room message looks like.
        payload = frames.encode_delivery({**history.new_message("벤치마크 메시지", sender=None), "seq": 1})
        posts = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].connections

        def delivered_once() -> None:
            assert delay.posts == Counter(ids), "a connection did not get exactly one copy"
            delay.posts.clear()
            posts.clear()

        with contextlib.redirect_stdout(open(os.devnull, "w")):  # the functions' JSON logs and metrics
            handler.send_message(event, None)  # warm up: client creation, imports
            delay.posts.clear()
            posts.clear()

            delay.seconds = args.delay_ms / 1000
            tutorial = timed(lambda: tutorial_broadcast(table, payload))
            delivered_once()
            ours_runs, floor_runs = [], []
            for _ in range(args.repeat):
                delay.seconds = args.delay_ms / 1000
                ours_runs.append(timed(lambda: handler.send_message(event, None)))
                delivered_once()
                delay.seconds = 0.0
                floor_runs.append(timed(lambda: handler.send_message(event, None)))
                delivered_once()
        ours, floor = statistics.median(ours_runs), statistics.median(floor_runs)

    audience = f"the {args.connections} members of a channel" if args.channel else f"{args.connections} connections (the room)"
    print(f"broadcast to {audience}, {args.delay_ms:g} ms added per post")
    print(f"  tutorial (sequential, client per post): {tutorial * 1000:9.1f} ms")
    print(f"  handler  (pool of {delivery.BROADCAST_CONCURRENCY}, one client):     {ours * 1000:9.1f} ms  median of {args.repeat}")
    print(f"  floor    (handler, 0 ms added):         {floor * 1000:9.1f} ms  median of {args.repeat}")
    print(f"  speed-up vs tutorial: {tutorial / ours:6.1f}x   (target >= 25x)")
    print(f"  handler / floor:      {ours / floor:6.2f}x   (target <= 1.3x)")


if __name__ == "__main__":
    main()
