"""A busy channel through the local stack (issue 28): above the fan-out threshold its messages go
out in rounds, through the real worker and queue, every seq once, and a member gets at most
roundsPerSecond (4) frames a second, however fast the messages come."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from tests.support.helpers import fresh
from tests.support.wsclient import Client, connect_ramped, documents

MEMBERS = 12  # above fanoutThreshold (10): the workers' audience
SENDERS = 4
EACH = 5  # within a connection's burst (10): the four send back to back, at once
ROUNDS_PER_SECOND = 4


def test_a_busy_channel_gets_every_seq_once_in_at_most_four_frames_a_second(local_stack: Any) -> None:
    channel, *users = fresh("rounds", *(f"m{n}" for n in range(MEMBERS)))

    async def scenario() -> tuple[list[Client], float]:
        clients = await connect_ramped([local_stack.url_for(user) for user in users], per_second=5)
        for client in clients:
            await client.send(json.dumps({"action": "join", "channel": channel}))
            await client.wait_until(lambda c=client: bool(documents(c, "joined")), 30)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                client.send_all(
                    [{"action": "sendMessage", "channel": channel, "content": f"{n}:{k}"} for k in range(EACH)], 0
                )
                for n, client in enumerate(clients[:SENDERS])
            )
        )
        for client in clients:
            await client.wait_until(lambda c=client: len(seqs(c, channel)) >= SENDERS * EACH, 60)
        await asyncio.sleep(1)  # anything sent twice would come now
        for client in clients:
            await client.close()
        return clients, started

    clients, started = asyncio.run(scenario())

    for client in clients:
        frames = [batch for batch in documents(client, "messages") if batch and batch[0].get("channel") == channel]
        got = [m["seq"] for batch in frames for m in batch]
        assert sorted(got) == list(range(1, SENDERS * EACH + 1))  # every seq once
        assert all([m["seq"] for m in batch] == sorted(m["seq"] for m in batch) for batch in frames)
        arrivals = [at for frame, at in zip(client.frames, client.arrivals) if frame.startswith('{"messages"')]
        seconds = arrivals[-1] - started
        print(f"\n{len(frames)} frames for {len(got)} messages in {seconds:.2f} s")
        assert len(frames) <= 1 + seconds * ROUNDS_PER_SECOND


def seqs(client: Client, channel: str) -> list[int]:
    return [m["seq"] for batch in documents(client, "messages") for m in batch if m.get("channel") == channel]
