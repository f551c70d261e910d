"""A real WebSocket client for the end-to-end tests, recording every frame it receives."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
import urllib.parse
from typing import Any, Callable

import websockets

# sendMessage's answer to its sender.
ROOM_ACK = "Message sent to all connections."


def documents(client: Client, key: str) -> list[Any]:
    """The values under `key` of every JSON object the client received, in order."""
    found = []
    for frame in client.frames:
        try:
            document = json.loads(frame)
        except ValueError:
            continue
        if isinstance(document, dict) and key in document:
            found.append(document[key])
    return found


async def request(client: Client, frame: dict[str, Any]) -> Any:
    """Send a frame with a ref and wait for its reply: the reply's body."""
    ref = f"r{len(client.frames)}-{frame['action']}"
    await client.send(json.dumps({**frame, "ref": ref}))
    await client.wait_until(lambda: any(r["ref"] == ref for r in documents(client, "reply")), timeout=30)
    return next(r for r in documents(client, "reply") if r["ref"] == ref)["body"]


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
        self._refs = 0
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

    def answers(self) -> dict[str, dict[str, Any]]:
        """The replies to frames sent with a `ref`, by ref."""
        found: dict[str, dict[str, Any]] = {}
        for frame in self.frames:
            if frame.startswith('{"reply"'):
                reply = json.loads(frame)["reply"]
                found[reply["ref"]] = reply
        return found

    @property
    def is_open(self) -> bool:
        return self.connection.state is websockets.State.OPEN

    # --- acting ----------------------------------------------------------------------------

    async def send(self, frame: str) -> None:
        await self.connection.send(frame)

    async def send_message(self, content: Any) -> None:
        await self.send(json.dumps({"action": "sendMessage", "content": content}, ensure_ascii=False))

    async def send_all(self, frames: list[dict[str, Any]], interval: float, timeout: float = 60.0) -> None:
        """Send each frame with a `ref`, `interval` apart, then wait until every one is answered,
        and answered 200: once this returns the server has done with them all. (Sent is not done:
        on a loaded machine a frame can sit in the server's hands for seconds, and a test that went
        on at once, say bringing a client back online, raced it.)"""
        refs = []
        for frame in frames:
            self._refs += 1
            refs.append(f"t{self._refs}")
            await self.send(json.dumps({**frame, "ref": refs[-1]}, ensure_ascii=False))
            await asyncio.sleep(interval)
        await self.wait_until(lambda: set(refs) <= self.answers().keys(), timeout)
        refused = [reply for ref, reply in self.answers().items() if ref in refs and reply["status"] != 200]
        assert not refused, refused

    async def send_in_order(self, frames: list[dict[str, Any]], interval: float = 0.0, timeout: float = 60.0) -> None:
        """Send each frame once the one before it is answered 200, as the documented client sends
        to one conversation (docs/client.md): they are stored in this order. Frames sent without
        waiting may be stored in any order (API Gateway runs an invocation for each at once: on
        a loaded machine the second was seen stored first)."""
        for frame in frames:
            await self.send_all([frame], interval, timeout)

    async def broadcast(self, content: Any, timeout: float = 15.0) -> float:
        """Send to the room and wait for this sender's acknowledgement: the seconds it took."""
        started = time.monotonic()
        await self.send_message(content)
        await self.wait_until(lambda: ROOM_ACK in self.replies(), timeout)
        return time.monotonic() - started

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


class RawWebSocket:
    """A WebSocket client on a plain socket, for frames no well-behaved library would send."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            response += chunk
        self.status_line = response.split(b"\r\n", 1)[0].decode()
        self._buffer = response.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in response else b""

    def send_frame(self, opcode: int, payload: bytes, *, masked: bool = True, rsv1: bool = False) -> None:
        """One final frame, exactly as given: no validation of the opcode or the payload."""
        first = 0x80 | (0x40 if rsv1 else 0) | opcode
        length = len(payload)
        header = bytes([first]) + (
            bytes([length | (0x80 if masked else 0)]) if length < 126 else bytes([126 | (0x80 if masked else 0)]) + struct.pack("!H", length)
        )
        if masked:
            mask = os.urandom(4)
            payload = mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        self.sock.sendall(header + payload)

    def close_code(self) -> int | None:
        """Read until the server's close frame (its status code) or the end of the stream."""
        data = self._buffer
        while True:
            while len(data) >= 2:
                opcode, length = data[0] & 0x0F, data[1] & 0x7F
                start = 2
                if length == 126:
                    length, start = struct.unpack("!H", data[2:4])[0], 4
                if len(data) < start + length:
                    break
                payload, data = data[start : start + length], data[start + length :]
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk

    def close(self) -> None:
        self.sock.close()
