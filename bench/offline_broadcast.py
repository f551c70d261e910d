"""End-to-end broadcast latency through the local stack (serverless-offline + moto server).

Starts the same stack as `make offline` on free ports, then, with real WebSocket clients:

  baseline  1 connected client: time from send until it has the broadcast
  N clients N connected clients (ramped in): time from send until the LAST one has it

Each broadcast is sent after the previous one has reached everybody, from a different client.
Prints median and p95 of both, their ratio, and the resident memory of the whole stack (moto,
node, every Python worker) idle and at the end.

The stack keeps its per-connection rate limit (5 messages a second, 10 at once; the bench sets
both explicitly), so the baseline's single client, which sends every message, waits 0.25 s
between two sends: back to back, its 11th would be refused (429) and never broadcast. The wait
comes before a send, outside the time measured. A refusal stops the bench at once, saying so.

Usage: python bench/offline_broadcast.py [--clients 100] [--broadcasts 30] [--ramp 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.local_stack import LocalStack, Ports, stack_rss_bytes  # noqa: E402
from tests.support.wsclient import Client, close_ramped, connect_ramped  # noqa: E402

# The stack's per-connection limit (serverless.yml: connectionRate, connectionBurst), set here so
# that the pace below stays right whatever the defaults become.
CONNECTION_RATE, CONNECTION_BURST = 5, 10
# One client sends at most one message this often: under CONNECTION_RATE, with a margin.
SEND_INTERVAL = 1.25 / CONNECTION_RATE
REFUSED = "Too many messages"


class BenchError(RuntimeError):
    """The stack refused a message the bench sent: its figures would be wrong."""


async def broadcast_latencies(clients: list[Client], count: int, tag: str) -> list[float]:
    """Seconds from send until every client has the message, one broadcast at a time, each
    client sending at most one message every SEND_INTERVAL."""
    latencies = []
    last_sent: dict[int, float] = {}
    for n in range(count):
        sender = clients[n % len(clients)]
        wait = last_sent.get(id(sender), -SEND_INTERVAL) + SEND_INTERVAL - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        text = f"{tag} #{n} 벤치마크"
        refusals = len([r for r in sender.replies() if r.startswith(REFUSED)])
        sent = last_sent[id(sender)] = time.perf_counter()
        await sender.send_message(text)
        for client in clients:
            await client.wait_until(lambda c=client: text in c.contents() or refused(sender, refusals), timeout=60)
            if refused(sender, refusals):
                raise BenchError(f"the stack refused {text!r}: {sender.replies()[-1]}")
        latencies.append(max(client.arrival_of(text) for client in clients) - sent)
    return latencies


def refused(sender: Client, before: int) -> bool:
    """The sender got a 429 it did not have before."""
    return len([r for r in sender.replies() if r.startswith(REFUSED)]) > before


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1] if len(values) >= 2 else values[0]


def describe(name: str, values: list[float]) -> str:
    return f"  {name:<22} median {statistics.median(values) * 1000:7.1f} ms   p95 {p95(values) * 1000:7.1f} ms   (n={len(values)})"


async def run(stack: LocalStack, clients_wanted: int, broadcasts: int, ramp: float) -> None:
    mib = 1024 * 1024
    single = await connect_ramped([stack.url_for("baseline")], ramp)
    await broadcast_latencies(single, 2, "warm-up")
    baseline = await broadcast_latencies(single, broadcasts, "baseline")
    await close_ramped(single, ramp)

    clients = await connect_ramped([stack.url_for(f"bench-{n:03d}") for n in range(clients_wanted)], ramp)
    idle_rss = stack_rss_bytes(stack.process_groups())
    latencies = await broadcast_latencies(clients, broadcasts, "load")
    busy_rss = stack_rss_bytes(stack.process_groups())
    await close_ramped(clients, ramp)

    lost = sum(1 for c in clients for n in range(broadcasts) if f"load #{n} 벤치마크" not in c.contents())
    print(f"broadcast latency through serverless-offline, {broadcasts} broadcasts each "
          f"(per-connection rate limit on, {CONNECTION_RATE}/s burst {CONNECTION_BURST}: "
          f"a client sends at most one message every {SEND_INTERVAL:.2f} s)")
    print(describe("1 client (baseline)", baseline))
    print(describe(f"{clients_wanted} clients (last one)", latencies))
    print(f"  ratio {clients_wanted} clients / 1 client: median {statistics.median(latencies) / statistics.median(baseline):.1f}x, "
          f"p95 {p95(latencies) / p95(baseline):.1f}x")
    print(f"  deliveries: {clients_wanted * broadcasts - lost}/{clients_wanted * broadcasts}")
    print(f"  stack memory (RSS of moto + node + Python workers): {idle_rss / mib:.0f} MiB with "
          f"{clients_wanted} idle clients, {busy_rss / mib:.0f} MiB after the broadcasts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--broadcasts", type=int, default=30)
    parser.add_argument("--ramp", type=float, default=20.0, help="connects/disconnects per second")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs, open(Path(logs) / "offline.log", "w") as output:
        params = {"connectionRate": str(CONNECTION_RATE), "connectionBurst": str(CONNECTION_BURST)}
        with LocalStack(Ports.free(), output=output, log_dir=Path(logs), params=params) as stack:
            try:
                asyncio.run(run(stack, args.clients, args.broadcasts, args.ramp))
            except BenchError as error:
                sys.exit(f"bench/offline_broadcast.py: {error}")


if __name__ == "__main__":
    main()
