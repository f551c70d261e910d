"""Bans through the local stack (issue 29), with real WebSocket clients and the real authorizer
reading the `moderates` claim: a service-wide ban closes all three of a user's connections and
her reconnect is refused until the ban is lifted; a channel ban takes her out of the channel."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import jwt
import pytest
import websockets

from tests.support.helpers import fresh
from tests.support.wsclient import Client, documents


def moderator_url(local_stack: Any, user: str, moderates: list[str]) -> str:
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 3600, "moderates": moderates}, local_stack.jwt_secret, "HS256")
    return f"{local_stack.websocket_url}?token={token}"


def test_a_service_wide_ban_closes_her_three_connections_and_refuses_her_until_lifted(local_stack: Any) -> None:
    mallory, mod = fresh("mallory", "mod")

    async def scenario() -> tuple[float, list[Client]]:
        hers = [await Client.connect(local_stack.url_for(mallory)) for _ in range(3)]
        moderator = await Client.connect(moderator_url(local_stack, mod, ["*"]))
        started = time.monotonic()
        await moderator.send_all([{"action": "ban", "user": mallory, "reason": "abuse"}], 0)
        for client in hers:
            await client.wait_until(lambda c=client: not c.is_open, 10)
        closed_after = time.monotonic() - started
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(local_stack.url_for(mallory), open_timeout=30)
        assert refused.value.response.status_code == 403
        await moderator.send_all([{"action": "unban", "user": mallory}], 0)
        back = await Client.connect(local_stack.url_for(mallory))
        assert back.is_open
        for client in (moderator, back):
            await client.close()
        return closed_after, hers

    closed_after, hers = asyncio.run(scenario())

    print(f"\nall 3 connections closed {closed_after:.2f} s after the ban was sent")
    # The figure is 1 s (0.62 s here alone); a CI machine running the whole suite at once
    # (2 cores, 98% busy) took 5.8 s once: room for that, far from "never".
    assert closed_after < 15
    for client in hers:
        assert documents(client, "banned") == [{"reason": "abuse", "until": None}]


def test_a_channel_ban_takes_her_out_of_the_channel_and_refuses_her_join(local_stack: Any) -> None:
    channel, mallory, mod = fresh("banned-here", "mallory", "mod")

    async def scenario() -> tuple[Client, dict[str, Any]]:
        her = await Client.connect(local_stack.url_for(mallory))
        await her.send_all([{"action": "join", "channel": channel}], 0)
        moderator = await Client.connect(moderator_url(local_stack, mod, [channel]))
        await moderator.send_all([{"action": "ban", "user": mallory, "channel": channel, "seconds": 600}], 0)
        await her.wait_until(lambda: bool(documents(her, "left")), 10)
        await her.send(json.dumps({"action": "join", "channel": channel, "ref": "again"}))
        await her.wait_until(lambda: "again" in her.answers(), 10)
        refused = her.answers()["again"]
        for client in (her, moderator):
            await client.close()
        return her, refused

    her, refused = asyncio.run(scenario())

    assert documents(her, "left") == [{"channel": channel, "reason": "banned"}]
    assert (refused["status"], refused["error"]["code"]) == (403, "banned")


def test_the_backend_disconnects_a_user_through_post_moderate(local_stack: Any) -> None:
    """POST /moderate on the local stack (which checks no signature, as for POST /publish)."""
    import urllib.request

    (mallory,) = fresh("mallory")

    async def scenario() -> tuple[int, dict[str, Any], list[Client]]:
        hers = [await Client.connect(local_stack.url_for(mallory)) for _ in range(2)]
        request = urllib.request.Request(
            f"{local_stack.http_url}/moderate", data=json.dumps({"action": "disconnect", "user": mallory}).encode(),
            headers={"Content-Type": "application/json"}, method="POST",
        )
        with await asyncio.to_thread(urllib.request.urlopen, request, timeout=30) as response:
            status, body = response.status, json.loads(response.read())
        for client in hers:
            await client.wait_until(lambda c=client: not c.is_open, 10)
        again = await Client.connect(local_stack.url_for(mallory))  # no ban: she may come back
        await again.close()
        return status, body, hers

    status, body, hers = asyncio.run(scenario())

    assert (status, body) == (200, {"disconnected": {"user": mallory, "closed": 2}})
    assert all(not client.is_open for client in hers)
