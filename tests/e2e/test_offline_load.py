"""Nothing lost under load, through serverless-offline and moto server with real clients."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import Counter
from typing import Any

from chat import ratelimit
from tests.support.flood import flood
from tests.support.helpers import connection_ids, wait_for
from tests.support.wsclient import Client, close_ramped, connect_ramped, documents

CLIENTS = 200
BROADCASTS = 20
RAMP_PER_SECOND = 20


def test_200_clients_20_broadcasts_every_message_once_by_seq(local_stack: Any, connections: Any) -> None:
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

    # None lost, and none twice once a client drops a seq it has (docs/delivery.md, "When a frame
    # may arrive twice": a post whose answer timed out on the loaded machine is made again, and
    # it may have landed). The repeats are counted: they are the exception, not the rule.
    deliveries = Counter(content for client in clients for content in client.contents() if content in texts)
    for client in clients:
        by_seq = {m["seq"]: m["content"] for batch in documents(client, "messages") for m in batch if m.get("content") in texts}
        assert sorted(by_seq.values()) == sorted(texts)  # every message, each under one seq
    repeats = sum(deliveries.values()) - CLIENTS * BROADCASTS
    print(f"\n{repeats} repeated frames of {CLIENTS * BROADCASTS}")
    assert 0 <= repeats <= CLIENTS * BROADCASTS // 20
    wait_for(lambda: connection_ids(connections) == set(), timeout=60)


# Short enough for CI; bench/offline_flood.py runs the same for a minute, with 10 clients. Five
# clients at their rate limit are 50 invocations of sendMessage a second, more than four workers
# keep up with on a loaded 2-core machine: the cap is what is tested, not the machine. (Ten were
# 100 a second, 1,000 posts a second: on CI the backlog grew past API Gateway's 29 s, 1,280 frames
# went unanswered for 30 s and were sent again, and a post timed out; the stack was uncapped by
# nothing but its load.)
FLOOD_SECONDS = 10
FLOOD_CLIENTS = 5


def test_memory_stays_flat_while_5_clients_send_at_their_rate_limit(local_stack: Any, service_config_test: dict[str, Any]) -> None:
    """serverless-offline used to start a Python worker for every invocation that arrived while
    the others were busy (5 clients once grew it to 465 workers and 24 GB). Capped per function
    (custom.serverless-offline.maxConcurrency, patched in), invocations wait instead: no function
    has more workers than the cap, memory stays flat, and nothing is lost or duplicated."""
    cap = int(os.environ.get("OFFLINE_LAMBDA_CONCURRENCY") or 0) or 4  # 0 (uncapped) is held to the default
    bound = cap * len(service_config_test["functions"])

    report = asyncio.run(
        flood(local_stack, FLOOD_CLIENTS, FLOOD_SECONDS, ratelimit.MESSAGE_RATE_PER_SECOND * ratelimit.USER_SHARE, max_workers=bound)
    )

    assert report.stopped_early == "" and report.peak_workers <= bound
    assert report.peak_by_function["send_message"] >= 1 and max(report.peak_by_function.values()) <= cap, report.peak_by_function
    half, end = FLOOD_SECONDS / 2, FLOOD_SECONDS + 60
    first, second = report.rss_mib(0, half), report.rss_mib(half, end)
    # Flat within 256 MiB: an uncapped stack grew by gigabytes (465 workers, 24 GB). A warm stack
    # grew by at most 83 MiB under CI's load; a cold one (a worker whose stack served few tests
    # before) was seen still warming in the second half, by 166 MiB.
    assert max(second) <= max(first) + 256, f"memory grew: {max(first):.0f} MiB -> {max(second):.0f} MiB"
    # The workers' share is what the cap holds; moto's grows with the stored messages. A worker is
    # about 48 MB: one more started in the second half (another function's first call) is within
    # the cap; the failure this guards against was hundreds.
    assert max(report.rss_mib(half, end, "workers")) <= max(report.rss_mib(0, half, "workers")) + 2 * 48
    # Every message stored (a frame the server did not store, conversation_busy say, is sent again
    # with its clientMessageId as docs/protocol.md tells a client), none refused by the rate limit...
    assert report.unsent == [] and report.refused == 0, (report.unsent[:5], report.retried)
    missing = [sorted(Counter(report.sent) - received)[:5] for received in report.received]
    assert report.drained_after is not None, f"missing after {report.seconds} s: {missing}; sent again: {report.retried}"  # ...arrived...
    assert all(received == Counter(report.sent) for received in report.received)  # ...once, to everyone
