"""POST /publish: a batch against single-message requests, and retries that store nothing twice.

1. Retries, in one process on moto: --messages publishes (to --channels channels of one real
   member each) in batches of 100, each batch then sent again as a retry after a cut connection
   (the first's answer never read). Printed: the messages stored and the posts made, which must
   both be exactly --messages.
2. Batch against single, end to end through the local stack (serverless-offline + moto server,
   started here on free ports): 100 messages to 100 channels of 10 members each, sent as one
   POST /publish, and as 100 requests of one message each, one after another, alternating for
   --rounds rounds. Timed from the first request until every answer is back (each message
   stored as its channel's next seq and queued for its members). Printed: the median of each
   and their ratio; and, from the same run, what a request costs by itself and what a message
   costs, solved from the two medians (100 singles = 100 (o + w), one batch = o + 100 w),
   with the projection of the ratio when the batch's 8 conversations at once really overlap, as
   they do when the work waits on the network (DynamoDB, SQS) rather than on a CPU: here moto
   answers every call on the same 2 cores, so they do not.

Usage: python bench/publish.py [--messages 1000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_aws import create_tables, use_fake_aws  # noqa: E402

BATCH = 100


def retries(messages: int, channels: int) -> tuple[int, int]:
    """(messages stored, posts made) after every batch was sent twice."""
    use_fake_aws(WEBSOCKET_API_ENDPOINT="https://abc123.execute-api.us-east-1.amazonaws.com/dev", DELIVERY_QUEUE_NAME="bench")
    import boto3
    from moto import mock_aws

    with mock_aws(), contextlib.redirect_stdout(open(os.devnull, "w")):
        create_tables(boto3.client("dynamodb"))
        boto3.client("sqs").create_queue(QueueName="bench")
        import handler
        from chat import connections, delivery, members
        from tests.support.management_api import ManagementApi

        api = ManagementApi(delivery.management_client(os.environ["WEBSOCKET_API_ENDPOINT"]))
        for n in range(channels):
            connections.connect(f"member-{n}", int(time.time()), f"user{n}")
            members.join(f"news-{n}", f"member-{n}", f"user{n}")
        for start in range(0, messages, BATCH):
            batch = [{"to": f"user{n % channels}", "sender": "orders", "content": n, "clientMessageId": f"m-{n}"}
                     for n in range(start, min(start + BATCH, messages))]
            event = {"body": json.dumps({"messages": batch}), "requestContext": {"identity": {"userArn": "arn:bench"}}}
            for _ in range(2):  # the first answer is lost with the connection: the backend sends again
                assert handler.publish(event, None)["statusCode"] == 200
        stored = sum(int(item["seq"]) for item in boto3.resource("dynamodb").Table(os.environ["CONVERSATIONS_TABLE"]).scan()["Items"]
                     if item["sk"] == "head")
        posts = sum(len(api.received(f"member-{n}")) for n in range(channels))
    return stored, posts


def post(url: str, messages: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(url, data=json.dumps({"messages": messages}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        reply = json.loads(answer.read())
    assert reply["failed"] == 0, reply


def batch_against_single(rounds: int) -> tuple[list[float], list[float]]:
    """Seconds to publish 100 messages to 100 channels of 10 members: in one request, in 100."""
    from scripts.local_stack import LocalStack, Ports

    log_dir = Path(tempfile.mkdtemp(prefix="bench-publish-"))
    with (log_dir / "serverless-offline.log").open("w") as output, LocalStack(Ports.free(), output=output, log_dir=log_dir) as stack:
        members = stack.dynamodb().Table(stack.table_names["MembersTable"])
        url = f"{stack.http_url}/publish"
        batched, single = [], []
        for _ in range(rounds):
            for mode in ("batch", "single"):
                tag = uuid.uuid4().hex[:6]
                channels = [f"bench-{tag}-{n}" for n in range(BATCH)]
                with members.batch_writer() as writer:
                    for channel in channels:
                        for m in range(10):
                            writer.put_item(Item={"channel": channel, "member": f"u{m}#c-{tag}-{m}", "connection_id": f"c-{tag}-{m}",
                                                  "user_id": f"u{m}", "joined_at": 0, "ttl": int(time.time()) + 3600})
                messages = [{"channel": channel, "sender": "ci-bot", "content": f"build {n}"} for n, channel in enumerate(channels)]
                started = time.perf_counter()
                if mode == "batch":
                    post(url, messages)
                    batched.append(time.perf_counter() - started)
                else:
                    for message in messages:
                        post(url, [message])
                    single.append(time.perf_counter() - started)
    return batched, single


def backend_concurrency() -> int:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from chat import backend

    return backend.CONVERSATIONS_AT_ONCE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    stored, posts = retries(args.messages, args.channels)
    print(f"{args.messages} publishes in batches of {BATCH}, each batch sent twice (the second a retry after a cut connection), on moto:")
    print(f"  {stored} messages stored, {posts} posts made (each exactly once: {stored == posts == args.messages})")

    batched, single = batch_against_single(args.rounds)
    b, s = statistics.median(batched), statistics.median(single)
    print(f"100 messages to 100 channels of 10 members, through the local stack, {args.rounds} alternating rounds:")
    print(f"  one request of 100:   median {b:.2f} s ({', '.join(f'{t:.2f}' for t in batched)})")
    print(f"  100 requests of one:  median {s:.2f} s ({', '.join(f'{t:.2f}' for t in single)})")
    print(f"  the batch is {s / b:.1f}x faster end to end here (until every answer is back)")
    request = (s - b) / (BATCH - 1)  # 100 (o + w) - (o + 100 w) = 99 o
    per_message = (b - request) / BATCH
    overlap = backend_concurrency()
    projected = BATCH * (request + per_message) / (request + BATCH * per_message / overlap)
    print(f"  solved from the medians: a request by itself o = {request * 1000:.1f} ms, a message w = {per_message * 1000:.1f} ms")
    print(f"  projection, not measured: with the batch's {overlap} conversations at once overlapping (network-bound work),")
    print(f"    100 x (o + w) / (o + 100 w / {overlap}) = {projected:.1f}x")
    return 0 if stored == posts == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
