"""A large room through the local stack: 20,000 connection rows, 3 real clients.

The rows are of connections that no longer exist (serverless-offline answers 410 for each), so
every one must be posted to once and then pruned. Two runs in this process, each on a fresh
local stack (serverless-offline, serverless-offline-sqs, moto):

  fan-out  serverless.yml's settings: the sender queues jobs, the delivery worker posts
  inline   the same with fanoutThreshold raised above the room: sendMessage posts to all itself

Printed for each: when the sender had its acknowledgement, when all 3 clients had the message,
when the last stale row was gone, and whether the queue and the DLQ ended empty.

Usage: python bench/fanout_offline.py [--rows 20000] [--skip-inline]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.local_stack import LocalStack, Ports  # noqa: E402
from tests.support.helpers import add_stale_rows, connection_ids, queue_depth  # noqa: E402
from tests.support.wsclient import Client  # noqa: E402



def run(rows: int, params: dict[str, str], log: Any, log_dir: Path) -> dict[str, Any]:
    with LocalStack(Ports.free(), output=log, log_dir=log_dir, params=params) as stack:
        table = stack.dynamodb().Table(stack.table_names["ConnectionsTable"])
        stale = add_stale_rows(table, rows)
        text = f"big room {uuid.uuid4().hex[:6]}"

        async def scenario() -> dict[str, float]:
            clients = [await Client.connect(stack.url_for(f"bench-{n}")) for n in range(3)]
            started = time.monotonic()
            acknowledged = await clients[0].broadcast(text, timeout=600)
            for client in clients:
                await client.wait_until(lambda c=client: text in c.contents(), timeout=600)
            delivered = time.monotonic() - started
            pruned_at = None
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                if not stale & connection_ids(table):
                    pruned_at = time.monotonic() - started
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(1.0)
            copies = [client.contents().count(text) for client in clients]
            for client in clients:
                await client.close()
            return {"ack": acknowledged, "delivered": delivered, "pruned": pruned_at, "copies": copies}

        result = asyncio.run(scenario())
        sqs = stack.sqs()
        result["queues"] = {name: queue_depth(sqs, url) for name, url in stack.queue_urls.items()}
        return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--skip-inline", action="store_true", help="only the fan-out run (the inline one takes minutes)")
    args = parser.parse_args()

    runs = {"fan-out": {}}
    if not args.skip_inline:
        runs["inline"] = {"fanoutThreshold": str(args.rows * 10)}
    print(f"{args.rows:,} stale connection rows + 3 real clients, one broadcast:")
    with tempfile.TemporaryDirectory() as logs:
        for name, params in runs.items():
            with (Path(logs) / f"{name}.log").open("w") as log:
                result = run(args.rows, params, log, Path(logs))
            pruned = f"{result['pruned']:.1f} s" if result["pruned"] is not None else "not within 600 s"
            print(
                f"  {name:8} ack after {result['ack']:6.2f} s, all 3 clients had it after {result['delivered']:6.2f} s, "
                f"every stale row pruned after {pruned}; copies per client {result['copies']}; "
                f"messages left in the queues {result['queues']}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
