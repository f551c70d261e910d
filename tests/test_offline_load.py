"""Nothing lost under load, through serverless-offline and moto server with real clients."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

from tests.helpers import connection_ids, wait_for
from tests.wsclient import Client, close_ramped, connect_ramped

CLIENTS = 200
BROADCASTS = 20
RAMP_PER_SECOND = 20


def test_200_clients_20_broadcasts_every_message_exactly_once(local_stack: Any, connections: Any) -> None:
    run = uuid.uuid4().hex[:8]
    texts = [f"load {run} #{n} 부하 테스트" for n in range(BROADCASTS)]

    async def scenario() -> list[Client]:
        urls = [local_stack.url_for(f"load-{n:03d}") for n in range(CLIENTS)]
        clients = await connect_ramped(urls, RAMP_PER_SECOND)
        assert len(connection_ids(connections)) >= CLIENTS
        # 20 broadcasts from 20 different clients, a little apart, several in flight at once.
        senders = clients[:: CLIENTS // BROADCASTS]
        for sender, text in zip(senders, texts):
            await sender.send_message(text)
            await asyncio.sleep(0.1)
        deadline = time.monotonic() + 120
        for client in clients:
            await client.wait_until(lambda c=client: set(texts) <= set(c.contents()), deadline - time.monotonic())
        await asyncio.sleep(1.0)  # late duplicates would arrive now
        await close_ramped(clients, RAMP_PER_SECOND)
        return clients

    clients = asyncio.run(scenario())

    deliveries = Counter(content for client in clients for content in client.contents() if content in texts)
    assert sum(deliveries.values()) == CLIENTS * BROADCASTS  # 4,000: none lost, none duplicated
    for client in clients:
        assert sorted(c for c in client.contents() if c in texts) == sorted(texts)
    wait_for(lambda: connection_ids(connections) == set(), timeout=60)
