"""Tokens on $connect, direct messages and their history, end to end through the local stack."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from typing import Any

import pytest
import websockets

from scripts.local_stack import mint_token
from tests.support.wsclient import Client

QUIET_SECONDS = 1.5


def users(*names: str) -> list[str]:
    """Fresh user ids per test, so histories of earlier tests do not mix in."""
    run = uuid.uuid4().hex[:6]
    return [f"{name}-{run}" for name in names]


async def refused_status(url: str, **kwargs: Any) -> int:
    with pytest.raises(websockets.InvalidStatus) as refused:
        await websockets.connect(url, open_timeout=30, **kwargs)
    return refused.value.response.status_code


def test_connections_without_a_valid_token_are_refused(local_stack: Any) -> None:
    url = local_stack.websocket_url

    async def scenario() -> list[int]:
        return [
            await refused_status(url),
            await refused_status(f"{url}?token=not-a-token"),
            await refused_status(f"{url}?token={mint_token('some-other-secret-' + 'z' * 50, 'alice')}"),
            await refused_status(f"{url}?token={mint_token(local_stack.jwt_secret, 'alice', hours=-1)}"),
            await refused_status(url, additional_headers={"Authorization": "Bearer nope"}),
            await refused_status(url, subprotocols=["serverless-websocket", "bearer.nope"]),
        ]

    assert asyncio.run(scenario()) == [403] * 6


def test_a_token_offered_as_a_subprotocol_connects_with_nothing_in_the_url(local_stack: Any) -> None:
    (alice,) = users("alice")
    offered = ["serverless-websocket", "bearer." + local_stack.token(alice)]

    async def scenario() -> tuple[str | None, Any]:
        async with websockets.connect(local_stack.websocket_url, subprotocols=offered, open_timeout=30) as client:
            await client.send(json.dumps({"action": "getRecentMessages", "with": "nobody", "ref": "r1"}))
            return client.subprotocol, json.loads(await asyncio.wait_for(client.recv(), 30))

    selected, reply = asyncio.run(scenario())
    assert selected == "serverless-websocket"  # the handshake selects ours, never the token
    assert reply["reply"]["ref"] == "r1" and reply["reply"]["status"] == 200  # signed in as alice: DMs need a user


def test_dm_reaches_only_the_recipient_and_history_returns_it(local_stack: Any) -> None:
    alice, bob, carol = users("alice", "bob", "carol")
    text = "안녕 bob, 비밀이야"

    async def scenario() -> None:
        alice_ws = await Client.connect(local_stack.url_for(alice))  # token in the query string
        bob_ws = await Client.connect(
            local_stack.websocket_url, additional_headers={"Authorization": f"Bearer {local_stack.token(bob)}"}
        )
        carol_ws = await Client.connect(local_stack.url_for(carol))

        await alice_ws.send(json.dumps({"action": "sendDirectMessage", "to": bob, "content": text}, ensure_ascii=False))
        await bob_ws.wait_until(lambda: text in bob_ws.contents())
        await alice_ws.wait_until(lambda: f"Direct message delivered to {bob}." in alice_ws.replies())
        await asyncio.sleep(QUIET_SECONDS)
        assert carol_ws.frames == []
        assert alice_ws.contents() == []  # the sending connection gets the acknowledgement only
        (message,) = [m for f in bob_ws.frames for m in json.loads(f)["messages"]]
        assert message["sender"] == alice and message["to"] == bob and message["content"] == text

        for reader, other in ((alice_ws, bob), (bob_ws, alice)):
            await reader.send(json.dumps({"action": "getRecentMessages", "with": other, "limit": 5}))
            await reader.wait_until(lambda r=reader: any('"history"' in f for f in r.replies()))
            history = json.loads(next(f for f in reader.replies() if '"history"' in f))["history"]
            assert [m["content"] for m in history["messages"]] == [text]
            assert history["with"] == other
        # carol can only ask for her own conversations: carol+alice is empty.
        await carol_ws.send(json.dumps({"action": "getRecentMessages", "with": alice}))
        await carol_ws.wait_until(lambda: any('"history"' in f for f in carol_ws.replies()))
        assert json.loads(carol_ws.replies()[0])["history"]["messages"] == []

        for client in (alice_ws, bob_ws, carol_ws):
            await client.close()

    asyncio.run(scenario())


def test_dm_to_an_offline_user_is_kept_for_their_history(local_stack: Any) -> None:
    alice, dave = users("alice", "dave")

    async def scenario() -> None:
        alice_ws = await Client.connect(local_stack.url_for(alice))
        await alice_ws.send(json.dumps({"action": "sendDirectMessage", "to": dave, "content": "나중에 읽어"}, ensure_ascii=False))
        await alice_ws.wait_until(lambda: any("is not connected" in r for r in alice_ws.replies()))
        await alice_ws.close()

        dave_ws = await Client.connect(local_stack.url_for(dave))
        await dave_ws.send(json.dumps({"action": "getRecentMessages", "with": alice}))
        await dave_ws.wait_until(lambda: any('"history"' in f for f in dave_ws.replies()))
        history = json.loads(dave_ws.replies()[0])["history"]
        assert [(m["sender"], m["content"]) for m in history["messages"]] == [(alice, "나중에 읽어")]
        await dave_ws.close()

    asyncio.run(scenario())


NESTED_TOO_DEEPLY = 'Message is nested too deeply: "content" may have at most 64 levels of arrays and objects.'
NOT_FINITE = "Message has a number that is not finite (NaN, Infinity, or too large for a double such as 1e400)."
UNRECOGNIZED = "Unrecognized WebSocket action."


def test_hostile_frames_cannot_poison_the_room_history(local_stack: Any) -> None:
    mallory, reader = users("mallory", "reader")
    frames = [
        '{"action": "sendMessage", "content": ' + "[" * depth + "]" * depth + "}" for depth in (65, 500, 900, 990)
    ] + ['{"action": "sendMessage", "content": 1e400}', '{"action": "sendMessage", "content": [NaN]}']

    async def scenario() -> None:
        mallory_ws = await Client.connect(local_stack.url_for(mallory))
        for frame in frames:
            await mallory_ws.send(frame)
        await mallory_ws.wait_until(lambda: len(mallory_ws.replies()) == len(frames), timeout=30)
        # Each frame its own answer (in any order: the frames may be handled in parallel). The
        # NaN frame is not JSON, so no action can be read from it: $default answers.
        assert Counter(mallory_ws.replies()) == Counter({NESTED_TOO_DEEPLY: 4, NOT_FINITE: 1, UNRECOGNIZED: 1})
        assert mallory_ws.contents() == []  # nothing was broadcast

        reader_ws = await Client.connect(local_stack.url_for(reader))
        await reader_ws.send(json.dumps({"action": "getRecentMessages", "limit": 100}))
        await reader_ws.wait_until(lambda: any('"history"' in f for f in reader_ws.replies()))
        history = json.loads(next(f for f in reader_ws.replies() if '"history"' in f))["history"]
        assert all(m.get("sender") != mallory for m in history["messages"])
        for client in (mallory_ws, reader_ws):
            await client.close()

    asyncio.run(scenario())


def test_a_users_sixth_connection_is_refused_with_429_and_the_others_keep_working(local_stack: Any) -> None:
    """$connect answers 429 (chat.ratelimit.admit_connection); serverless-offline passes that
    status to the handshake, as API Gateway refuses a connection whose $connect fails."""
    (dave,) = users("dave")

    async def scenario() -> tuple[int, int]:
        clients = [await Client.connect(local_stack.url_for(dave)) for _ in range(5)]
        status = await refused_status(local_stack.url_for(dave))
        await clients[0].send_message("still here")
        await clients[4].wait_until(lambda: "still here" in clients[4].contents())
        await clients[0].close()
        await asyncio.sleep(QUIET_SECONDS)  # $disconnect runs after the socket closes
        sixth = await Client.connect(local_stack.url_for(dave))
        await sixth.close()
        for client in clients[1:]:
            await client.close()
        return status, 5

    status, _ = asyncio.run(scenario())
    assert status == 429
