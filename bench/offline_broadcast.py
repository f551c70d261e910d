"""End-to-end broadcast latency through the local stack (serverless-offline + moto server).

Starts the same stack as `make offline` on free ports, then, with real WebSocket clients:

  baseline  1 connected client: time from send until it has the broadcast
  N clients N connected clients (ramped in): time from send until the LAST one has it

Each broadcast is sent after the previous one has reached everybody, from a different client.
Prints median and p95 of both, their ratio, and the resident memory of the whole stack (moto,
node, every Python worker) idle and at the end.

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
from tests.wsclient import Client, close_ramped, connect_ramped  # noqa: E402


async def broadcast_latencies(clients: list[Client], count: int, tag: str) -> list[float]:
    """Seconds from send until every client has the message, one broadcast at a time."""
    latencies = []
    for n in range(count):
        sender = clients[n % len(clients)]
        text = f"{tag} #{n} 벤치마크"
        sent = time.perf_counter()
        await sender.send_message(text)
        for client in clients:
            await client.wait_until(lambda c=client: text in c.contents(), timeout=60)
        latencies.append(max(client.arrival_of(text) for client in clients) - sent)
    return latencies


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
    print(f"broadcast latency through serverless-offline, {broadcasts} broadcasts each")
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
        with LocalStack(Ports.free(), output=output, log_dir=Path(logs)) as stack:
            asyncio.run(run(stack, args.clients, args.broadcasts, args.ramp))


if __name__ == "__main__":
    main()
