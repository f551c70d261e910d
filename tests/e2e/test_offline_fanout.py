"""The fan-out path end to end: serverless-offline, serverless-offline-sqs and moto's SQS, with
real clients and thousands of stale connection rows (serverless-offline answers 410 for each)."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from chat.fanout import DELIVERY_BATCH_SIZE
from tests.support.helpers import add_stale_rows, connection_ids, queue_depth, wait_for
from tests.support.wsclient import Client

STALE_ROWS = 2_000  # bench/fanout_offline.py runs 20,000


def test_a_large_room_is_acknowledged_at_once_reached_once_and_pruned(local_stack: Any, connections: Any) -> None:
    stale = add_stale_rows(connections, STALE_ROWS)
    text = f"fan-out {uuid.uuid4().hex[:8]} 큰 방"
    log_start = log_size(local_stack)

    async def scenario() -> tuple[float, int, str]:
        clients = [await Client.connect(local_stack.url_for(f"fan-{n}")) for n in range(3)]
        acknowledged = await clients[0].broadcast(text, timeout=30)
        # Inline, the sender is answered only once every post is made and the gone rows are
        # pruned; through the queue, before the workers are done with the stale rows.
        stale_at_ack = len(stale & connection_ids(connections))
        for client in clients:
            await client.wait_until(lambda c=client: text in c.contents(), timeout=120)
        await asyncio.sleep(1.5)  # a duplicate would arrive now
        for client in clients:
            assert client.contents().count(text) == 1
        (message_id,) = {m["id"] for m in map(json_object, clients[1].frames) for m in m.get("messages", []) if m["content"] == text}
        for client in clients:
            await client.close()
        return acknowledged, stale_at_ack, message_id

    acknowledged, stale_at_ack, message_id = asyncio.run(scenario())

    assert acknowledged < 5.0, f"acknowledged after {acknowledged:.1f} s"
    assert stale_at_ack > 0, "every stale row was gone when the sender was answered: the room was posted to inline"
    wait_for(lambda: not (stale & connection_ids(connections)), timeout=120)  # every stale row pruned
    sqs = local_stack.sqs()
    wait_for(lambda: all(queue_depth(sqs, url) == 0 for url in local_stack.queue_urls.values()), timeout=60)
    # It went through SQS: the sender queued the room (ours and any rows other tests left) in
    # jobs, and delivery workers, which only the queue invokes, posted this message to every
    # connection queued, each once.
    logged = function_log(local_stack, log_start)
    (broadcast,) = [line for line in logged if line.get("message", "").startswith(f"Queued {message_id} ")]
    assert broadcast["queued"] >= STALE_ROWS + 3 and broadcast["jobs"] == -(-broadcast["queued"] // DELIVERY_BATCH_SIZE)
    jobs = [line for line in logged if line.get("message", "").startswith(f"Delivery of {message_id} ")]
    # Every job ran (a job a worker had no time for is queued again whole, a failed post again
    # alone, as a later attempt: both log a line of their own), and every connection was reached
    # once: each post counted once as sent or gone across all the lines.
    assert len(jobs) >= broadcast["jobs"]
    assert sum(job["sent"] + job["gone"] for job in jobs) == broadcast["queued"]
    assert sum(job["gone"] for job in jobs) >= STALE_ROWS


def json_object(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def log_size(local_stack: Any) -> int:
    local_stack.output.flush()
    return Path(local_stack.output.name).stat().st_size


def function_log(local_stack: Any, start: int) -> list[dict[str, Any]]:
    """The functions' JSON log lines written to serverless-offline's output since `start`."""
    local_stack.output.flush()
    with open(local_stack.output.name, "rb") as log:
        log.seek(start)
        text = log.read().decode("utf-8", errors="replace")
    return [document for line in text.splitlines() if (document := json_object(line[line.find("{"):] if "{" in line else ""))]
