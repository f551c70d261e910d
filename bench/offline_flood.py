"""The local stack's memory while clients send at their rate limit for a minute.

Starts the same stack as `make offline` on free ports (Python workers capped per function by
OFFLINE_LAMBDA_CONCURRENCY, default 4), then --clients users, one connection each, each send a
room message --rate times a second (their rate limit: 10) for --seconds. Every second it reads
the resident memory of the whole stack (moto, node, every Python worker; each kind apart too:
moto keeps the tables, so the stored history, in its memory) and counts the Python workers. Then it waits until every client has every accepted message. Prints the memory at the
start, in each quarter and at the end, the peak number of workers, how many messages were sent,
refused (429) and delivered (each at most once), and how long the backlog took to drain.

Before the cap, 5 clients at 4 messages a second grew the stack to 465 workers and 24 GB (issue
18). Do not run it with OFFLINE_LAMBDA_CONCURRENCY=0 without --max-workers: it stops the run
once the stack has more workers than that (default 60).

Usage: python bench/offline_flood.py [--clients 10] [--seconds 60] [--rate 10] [--max-workers 60] [--drain 240]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.local_stack import LocalStack, Ports  # noqa: E402
from tests.support.flood import flood  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=10.0, help="messages a second per client")
    parser.add_argument("--max-workers", type=int, default=60)
    parser.add_argument("--drain", type=float, default=240.0, help="seconds to wait for every message to arrive")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs, open(Path(logs) / "offline.log", "w") as output:
        with LocalStack(Ports.free(), output=output, log_dir=Path(logs)) as stack:
            report = asyncio.run(flood(stack, args.clients, args.seconds, args.rate, max_workers=args.max_workers, drain_timeout=args.drain))
    quarter = args.seconds / 4
    print(f"{args.clients} clients x {args.rate:g} messages/s for {args.seconds:g} s through the local stack "
          f"(OFFLINE_LAMBDA_CONCURRENCY={os.environ.get('OFFLINE_LAMBDA_CONCURRENCY', '4 (default)')}):")
    if report.stopped_early:
        print(f"  STOPPED EARLY: {report.stopped_early}")
    print(f"  stack memory at start: {report.rss_mib()[0]:.0f} MiB")
    for n in range(4):
        values = report.rss_mib(n * quarter, (n + 1) * quarter)
        if values:
            parts = ", ".join(
                f"{kind} {statistics.median(report.rss_mib(n * quarter, (n + 1) * quarter, kind)):.0f}"
                for kind in ("workers", "node", "moto")
            )
            print(f"  quarter {n + 1}: median {statistics.median(values):.0f} MiB, max {max(values):.0f} MiB ({parts} MiB)")
    print(f"  stack memory at the end: {report.rss_mib()[-1]:.0f} MiB; peak Python workers: {report.peak_workers}")
    accepted = len(report.sent)
    copies = sum(sum(received.values()) for received in report.received)
    once = all(set(received.values()) <= {1} for received in report.received)
    print(f"  messages stored {len(report.sent)}, never stored {len(report.unsent)}, refused by the rate limit "
          f"{report.refused} times, sent again {dict(report.retried) or 'never'}; "
          f"frames delivered {copies} of {accepted * args.clients} ({'each at most once' if once else 'DUPLICATES'}); "
          + (f"the backlog drained {report.drained_after:.0f} s after the last answer" if report.drained_after is not None
             else "NOT all delivered within the drain timeout"))


if __name__ == "__main__":
    main()
