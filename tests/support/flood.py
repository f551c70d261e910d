"""Clients sending at their rate limit into the local stack, while the stack's memory and its
Python workers are sampled: the load test (tests/e2e/test_offline_load.py, a short run) and its
minute-long version (bench/offline_flood.py) share it."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from scripts.local_stack import StackProcess, stack_processes_now
from tests.support.wsclient import Client, close_ramped, connect_ramped

MIB = 1024 * 1024


def by_kind(processes: list[StackProcess]) -> dict[str, tuple[int, int]]:
    """The stack's processes by kind: "workers" (serverless-offline's Python workers, invoke.py),
    "moto" (moto server, which holds the tables in memory) and "node" (serverless-offline and the
    rest); each (how many, resident bytes). A process holding no memory is not counted."""
    kinds: dict[str, list[int]] = {"workers": [0, 0], "moto": [0, 0], "node": [0, 0]}
    for process in processes:
        if process.rss is None:
            continue
        command = b" ".join(process.argv)
        kind = "workers" if b"invoke.py" in command else "moto" if b"moto" in command else "node"
        kinds[kind][0] += 1
        kinds[kind][1] += process.rss
    return {kind: (count, rss) for kind, (count, rss) in kinds.items()}


def workers_by_function(processes: list[StackProcess]) -> Counter:
    """serverless-offline's Python workers, by the handler each serves."""
    return Counter(process.handler for process in processes if process.handler is not None)


def replies(client: Client) -> list[dict[str, Any]]:
    """Every reply to a frame sent with a `ref`, in the order they came (a ref sent again has several)."""
    return [json.loads(frame)["reply"] for frame in client.frames if frame.startswith('{"reply"')]


@dataclass
class FloodReport:
    seconds: float
    sent: list[str] = field(default_factory=list)  # every message stored (answered 200), each text unique
    refused: int = 0  # answered 429 rate_limited (the user's rate limit or the delivery backlog)
    # Answered with another error the client may retry (`conversation_busy`, a 5xx) and sent
    # again with the same clientMessageId, as docs/protocol.md tells a client to: by code.
    retried: Counter = field(default_factory=Counter)
    unsent: list[str] = field(default_factory=list)  # never answered 200, even after retries
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, RSS bytes, workers)
    peak_by_function: Counter = field(default_factory=Counter)  # handler -> most Python workers seen at once
    # (t, {"workers" | "moto" | "node": (processes, RSS bytes)})
    breakdown: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)
    stopped_early: str = ""
    received: list[Counter] = field(default_factory=list)  # per client: flood texts -> copies
    drained_after: float | None = None  # seconds from the last answer until every client had everything

    @property
    def peak_workers(self) -> int:
        return max(workers for _, _, workers in self.samples)

    def rss_mib(self, since: float = 0.0, until: float = float("inf"), kind: str | None = None) -> list[float]:
        """The stack's resident memory (or one kind of its processes') in MiB, sampled."""
        if kind is None:
            return [rss / MIB for t, rss, _ in self.samples if since <= t < until]
        return [kinds[kind][1] / MIB for t, kinds in self.breakdown if since <= t < until]


