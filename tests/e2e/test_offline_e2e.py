"""End to end through the local stack: serverless-offline (API Gateway + Lambda) and moto server
(DynamoDB), with real WebSocket clients, wscat itself and plain HTTP."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import time
import urllib.request
import uuid
from typing import Any

import pytest

from scripts.service_config import ROOT
from tests.support.helpers import STALE_ROW_AGE_SECONDS, connection_ids, wait_for
from tests.support.wsclient import ROOM_ACK, Client, RawWebSocket

# How long "nobody else receives anything" is watched for.
QUIET_SECONDS = 1.5


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


async def connect_all(stack: Any, count: int) -> list[Client]:
    """Clients of distinct signed-in users (the $connect authorizer wants a token)."""
    return [await Client.connect(stack.url_for(f"user-{uuid.uuid4().hex[:6]}")) for _ in range(count)]


async def broadcast_reaches_all(clients: list[Client], text: str) -> None:
    """The first client broadcasts; wait until everyone has it and the sender has the ack."""
    await clients[0].send_message(text)
    for client in clients:
        await client.wait_until(lambda c=client: text in c.contents())
    await clients[0].wait_until(lambda: ROOM_ACK in clients[0].replies())


async def close_all(clients: list[Client]) -> None:
    await asyncio.gather(*(client.close() for client in clients))


def test_ping_over_http(local_stack: Any) -> None:
    with urllib.request.urlopen(f"{local_stack.http_url}/ping", timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert response.read() == b"PONG!\n"


def test_three_clients_all_receive_a_broadcast_with_korean_as_is(local_stack: Any) -> None:
    text = unique("서버리스 웹소켓 API 테스트")

    async def scenario() -> None:
        clients = await connect_all(local_stack, 3)
        await broadcast_reaches_all(clients, text)
        await asyncio.sleep(0.3)  # a duplicate would arrive about now
        for client in clients:
            assert client.contents().count(text) == 1
            frame = next(f for f in client.frames if text in f)
            (message,) = json.loads(frame)["messages"]
            assert message["content"] == text
            assert message["sender"].startswith("user-")
            assert "\\u" not in frame  # UTF-8 text, not escaped
        await close_all(clients)

    asyncio.run(scenario())


def test_connect_stores_row_and_disconnect_removes_it(local_stack: Any, connections: Any) -> None:
    async def scenario() -> None:
        before = connection_ids(connections)
        client = await Client.connect(local_stack.url_for("row-checker"))
        wait_for(lambda: len(connection_ids(connections) - before) == 1)
        (new_id,) = connection_ids(connections) - before
        row = connections.get_item(Key={"connection_id": new_id}, ConsistentRead=True)["Item"]
        assert row["user_id"] == "row-checker"
        assert row["ttl"] - row["connected_at"] == 2 * 60 * 60
        assert abs(int(row["connected_at"]) - time.time()) < 120  # epoch seconds, not ms
        await client.close()
        wait_for(lambda: new_id not in connection_ids(connections))

    asyncio.run(scenario())


def test_wscat_message_reaches_another_client(local_stack: Any) -> None:
    text = unique("wscat 에서 보낸 메시지")

    async def scenario() -> str:
        listener = await Client.connect(local_stack.url_for("listener"))
        # wscat sends nothing and exits at once when its stdin is at EOF: keep a pipe open.
        wscat = await asyncio.create_subprocess_exec(
            "npx", "wscat", "-c", local_stack.websocket_url, "-H", f"Authorization: Bearer {local_stack.token('wscat-user')}",
            "-x", json.dumps({"action": "sendMessage", "content": text}, ensure_ascii=False),
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(wscat.communicate(), 60)
        await listener.wait_until(lambda: text in listener.contents())
        await listener.close()
        assert wscat.returncode == 0
        return output.decode()

    output = asyncio.run(scenario())
    assert text in output  # wscat's own connection got the broadcast too
    assert ROOM_ACK in output


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        ("this is not JSON", "Unrecognized WebSocket action."),
        ('{"action": "shout", "content": "hi"}', "Unrecognized WebSocket action."),
        ('{"content": "no action"}', "Unrecognized WebSocket action."),
        ('{"action": "sendMessage"}', 'Message has no "content"'),
        ('{"action": "sendMessage", "content": null}', 'Message has no "content"'),
        ('["sendMessage"]', "Unrecognized WebSocket action."),
    ],
    ids=["not-json", "unknown-action", "no-action", "missing-content", "null-content", "list"],
)
def test_bad_message_is_answered_to_sender_only_and_connection_stays_usable(
    local_stack: Any, frame: str, reason: str
) -> None:
    async def scenario() -> None:
        sender, other = await connect_all(local_stack, 2)
        await sender.send(frame)
        await sender.wait_until(lambda: any(reason in reply for reply in sender.replies()))
        await asyncio.sleep(QUIET_SECONDS)
        assert other.frames == []
        assert sender.contents() == []
        assert sender.is_open
        # The same connection still works.
        text = unique("still here")
        await sender.send_message(text)
        await other.wait_until(lambda: text in other.contents())
        await close_all([sender, other])

    asyncio.run(scenario())


def test_a_heartbeat_is_answered_with_nothing_and_keeps_the_connection(local_stack: Any) -> None:
    """On AWS a MOCK route takes every frame whose action is "heartbeat" (API Gateway routes on the
    action alone), whatever else it carries, a ref included (no Lambda); offline it reaches
    $default, which stays silent for it all the same."""

    async def scenario() -> Any:
        client, other = await connect_all(local_stack, 2)
        await client.send('{"action": "heartbeat"}')
        await client.send('{"action": "heartbeat", "extra": 1}')
        await client.send('{"action": "heartbeat", "ref": "h-1"}')
        await client.send('{"action": "nothing"}')  # an unknown action: refused, and it comes after
        await client.wait_until(lambda: "Unrecognized WebSocket action." in client.replies())
        await asyncio.sleep(QUIET_SECONDS)
        text = unique("after heartbeats")
        await client.send_message(text)
        await other.wait_until(lambda: text in other.contents())
        await client.wait_until(lambda: ROOM_ACK in client.replies())
        await close_all([client, other])
        return client

    client = asyncio.run(scenario())
    assert client.replies() == ["Unrecognized WebSocket action.", ROOM_ACK]


def test_stale_row_is_pruned_by_next_broadcast_and_the_rest_still_receive(
    local_stack: Any, connections: Any
) -> None:
    # A row left behind minutes ago for a connection that no longer exists ($disconnect never ran).
    stale_id = "c3RhbGUtY29ubmVjdGlvbg="
    opened = int(time.time()) - STALE_ROW_AGE_SECONDS
    connections.put_item(Item={"connection_id": stale_id, "connected_at": opened, "ttl": opened + 7200})
    text = unique("after the stale row")

    async def scenario() -> None:
        clients = await connect_all(local_stack, 2)
        await broadcast_reaches_all(clients, text)
        await close_all(clients)

    asyncio.run(scenario())
    assert stale_id not in connection_ids(connections)


MALFORMED_FRAMES = {
    # (opcode, payload, masked, rsv1), and the close code ws answers with
    "invalid-utf8-text": ((0x1, b'{"action": "sendMessage", "content": "\xff\xfe"}', True, False), 1007),
    "close-code-1005": ((0x8, struct.pack("!H", 1005), True, False), 1002),
    "close-code-999": ((0x8, struct.pack("!H", 999), True, False), 1002),
    "reserved-opcode": ((0x3, b"x", True, False), 1002),
    "unmasked": ((0x1, b"hello", False, False), 1002),
    "rsv1-without-extension": ((0x1, b"hello", True, True), 1002),
}


@pytest.mark.parametrize("kind", MALFORMED_FRAMES, ids=MALFORMED_FRAMES.keys())
def test_a_malformed_frame_closes_only_that_connection(local_stack: Any, connections: Any, kind: str) -> None:
    (opcode, payload, masked, rsv1), expected_code = MALFORMED_FRAMES[kind]
    text = unique(f"after {kind}")

    async def scenario() -> None:
        clients = await connect_all(local_stack, 2)
        before = connection_ids(connections)
        raw = RawWebSocket(local_stack.url_for("mallory"))
        assert raw.status_line.endswith("101 Switching Protocols"), raw.status_line
        wait_for(lambda: len(connection_ids(connections) - before) == 1)
        (raw_id,) = connection_ids(connections) - before

        raw.send_frame(opcode, payload, masked=masked, rsv1=rsv1)
        assert await asyncio.to_thread(raw.close_code) == expected_code
        raw.close()

        assert local_stack.failed_process() is None  # serverless-offline is still running
        await broadcast_reaches_all(clients, text)  # and still serves everyone else
        wait_for(lambda: raw_id not in connection_ids(connections))  # its $disconnect ran
        await close_all(clients)

    asyncio.run(scenario())
