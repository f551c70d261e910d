"""The local stack's Lambda workers (patches/serverless-offline+14.8.2.patch, docs/local.md): at
most a few Python workers per function, as Lambda's reserved concurrency would cap them. A worker
whose handler raises, or whose process dies, gives its slot back, so that no client can leave a
function dead for everyone; and invocations waiting for a slot take turns by user, so that one
user's flood of frames waits behind itself, not ahead of everyone else. And the sweeper runs once
per schedule, not twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from scripts.local_stack import stack_processes_now
from tests.support.helpers import fresh
from tests.support.wsclient import Client, documents

FUNCTION = "serverless-websocket-dev-getPresence"


def invoke_raw(local_stack: Any, payload: bytes) -> int:
    """Invoke a function through serverless-offline's Lambda API, as `aws lambda invoke` would."""
    url = f"http://localhost:{local_stack.ports.lambda_}/2015-03-31/functions/{FUNCTION}/invocations"
    with urllib.request.urlopen(urllib.request.Request(url, data=payload, method="POST"), timeout=60) as answer:
        answer.read()
        return int(answer.status)


async def presence_reply(local_stack: Any, user: str, channel: str, timeout: float = 20.0) -> dict[str, Any]:
    client = await Client.connect(local_stack.url_for(user))
    try:
        await client.send(json.dumps({"action": "getPresence", "channel": channel, "ref": "p"}))
        await client.wait_until(lambda: documents(client, "reply"), timeout=timeout)
        return dict(documents(client, "reply")[0])
    finally:
        await client.close()


def test_a_function_whose_handler_raises_ten_times_still_answers(local_stack: Any) -> None:
    # An event no API Gateway sends (a JSON string) makes the entry point raise before it can
    # answer. Each such invocation used to end its worker process and keep its slot: four of
    # them (the cap) and getPresence answered nobody until the stack was restarted.
    for _ in range(10):
        invoke_raw(local_stack, b'"not an event"')
    (alice,) = fresh("alice")

    reply = asyncio.run(presence_reply(local_stack, alice, "crash-test"))

    assert reply["ref"] == "p" and reply["status"] == 200


def python_workers(local_stack: Any, function_handler: str) -> list[int]:
    """The pids of the stack's Python workers running `handler.<function_handler>`."""
    return [process.pid for process in stack_processes_now(local_stack.process_groups()) if process.handler == function_handler]


def test_a_worker_that_died_is_replaced_without_failing_anyone(local_stack: Any) -> None:
    (alice,) = fresh("alice")
    assert asyncio.run(presence_reply(local_stack, alice, "warm-up"))["status"] == 200
    workers = python_workers(local_stack, "get_presence")
    assert workers  # warm
    for pid in workers:
        os.kill(pid, signal.SIGKILL)  # out of memory, or killed by hand

    reply = asyncio.run(presence_reply(local_stack, alice, "after-kill"))

    assert reply["status"] == 200


def test_one_users_flood_does_not_queue_ahead_of_another_users_frame(local_stack: Any) -> None:
    flooder, bystander = fresh("mallory", "bob")

    async def scenario() -> tuple[list[float], float]:
        noisy = await Client.connect(local_stack.url_for(flooder))
        quiet = await Client.connect(local_stack.url_for(bystander))
        for n in range(60):  # mostly refused by the rate limit: every one still runs the function
            await noisy.send(json.dumps({"action": "getPresence", "channel": "lobby", "ref": f"f{n}"}))
        await asyncio.sleep(0.05)
        sent = time.perf_counter()
        await quiet.send(json.dumps({"action": "getPresence", "channel": "lobby", "ref": "q"}))
        await quiet.wait_until(lambda: documents(quiet, "reply"), timeout=60)
        answered = quiet.arrivals[-1] - sent
        await noisy.wait_until(lambda: len(documents(noisy, "reply")) == 60, timeout=120)
        flood_done = [arrived - sent for arrived in noisy.arrivals]
        await noisy.close()
        await quiet.close()
        return flood_done, answered

    flood_done, answered = asyncio.run(scenario())

    # Callers take turns: bob's frame goes ahead of most of mallory's, queued before it.
    behind = [at for at in flood_done if at > answered]
    assert len(behind) > 30, (answered, flood_done)


def test_the_sweeper_runs_on_the_stacks_schedule_alone(local_stack: Any) -> None:
    """make offline invokes the sweeper itself, every sweep bucket (5 s here, a minute by default).
    serverless-offline would also run serverless.yml's `rate(1 minute)` schedule: a second sweeper
    each minute, running beside the first, which on AWS (reserved concurrency 1) never happens.
    plugins/offline.js takes the schedule out offline: serverless-offline schedules nothing."""
    started = time.monotonic()
    while local_stack.sweeps_run < 1 and time.monotonic() - started < 30:
        time.sleep(0.2)
    log = Path(local_stack.output.name).read_text(errors="replace")
    assert local_stack.sweeps_run >= 1
    assert "Scheduling [" not in log and "scheduled function" not in log
