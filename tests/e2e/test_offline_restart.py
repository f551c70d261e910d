"""What `make offline` keeps across a restart (its secret and conversations, in .offline/) and what
the tests' stack keeps (nothing). Apart from test_make_offline.py so that xdist runs it beside."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import websockets

from scripts.local_stack import LocalStack, Ports


def test_a_restarted_stack_keeps_the_token_secret_and_the_conversations(tmp_path: Path) -> None:
    # After a restart an open page retried forever with a token the new secret refused, and
    # every conversation was gone: the secret and the conversations are kept in keep_in.
    ports = Ports.free()

    async def say_then_read(stack: LocalStack, token: str, say: str | None) -> list[Any]:
        async with websockets.connect(f"{stack.websocket_url}?token={token}", open_timeout=30) as client:
            if say is not None:
                await client.send(json.dumps({"action": "sendDirectMessage", "to": "bob", "content": say, "ref": "s"}))
                assert json.loads(await asyncio.wait_for(client.recv(), 30))["reply"]["status"] == 200
            await client.send(json.dumps({"action": "getRecentMessages", "with": "bob", "ref": "h"}))
            return [m["content"] for m in json.loads(await asyncio.wait_for(client.recv(), 30))["reply"]["body"]["history"]["messages"]]

    with LocalStack(ports, log_dir=tmp_path, keep_in=tmp_path) as first:
        token = first.token("alice")
        assert asyncio.run(say_then_read(first, token, "before the restart")) == ["before the restart"]
    assert (tmp_path / "jwt-secret").stat().st_mode & 0o077 == 0  # yours alone

    with LocalStack(ports, log_dir=tmp_path, keep_in=tmp_path) as second:
        assert second.restored >= 1
        assert asyncio.run(say_then_read(second, token, "after it")) == ["before the restart", "after it"]


def test_the_tests_stack_keeps_nothing(local_stack: Any) -> None:
    assert local_stack.keep_in is None  # a fresh secret and empty tables every session
