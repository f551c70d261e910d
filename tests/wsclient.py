"""A real WebSocket client for the end-to-end tests, recording every frame it receives."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Callable

import websockets


def parse_broadcast(frame: str) -> list[Any] | None:
    """The contents of a {"messages": [...]} frame, or None for any other frame."""
    try:
        document = json.loads(frame)
    except ValueError:
        return None
    if isinstance(document, dict) and isinstance(document.get("messages"), list):
        return [message.get("content") for message in document["messages"]]
    return None


class Client:
    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.frames: list[str] = []
        self.arrivals: list[float] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> Client:
        return cls(await websockets.connect(url, open_timeout=30, max_size=None, **kwargs))

    async def _read(self) -> None:
        try:
            async for frame in self.connection:
                self.frames.append(frame)
                self.arrivals.append(time.perf_counter())
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self._changed.set()

    # --- what arrived ----------------------------------------------------------------------

    def contents(self) -> list[Any]:
        """Every broadcast content received, in order."""
        return [content for frame in self.frames for content in parse_broadcast(frame) or []]

    def arrival_of(self, content: Any) -> float | None:
        """perf_counter() time at which the first broadcast carrying this content arrived."""
        for frame, arrived in zip(self.frames, self.arrivals):
            if content in (parse_broadcast(frame) or []):
                return arrived
        return None

    def replies(self) -> list[str]:
        """Frames that are not broadcasts: the route responses to this client's own messages."""
        return [frame for frame in self.frames if parse_broadcast(frame) is None]

    @property
    def is_open(self) -> bool:
        return self.connection.state is websockets.State.OPEN

    # --- acting ----------------------------------------------------------------------------

    async def send(self, frame: str) -> None:
        await self.connection.send(frame)

    async def send_message(self, content: Any) -> None:
        await self.send(json.dumps({"action": "sendMessage", "content": content}, ensure_ascii=False))

    async def wait_until(self, condition: Callable[[], bool], timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out after {timeout} s; frames so far: {self.frames[-5:]}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def close(self) -> None:
        await self.connection.close()
        await self._reader


async def connect_ramped(urls: list[str], per_second: float) -> list[Client]:
    """Connect at a bounded rate: serverless-offline starts a Python worker for every event
    that arrives while the others are busy, so a stampede would start hundreds of them."""
    clients: list[Client] = []
    for url in urls:
        clients.append(await Client.connect(url))
        await asyncio.sleep(1 / per_second)
    return clients


async def close_ramped(clients: list[Client], per_second: float) -> None:
    """Disconnect at a bounded rate, for the same reason as connect_ramped."""
    for client in clients:
        await client.close()
        await asyncio.sleep(1 / per_second)
