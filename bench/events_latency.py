"""From store to event, through the local stack: a client sends messages to a channel, one at a
time (ramped: the next only once it has the previous one back, and 0.25 s later, within the
user's rate limit); for each, the time from its store
(the event's `sentAt`) to its message.created in the file `make events` follows (the stream read
by the local feeder, the events function, PutEvents, moto's rule to the tap queue, the tap's
thread), against the time
from the same store to the message reaching the sender's own WebSocket (the baseline, same run).

On AWS the stream's side differs: Lambda polls a DynamoDB stream about four times a second
("Using AWS Lambda with Amazon DynamoDB"), the local feeder every 0.25 s when idle.

Usage: python bench/events_latency.py [--messages 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts import local_events  # noqa: E402
from scripts.local_stack import LocalStack, Ports  # noqa: E402
from tests.support.wsclient import Client  # noqa: E402


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100)
    args = parser.parse_args()
    channel = f"bench-{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as log_dir, (Path(log_dir) / "offline.log").open("w") as log:
        with LocalStack(Ports.free(), output=log, log_dir=Path(log_dir)) as stack:
            arrivals: dict[int, float] = {}
            stop = threading.Event()

            source = stack.events_file.open(encoding="utf-8")

            def read_tap() -> None:
                for line in local_events.follow(source, poll=0.01):
                    event = json.loads(line)
                    detail = event["detail"]
                    if event["detail-type"] == "message.created" and detail["conversation"].get("channel") == channel:
                        arrivals[detail["seq"]] = time.time() - epoch(detail["sentAt"])
                    if stop.is_set():
                        return

            reader = threading.Thread(target=read_tap, daemon=True)
            reader.start()

            async def scenario() -> list[float]:
                client = await Client.connect(stack.url_for("bench-sender"))
                await client.send(json.dumps({"action": "join", "channel": channel, "ref": "join"}))
                await asyncio.sleep(1)
                live: list[float] = []
                for n in range(args.messages):
                    await asyncio.sleep(0.25)  # within the user's rate limit (10 a second)
                    await client.send(json.dumps({"action": "sendMessage", "channel": channel, "content": f"m{n}"}))
                    await client.wait_until(lambda n=n: f"m{n}" in client.contents(), timeout=60)
                    for frame in client.frames[::-1]:
                        document: Any = json.loads(frame)
                        messages = document.get("messages") if isinstance(document, dict) else None
                        if messages and messages[0].get("content") == f"m{n}":
                            live.append(time.time() - epoch(messages[0]["sent_at"]))
                            break
                await client.close()
                return live

            live = asyncio.run(scenario())
            deadline = time.monotonic() + 60
            while len(arrivals) < args.messages and time.monotonic() < deadline:
                time.sleep(0.2)
            stop.set()
    to_event = list(arrivals.values())
    print(f"{args.messages} messages, one at a time, to one channel through the local stack")
    print(f"events received: {len(to_event)}/{args.messages} (distinct seqs)")
    print(f"store -> message.created in the events file: median {statistics.median(to_event) * 1000:.0f} ms, "
          f"p99 {percentile(to_event, 0.99) * 1000:.0f} ms")
    print(f"store -> the sender's own WebSocket (baseline): median {statistics.median(live) * 1000:.0f} ms, "
          f"p99 {percentile(live, 0.99) * 1000:.0f} ms")
    print(f"ratio of medians (event / WebSocket): {statistics.median(to_event) / statistics.median(live):.1f}x")
    return 0 if len(to_event) == args.messages else 1


if __name__ == "__main__":
    sys.exit(main())