async def flood(
    stack: Any,
    clients: int = 10,
    seconds: float = 60.0,
    rate_per_client: float = 10.0,
    max_workers: int | None = None,
    sample_every: float = 1.0,
    drain_timeout: float = 120.0,
) -> FloodReport:
    """`clients` users, each on one connection, each sending `rate_per_client` room messages a
    second for `seconds` (ramped in and out), then waiting (up to `drain_timeout`) until every
    client has every message that was accepted. Stops early, and says why, if the stack ever
    runs more than `max_workers` Python workers (so an uncapped stack cannot eat the machine)."""
    run = time.monotonic_ns() % 1_000_000
    urls = [stack.url_for(f"flood-{run}-{n:02d}") for n in range(clients)]
    report = FloodReport(seconds=seconds)
    connected = await connect_ramped(urls, 10)
    started = time.monotonic()
    stop = asyncio.Event()

    async def sample() -> None:
        while not stop.is_set():
            processes = stack_processes_now(stack.process_groups())
            kinds = by_kind(processes)
            workers, now = kinds["workers"][0], time.monotonic() - started
            report.samples.append((now, sum(process.rss or 0 for process in processes), workers))
            report.breakdown.append((now, kinds))
            report.peak_by_function |= workers_by_function(processes)
            if max_workers is not None and workers > max_workers:
                report.stopped_early = f"{workers} Python workers, more than {max_workers}"
                stop.set()
            try:
                await asyncio.wait_for(stop.wait(), sample_every)
            except asyncio.TimeoutError:
                pass

    frames: dict[str, tuple[Client, str]] = {}  # ref -> (its client, its text)
    attempts: Counter = Counter()  # ref -> times sent again
    last_sent: dict[str, float] = {}  # ref -> when it was last sent

    async def send(index: int, client: Client) -> None:
        offset = index / (clients * rate_per_client)  # spread the senders over one interval
        await asyncio.sleep(offset)
        interval, n = 1 / rate_per_client, 0
        while not stop.is_set() and time.monotonic() - started < seconds:
            text, ref = f"flood {run} {index} {n}", f"f{index}-{n}"
            frame = json.dumps({"action": "sendMessage", "content": text, "ref": ref, "clientMessageId": ref})
            frames[ref], last_sent[ref] = (client, text), time.monotonic()
            await client.send(frame)
            n += 1
            await asyncio.sleep(max(0.0, started + offset + n * interval - time.monotonic()))

    def answers(ref: str) -> list[dict[str, Any]]:
        return [reply for reply in replies(frames[ref][0]) if reply["ref"] == ref]

    def answer(ref: str) -> dict[str, Any] | None:
        """The answer to the last time this frame was sent, once it has come."""
        found = answers(ref)
        return found[-1] if len(found) > attempts[ref] else None

    async def settle(deadline: float) -> None:
        """Wait for every frame's answer. Send again, with the same clientMessageId, each one the
        server says it did not store and may be sent again, and each one unanswered for 30 s (API
        Gateway gives up on an integration after 29 s; a Lambda's failure reaches the client as a
        frame without the `ref`): at most 5 times, a second apart, as a client would."""
        while time.monotonic() < deadline:
            again: dict[str, str] = {}
            for ref in frames:
                if attempts[ref] >= 5:
                    continue
                found = answer(ref)
                if found is None and time.monotonic() - last_sent[ref] > 30:
                    again[ref] = "no answer"
                elif found is not None and found["status"] != 200 and found.get("error", {}).get("retry"):
                    again[ref] = found["error"]["code"]
            if not again and all(answer(ref) is not None for ref in frames):
                return
            for ref, why in again.items():
                client, text = frames[ref]
                report.retried[why] += 1
                attempts[ref] += 1
                last_sent[ref] = time.monotonic()
                await client.send(json.dumps({"action": "sendMessage", "content": text, "ref": ref, "clientMessageId": ref}))
            await asyncio.sleep(1.0)

    def flood_texts(client: Client) -> Counter:
        return Counter(c for c in client.contents() if isinstance(c, str) and c.startswith(f"flood {run} "))

    sampler = asyncio.create_task(sample())
    await asyncio.gather(*(send(index, client) for index, client in enumerate(connected)))
    if not stop.is_set():
        await settle(time.monotonic() + drain_timeout)
    for ref, (_, text) in frames.items():
        (report.sent if (answer(ref) or {}).get("status") == 200 else report.unsent).append(text)
    report.refused = sum(1 for c in connected for a in replies(c) if a.get("error", {}).get("code") == "rate_limited")
    sent_until = time.monotonic()
    if not stop.is_set():
        expected = Counter(report.sent)
        try:
            for client in connected:
                await client.wait_until(lambda c=client: flood_texts(c).keys() >= expected.keys(), drain_timeout - (time.monotonic() - sent_until))
            report.drained_after = time.monotonic() - sent_until
        except AssertionError:
            pass
        await asyncio.sleep(1.0)  # late duplicates would arrive now
    stop.set()
    await sampler
    report.received = [flood_texts(c) for c in connected]
    await close_ramped(connected, 10)
    return report
