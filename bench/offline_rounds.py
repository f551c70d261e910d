"""Admission by posts through the local stack (issue 28), bounded for a 2-core machine:

1. Small channels: --channels channels of --members members (real WebSocket clients, connected
   ramped), --rate channel messages a second in all, each from a member of a channel taken in
   turn, for --seconds: how many sends were refused (none expected: each channel is posted to
   from the send, the stage throttle is far above), and whether every member got every message
   of its channel once.
2. A busy channel: --busy-members members, --busy-rate messages a second for --busy-seconds:
   every member gets every seq once; the frames each member got a second (at most 4, the rounds'
   bound, plus the first), and how many messages a frame carried.

Usage: python bench/offline_rounds.py [--channels 100 --members 10 --rate 20 --seconds 30]
                                      [--busy-members 300 --busy-rate 10 --busy-seconds 10]
                                      [--only small|busy]
(Run the parts apart on a 2-core machine: after 1,000 clients close, the stack's $disconnects
keep it busy long enough that new handshakes time out.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.local_stack import LocalStack, Ports  # noqa: E402
from tests.support.wsclient import Client, close_ramped, connect_ramped, documents  # noqa: E402

CONNECT_PER_SECOND = 25


async def join_all(clients: list[Client], channels: list[str]) -> None:
    for client, channel in zip(clients, channels):
        await client.send(json.dumps({"action": "join", "channel": channel}))
        await asyncio.sleep(1 / CONNECT_PER_SECOND)
    for client in clients:
        await client.wait_until(lambda c=client: bool(documents(c, "joined")), 60)


def seqs_in(client: Client, channel: str) -> list[int]:
    return [m["seq"] for batch in documents(client, "messages") for m in batch if m.get("channel") == channel]


async def small_channels(stack: LocalStack, args: argparse.Namespace, run: str) -> None:
    names = [f"small-{run}-{n}" for n in range(args.channels)]
    urls = [stack.url_for(f"s{run}-{c}-{m}") for c in range(args.channels) for m in range(args.members)]
    started = time.monotonic()
    clients = await connect_ramped(urls, CONNECT_PER_SECOND)
    await join_all(clients, [names[i // args.members] for i in range(len(clients))])
    print(f"small channels: {len(clients)} clients connected and joined in {time.monotonic() - started:.0f} s")
    sent: Counter[str] = Counter()
    begin = time.monotonic()
    total = int(args.rate * args.seconds)
    for n in range(total):
        await asyncio.sleep(max(0.0, begin + n / args.rate - time.monotonic()))
        channel = n % args.channels
        sender = clients[channel * args.members + (n // args.channels) % args.members]
        await sender.send(
            json.dumps({"action": "sendMessage", "channel": names[channel], "content": f"{n}", "ref": f"r{n}"})
        )
        sent[names[channel]] += 1
    deadline = time.monotonic() + 120
    for index, client in enumerate(clients):
        channel = names[index // args.members]
        while len(seqs_in(client, channel)) < sent[channel] and time.monotonic() < deadline:
            await client.wait_until(
                lambda c=client, ch=channel: len(seqs_in(c, ch)) >= sent[ch], max(0.1, deadline - time.monotonic())
            )
    await asyncio.sleep(1)
    answers = [reply for client in clients for reply in client.answers().values()]
    refused = Counter(reply["error"]["code"] for reply in answers if reply["status"] != 200)
    complete = all(
        sorted(seqs_in(client, names[i // args.members])) == list(range(1, sent[names[i // args.members]] + 1))
        for i, client in enumerate(clients)
    )
    print(
        f"  {total} messages in {args.seconds:g} s ({args.rate:g}/s), {len(answers)} answered, refused: {dict(refused) or 0}"
    )
    print(f"  every member got every message of its channel once: {complete}")
    await close_ramped(clients, CONNECT_PER_SECOND)


async def busy_channel(stack: LocalStack, args: argparse.Namespace, run: str) -> None:
    channel = f"busy-{run}"
    clients = await connect_ramped([stack.url_for(f"b{run}-{m}") for m in range(args.busy_members)], CONNECT_PER_SECOND)
    await join_all(clients, [channel] * len(clients))
    senders = clients[:10]  # each within its 10 a second
    total = int(args.busy_rate * args.busy_seconds)
    begin = time.monotonic()
    for n in range(total):
        await asyncio.sleep(max(0.0, begin + n / args.busy_rate - time.monotonic()))
        await senders[n % len(senders)].send(
            json.dumps({"action": "sendMessage", "channel": channel, "content": f"{n}", "ref": f"r{n}"})
        )
    deadline = time.monotonic() + 180
    for client in clients:
        await client.wait_until(
            lambda c=client: len(seqs_in(c, channel)) >= total, max(0.1, deadline - time.monotonic())
        )
    await asyncio.sleep(1)
    complete = all(sorted(seqs_in(c, channel)) == list(range(1, total + 1)) for c in clients)
    per_member = []
    sizes = []
    for client in clients:
        frames = [(at, json.loads(f)) for f, at in zip(client.frames, client.arrivals) if f.startswith('{"messages"')]
        spread = max(frames[-1][0] - frames[0][0], 1e-9) if len(frames) > 1 else 1.0
        per_member.append((len(frames) - 1) / spread if len(frames) > 1 else 0.0)
        sizes += [len(document["messages"]) for _, document in frames]
    refused = sum(1 for c in senders for reply in c.answers().values() if reply["status"] != 200)
    print(f"busy channel: {len(clients)} members, {total} messages at {args.busy_rate:g}/s, refused: {refused}")
    print(f"  every member got every seq once: {complete}")
    print(
        f"  frames a member got a second after the first: median {statistics.median(per_member):.2f}, "
        f"max {max(per_member):.2f} (bound 4)"
    )
    print(f"  messages a frame: median {statistics.median(sizes):.0f}, max {max(sizes)}")
    await close_ramped(clients, CONNECT_PER_SECOND)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--channels", type=int, default=100)
    parser.add_argument("--members", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--busy-members", type=int, default=300)
    parser.add_argument("--busy-rate", type=float, default=10)
    parser.add_argument("--busy-seconds", type=float, default=10)
    parser.add_argument("--only", choices=["small", "busy"], help="run one part (each on a fresh stack)")
    args = parser.parse_args()
    run = uuid.uuid4().hex[:4]
    with tempfile.TemporaryDirectory() as log_dir, (Path(log_dir) / "offline.log").open("w") as log:
        with LocalStack(Ports.free(), output=log, log_dir=Path(log_dir)) as stack:
            if args.only != "busy":
                asyncio.run(small_channels(stack, args, run))
            if args.only != "small":
                asyncio.run(busy_channel(stack, args, run))
    return 0


if __name__ == "__main__":
    sys.exit(main())
