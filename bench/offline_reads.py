"""A read on one device shown on another (issue 30, docs/benchmarks.md), through the local stack
with real WebSocket clients: alice on a laptop and a phone, bob writing to their channel. For
each of --reads messages, alice's laptop marks it read and the time until her phone gets the
`read` frame is taken; against it, in the same run, the time until the laptop gets the reply to
its own markRead (the round trip of one frame). Printed: median and p99 of both, and the ratio.

Usage: python bench/offline_reads.py [--reads 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.local_stack import LocalStack, Ports  # noqa: E402
from tests.support.wsclient import Client  # noqa: E402


async def run(stack: LocalStack, reads: int) -> tuple[list[float], list[float]]:
    """(ms to the other device, ms to the reply) for each read."""
    channel = f"reads-{int(time.time())}"
    laptop = await Client.connect(stack.url_for("alice"))
    phone = await Client.connect(stack.url_for("alice"))
    bob = await Client.connect(stack.url_for("bob"))
    for client in (laptop, bob):
        await client.send_all([{"action": "join", "channel": channel}], 0)
    await bob.send_all([{"action": "sendMessage", "channel": channel, "content": f"m{n}"} for n in range(reads)], 0.15)
    other, reply = [], []
    for seq in range(1, reads + 1):
        seen = len(phone.frames)
        answered = len(laptop.frames)
        started = time.perf_counter()
        await laptop.send(json.dumps({"action": "markRead", "channel": channel, "seq": seq, "ref": f"r{seq}"}))
        await laptop.wait_until(lambda s=seq: f"r{s}" in laptop.answers(), 30)
        await phone.wait_until(lambda n=seen: any(f.startswith('{"read"') for f in phone.frames[n:]), 30)
        # When each arrived (the clients stamp every frame), not when this loop looked.
        got = next(i for i in range(seen, len(phone.frames)) if phone.frames[i].startswith('{"read"'))
        replied = next(i for i in range(answered, len(laptop.frames)) if f'"ref":"r{seq}"' in laptop.frames[i].replace(" ", ""))
        other.append((phone.arrivals[got] - started) * 1000)
        reply.append((laptop.arrivals[replied] - started) * 1000)
        await asyncio.sleep(0.12)  # within alice's frame budget (10 a second)
    for client in (laptop, phone, bob):
        await client.close()
    return other, reply


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 100 else max(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs, open(Path(logs) / "offline.log", "w") as output:
        with LocalStack(Ports.free(), output=output, log_dir=Path(logs)) as stack:
            other, reply = asyncio.run(run(stack, args.reads))
    print(f"A read on alice's laptop, seen on her phone, {args.reads} reads through the local stack:")
    print(f"  on the other device: median {statistics.median(other):.0f} ms, p99 {p99(other):.0f} ms")
    print(f"  the reply to the laptop itself (baseline): median {statistics.median(reply):.0f} ms, p99 {p99(reply):.0f} ms")
    print(f"  ratio of the medians: {statistics.median(other) / statistics.median(reply):.2f}x")


if __name__ == "__main__":
    main()
