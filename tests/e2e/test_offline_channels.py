"""Channels end to end, through the local stack with real WebSocket clients: gap-free seqs from
concurrent senders, recovery after a reconnect, retried sends delivered once, channels apart."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from tests.support.helpers import fresh
from tests.support.wsclient import Client, documents

# Under the per-connection rate limit (5 a second): each sender paces itself, all send at once.
SEND_INTERVAL = 0.25


def channel_messages(client: Client, channel: str) -> list[dict[str, Any]]:
    return [m for batch in documents(client, "messages") for m in batch if m.get("channel") == channel]


async def join(client: Client, channel: str) -> dict[str, Any]:
    before = len(documents(client, "joined"))
    await client.send(json.dumps({"action": "join", "channel": channel}))
    await client.wait_until(lambda: len(documents(client, "joined")) > before, 30)
    return documents(client, "joined")[-1]


async def request(client: Client, key: str, frame: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    before = len(documents(client, key))
    await client.send(json.dumps(frame, ensure_ascii=False))
    await client.wait_until(lambda: len(documents(client, key)) > before, timeout)
    return documents(client, key)[-1]


def test_five_senders_at_once_give_seqs_1_to_100_with_no_gap_or_repeat(local_stack: Any) -> None:
    channel, *senders = fresh("burst", "s0", "s1", "s2", "s3", "s4")

    async def scenario() -> tuple[list[Client], list[int]]:
        clients = [await Client.connect(local_stack.url_for(user)) for user in senders]
        for client in clients:
            await join(client, channel)

        async def send_twenty(n: int, client: Client) -> None:
            for k in range(20):
                await client.send(json.dumps({"action": "sendMessage", "channel": channel, "content": f"{n}:{k}"}))
                await asyncio.sleep(SEND_INTERVAL)

        await asyncio.gather(*(send_twenty(n, client) for n, client in enumerate(clients)))
        for client in clients:
            await client.wait_until(lambda c=client: len({m["seq"] for m in channel_messages(c, channel)}) >= 100, 90)
            # a route response may arrive after the broadcasts its send caused
            await client.wait_until(lambda c=client: len(documents(c, "sent")) >= 20, 30)
        acks = [sent["seq"] for client in clients for sent in documents(client, "sent")]
        for client in clients:
            await client.close()
        return clients, acks

    clients, acks = asyncio.run(scenario())

    assert sorted(acks) == list(range(1, 101))  # every send acknowledged with its own seq
    for client in clients:
        received = channel_messages(client, channel)
        assert sorted({m["seq"] for m in received}) == list(range(1, 101))
        by_seq = {m["seq"]: m["content"] for m in received}
        assert sorted(by_seq.values()) == sorted(f"{n}:{k}" for n in range(5) for k in range(20))
    history_table = local_stack.dynamodb().Table(local_stack.table_names["HistoryTable"])
    stored = history_table.query(KeyConditionExpression="conversation = :c", ExpressionAttributeValues={":c": f"ch#{channel}"},
                                 ConsistentRead=True)["Items"]
    assert sorted(int(item["seq"]) for item in stored) == list(range(1, 101))


def test_a_client_that_was_away_recovers_exactly_what_it_missed(local_stack: Any) -> None:
    channel, alice, bob = fresh("away", "alice", "bob")

    async def scenario() -> tuple[int, list[dict[str, Any]], dict[str, Any]]:
        sender = await Client.connect(local_stack.url_for(alice))
        away = await Client.connect(local_stack.url_for(bob))
        await join(sender, channel)
        await join(away, channel)
        await request(sender, "sent", {"action": "sendMessage", "channel": channel, "content": "before"})
        await away.wait_until(lambda: len(channel_messages(away, channel)) == 1)
        last_seen = channel_messages(away, channel)[-1]["seq"]
        await away.close()  # the connection drops

        for n in range(10):
            await request(sender, "sent", {"action": "sendMessage", "channel": channel, "content": f"missed {n}"})
            await asyncio.sleep(SEND_INTERVAL)

        back = await Client.connect(local_stack.url_for(bob))  # reconnects, rejoins, catches up
        joined = await join(back, channel)
        page = await request(back, "history", {"action": "getRecentMessages", "channel": channel, "after": last_seen, "limit": 100})
        await sender.close()
        await back.close()
        return last_seen, page["messages"], {"joined": joined, "after": page["after"]}

    last_seen, recovered, extra = asyncio.run(scenario())

    assert last_seen == 1
    assert [(m["seq"], m["content"]) for m in recovered] == [(n + 2, f"missed {n}") for n in range(10)]
    assert extra["joined"]["seq"] == 11 and extra["after"] is None


def test_a_retried_send_reaches_every_member_once(local_stack: Any) -> None:
    channel, alice, bob, carol = fresh("retry", "alice", "bob", "carol")
    client_message_id = str(uuid.uuid4())

    async def scenario() -> tuple[list[dict[str, Any]], list[Client]]:
        clients = [await Client.connect(local_stack.url_for(user)) for user in (alice, bob, carol)]
        for client in clients:
            await join(client, channel)
        frame = {"action": "sendMessage", "channel": channel, "content": "once", "clientMessageId": client_message_id}
        acks = [await request(clients[0], "sent", frame) for _ in range(3)]  # the client "timed out" twice
        await asyncio.sleep(1.5)  # anything duplicated would have arrived by now
        for client in clients:
            await client.close()
        return acks, clients

    acks, clients = asyncio.run(scenario())

    assert [ack["duplicate"] for ack in acks] == [False, True, True]
    assert {ack["seq"] for ack in acks} == {1} and {ack["clientMessageId"] for ack in acks} == {client_message_id}
    for client in clients:
        assert [(m["seq"], m["content"], m["clientMessageId"]) for m in channel_messages(client, channel)] == [(1, "once", client_message_id)]


def test_two_channels_never_see_each_others_messages(local_stack: Any) -> None:
    red, blue, alice, bob = fresh("red", "blue", "alice", "bob")

    async def scenario() -> tuple[Client, Client]:
        in_red = await Client.connect(local_stack.url_for(alice))
        in_blue = await Client.connect(local_stack.url_for(bob))
        await join(in_red, red)
        await join(in_blue, blue)
        for n in range(3):
            await request(in_red, "sent", {"action": "sendMessage", "channel": red, "content": f"red {n}"})
            await request(in_blue, "sent", {"action": "sendMessage", "channel": blue, "content": f"blue {n}"})
        await asyncio.sleep(1.5)
        await in_red.close()
        await in_blue.close()
        return in_red, in_blue

    in_red, in_blue = asyncio.run(scenario())

    assert [(m["channel"], m["seq"], m["content"]) for m in channel_messages(in_red, red)] == [(red, n + 1, f"red {n}") for n in range(3)]
    assert [(m["channel"], m["seq"], m["content"]) for m in channel_messages(in_blue, blue)] == [(blue, n + 1, f"blue {n}") for n in range(3)]
    assert channel_messages(in_red, blue) == [] and channel_messages(in_blue, red) == []
