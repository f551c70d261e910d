"""Presence and token expiry end to end, through the local stack with real WebSocket clients:
a connection killed without a close frame, a user's last connection leaving, a 30 s token closed
by the service, and renewToken keeping another connection open past its first exp."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import time
from typing import Any, Iterator

import pytest

from scripts.local_stack import mint_token
from tests.e2e.conftest import SWEEP_SECONDS
from tests.support.helpers import fresh
from tests.support.wsclient import Client, RawWebSocket, documents

GRACE_SECONDS = 15
EXPIRED = "Your token has expired: renew it or reconnect."
# The short token's scenario runs in the background from the module's first test on, so its
# wait overlaps the presence scenario's (about 40 s of the suite's time saved).
# The whole file on one worker (make test: --dist loadfile; loadgroup keeps it whole by the group):
# its scenario runs from the module's start.
pytestmark = [pytest.mark.usefixtures("expiry_scenario"), pytest.mark.xdist_group("offline_presence")]


async def request(client: Client, key: str, frame: dict[str, Any]) -> dict[str, Any]:
    before = len(documents(client, key))
    await client.send(json.dumps(frame))
    await client.wait_until(lambda: len(documents(client, key)) > before, 30)
    return documents(client, key)[-1]


def changes(client: Client, channel: str) -> list[tuple[str, str]]:
    return [(c["user"], c["state"]) for c in documents(client, "presenceChange") if c["channel"] == channel]


def test_a_user_leaves_only_when_the_last_connection_is_gone_even_one_killed_without_a_close_frame(local_stack: Any) -> None:
    channel, alice, bob = fresh("room", "alice", "bob")

    async def scenario() -> dict[str, Any]:
        bob_1 = await Client.connect(local_stack.url_for(bob))
        bob_2 = await Client.connect(local_stack.url_for(bob))
        for client in (bob_1, bob_2):
            await request(client, "joined", {"action": "join", "channel": channel})
        killed = RawWebSocket(local_stack.url_for(alice))  # alice's first connection: a raw socket
        assert killed.status_line.startswith("HTTP/1.1 101")
        killed.send_frame(0x1, json.dumps({"action": "join", "channel": channel}).encode())
        alice_2 = await Client.connect(local_stack.url_for(alice))
        await request(alice_2, "joined", {"action": "join", "channel": channel})
        await bob_1.wait_until(lambda: (alice, "enter") in changes(bob_1, channel), 30)
        both = await request(bob_1, "presence", {"action": "getPresence", "channel": channel})

        killed.close()  # the TCP connection ends: no close frame
        await asyncio.sleep(GRACE_SECONDS + 5)
        after_kill = await request(bob_1, "presence", {"action": "getPresence", "channel": channel})
        events_after_kill = changes(bob_1, channel)

        await alice_2.close()  # the last one
        await bob_1.wait_until(lambda: (alice, "leave") in changes(bob_1, channel), GRACE_SECONDS + 30)
        await bob_2.wait_until(lambda: (alice, "leave") in changes(bob_2, channel), 30)
        after_last = await request(bob_1, "presence", {"action": "getPresence", "channel": channel})
        for client in (bob_1, bob_2):
            await client.close()
        return {"both": both, "after_kill": after_kill, "events_after_kill": events_after_kill,
                "after_last": after_last, "bob_1": changes(bob_1, channel), "bob_2": changes(bob_2, channel)}

    seen = asyncio.run(scenario())

    assert seen["both"]["members"] == sorted([{"user": alice, "connections": 2}, {"user": bob, "connections": 2}], key=lambda m: m["user"])
    assert {"user": alice, "connections": 1} in seen["after_kill"]["members"]
    assert (alice, "leave") not in seen["events_after_kill"]
    assert seen["after_last"]["members"] == [{"user": bob, "connections": 2}] and seen["after_last"]["count"] == 1
    for heard in (seen["bob_1"], seen["bob_2"]):
        assert heard.count((alice, "enter")) == 1 and heard.count((alice, "leave")) == 1


@pytest.fixture(scope="module")
def expiry_scenario(local_stack: Any) -> Iterator[concurrent.futures.Future[dict[str, Any]]]:
    """A short token left alone, and another renewed, from the module's start; what was seen."""
    quiet, renewing = fresh("quiet", "renewing")
    secret = local_stack.jwt_secret

    async def scenario() -> dict[str, Any]:
        started = time.monotonic()
        expiring = await Client.connect(f"{local_stack.websocket_url}?token={mint_token(secret, quiet, hours=TOKEN_SECONDS / 3600)}")
        kept = await Client.connect(f"{local_stack.websocket_url}?token={mint_token(secret, renewing, hours=TOKEN_SECONDS / 3600)}")
        await kept.wait_until(lambda: documents(kept, "tokenExpiring"), 20)  # within the window already: at connect
        renewed = await request(kept, "renewed", {"action": "renewToken", "token": mint_token(secret, renewing, hours=1)})
        await expiring.wait_until(lambda: not expiring.is_open, TOKEN_SECONDS + 2 * 60)  # closed, though it said nothing
        closed_after = time.monotonic() - started
        await asyncio.sleep(max(0.0, TOKEN_SECONDS + 2 * SWEEP_SECONDS - (time.monotonic() - started)))
        still_open = kept.is_open
        answer = await request(kept, "history", {"action": "getRecentMessages", "limit": 1})
        await kept.close()
        return {"renewed": renewed, "closed_after": closed_after, "expiring": expiring, "still_open": still_open, "answer": answer}

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        yield pool.submit(asyncio.run, scenario())


# The tokens of the expiry scenario: within the 90 s notice window from the start, so the notice
# comes at connect, and short enough that the run waits for the sweeper's close for little more.
TOKEN_SECONDS = 30


def test_a_short_token_is_closed_by_the_service_and_a_renewed_one_stays_open(
    expiry_scenario: concurrent.futures.Future[dict[str, Any]],
) -> None:
    seen = expiry_scenario.result(timeout=300)

    assert seen["renewed"]["expiresAt"].endswith("Z")
    assert TOKEN_SECONDS <= seen["closed_after"] <= TOKEN_SECONDS + 120, seen["closed_after"]  # within 2 minutes of exp
    assert documents(seen["expiring"], "tokenExpiring") and EXPIRED in seen["expiring"].frames
    assert seen["still_open"] and "messages" in seen["answer"]
