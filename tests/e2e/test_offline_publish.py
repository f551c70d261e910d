"""POST /publish through the local stack: a backend's signed request (scripts/publish.py, the
SigV4 example), `curl`, and `make publish` reach the channel's members only, alice's every
connection, or everyone, with the next gap-free seq shared with the WebSocket senders; recovery
with `after` returns what was published; a retried batch stores nothing twice."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from typing import Any

import pytest

from scripts.local_stack import FAKE_ACCESS_KEY, FAKE_SECRET_KEY
from scripts.publish import publish
from scripts.service_config import ROOT
from tests.support.helpers import fresh
from tests.support.wsclient import Client, request


@pytest.fixture
def signed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials for the signer: the local stack checks no signature, but the example signs."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", FAKE_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", FAKE_SECRET_KEY)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def test_a_signed_backend_reaches_members_a_user_and_everyone_with_the_shared_seq(local_stack: Any, signed: None) -> None:
    dana, alice, bob, channel = fresh("dana", "alice", "bob", "deploys")
    url = f"{local_stack.http_url}/publish"

    async def scenario() -> tuple[Any, ...]:
        member = await Client.connect(local_stack.url_for(dana))
        alice_1 = await Client.connect(local_stack.url_for(alice))
        alice_2 = await Client.connect(local_stack.url_for(alice))
        bystander = await Client.connect(local_stack.url_for(bob))
        await request(member, {"action": "join", "channel": channel})
        await request(member, {"action": "sendMessage", "channel": channel, "content": "from a client"})
        status, reply = await asyncio.to_thread(publish, url, [
            {"channel": channel, "sender": "ci-bot", "content": "build green", "clientMessageId": "b-1"},
            {"to": alice, "sender": "orders", "content": "Your order shipped"},
            {"room": True, "sender": "ops", "content": f"maintenance {channel}"},
        ], local_stack.region)
        await member.wait_until(lambda: "build green" in member.contents(), timeout=30)
        for client in (alice_1, alice_2, bystander, member):
            await client.wait_until(lambda c=client: f"maintenance {channel}" in c.contents(), timeout=30)
        await alice_1.wait_until(lambda: "Your order shipped" in alice_1.contents(), timeout=30)
        await alice_2.wait_until(lambda: "Your order shipped" in alice_2.contents(), timeout=30)
        recovered = await request(member, {"action": "getRecentMessages", "channel": channel, "after": 0})
        _, retried = await asyncio.to_thread(publish, url, [
            {"channel": channel, "sender": "ci-bot", "content": "build green", "clientMessageId": "b-1"}], local_stack.region)
        await asyncio.sleep(1)
        for client in (member, alice_1, alice_2, bystander):
            await client.close()
        return status, reply, recovered, retried, member.contents(), bystander.contents()

    status, reply, recovered, retried, member_got, bystander_got = asyncio.run(scenario())

    assert status == 200 and reply["failed"] == 0
    assert reply["results"][0]["seq"] == 2 and reply["results"][1]["recipientOnline"] is True
    assert [(m["seq"], m["content"], m["sender"]) for m in recovered["history"]["messages"]] == [
        (1, "from a client", dana), (2, "build green", "ci-bot")]
    assert retried["results"][0]["duplicate"] is True and retried["results"][0]["seq"] == 2
    assert member_got.count("build green") == 1  # the retry delivered nothing
    assert "build green" not in bystander_got and "Your order shipped" not in bystander_got


def test_curl_and_make_publish_reach_the_running_stack(running: Any) -> None:
    (dana, channel) = fresh("dana", "news")

    async def scenario() -> list[Any]:
        member = await Client.connect(running.url_for(dana))
        await request(member, {"action": "join", "channel": channel})
        body = json.dumps({"messages": [{"channel": channel, "sender": "ops", "content": "by curl"}]})
        curl = await asyncio.to_thread(subprocess.run, ["curl", "-sS", "-X", "POST", f"{running.http_url}/publish",
                                                        "-H", "Content-Type: application/json", "-d", body],
                                       capture_output=True, text=True, timeout=60)
        assert json.loads(curl.stdout)["failed"] == 0, curl.stdout + curl.stderr
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OFFLINE_"))}
        env["OFFLINE_WEBSOCKET_PORT"] = str(running.ports.websocket)
        made = await asyncio.to_thread(subprocess.run, ["make", "--no-print-directory", "publish", f"CHANNEL={channel}",
                                                        "SENDER=ci-bot", "CONTENT=by make"],
                                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert made.returncode == 0, made.stdout + made.stderr
        assert json.loads(made.stdout)["results"][0]["channel"] == channel
        await member.wait_until(lambda: {"by curl", "by make"} <= set(member.contents()), timeout=30)
        await member.close()
        return member.contents()

    assert asyncio.run(scenario()) == ["by curl", "by make"]


def test_make_publish_without_a_place_says_what_to_give(running: Any) -> None:
    env = {**os.environ, "OFFLINE_WEBSOCKET_PORT": str(running.ports.websocket)}
    made = subprocess.run(["make", "--no-print-directory", "publish", "SENDER=ops", "CONTENT=x"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)

    assert made.returncode != 0
    assert "make publish: say SENDER=..., CONTENT=... and one of CHANNEL=..., TO=... or ROOM=1" in made.stderr
