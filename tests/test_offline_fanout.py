"""The fan-out path end to end: serverless-offline, serverless-offline-sqs and moto's SQS, with
real clients and thousands of stale connection rows (serverless-offline answers 410 for each)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.helpers import add_stale_rows, connection_ids, queue_depth, wait_for
from tests.wsclient import Client

STALE_ROWS = 2_000  # bench/fanout_offline.py runs 20,000


def test_a_large_room_is_acknowledged_at_once_reached_once_and_pruned(local_stack: Any, connections: Any) -> None:
    stale = add_stale_rows(connections, STALE_ROWS)
    text = f"fan-out {uuid.uuid4().hex[:8]} 큰 방"

    async def scenario() -> float:
        clients = [await Client.connect(local_stack.url_for(f"fan-{n}")) for n in range(3)]
        acknowledged = await clients[0].broadcast(text, timeout=30)
        for client in clients:
            await client.wait_until(lambda c=client: text in c.contents(), timeout=120)
        await asyncio.sleep(1.5)  # a duplicate would arrive now
        for client in clients:
            assert client.contents().count(text) == 1
        for client in clients:
            await client.close()
        return acknowledged

    acknowledged = asyncio.run(scenario())

    assert acknowledged < 5.0, f"acknowledged after {acknowledged:.1f} s"
    wait_for(lambda: not (stale & connection_ids(connections)), timeout=120)  # every stale row pruned
    sqs = local_stack.sqs()
    wait_for(lambda: all(queue_depth(sqs, url) == 0 for url in local_stack.queue_urls.values()), timeout=60)
