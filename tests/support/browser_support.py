"""What the browser tests share: whether they can run here, a WebSocket client beside the pages,
the fault-injecting WebSocket, and the local stack's management API (to close or post to a
page's connection)."""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from scripts import browser
from scripts.browser import ChatPage
from tests.support.helpers import fresh
from tests.support.wsclient import Client

# Set by .ci/run: there, a missing browser fails the browser tests instead of skipping them.
REQUIRED = "BROWSER_TESTS"
FAULTS_JS = (Path(__file__).parent / "websocket_faults.js").read_text()


def require_browser() -> None:
    """Skip a test that needs Chromium where it is not installed (saying why), or fail it where
    the browser tests are required (CI). Only the tests that open a page call this."""
    reason = browser.missing()
    if reason is None:
        return
    if os.environ.get(REQUIRED) == "required":
        pytest.fail(f"the browser tests must run here ({REQUIRED}=required), but {reason}")
    pytest.skip(f"no browser: {reason}")


async def joined_client(local_stack: Any, user: str, *channels: str) -> Client:
    """A WebSocket client (not a browser) of this user beside the pages, in these channels."""
    client = await Client.connect(local_stack.url_for(user))
    for channel in channels:
        await client.send(json.dumps({"action": "join", "channel": channel}))
        await client.wait_until(lambda c=channel: any(f'"joined": {{"channel": "{c}"' in f for f in client.frames), 30)
    return client


def install_faults(driver: Any) -> None:
    """From the next page load on, the page's WebSocket is tests/support/websocket_faults.js's."""
    driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": FAULTS_JS})


def set_offline(driver: Any, offline: bool) -> None:
    """Chromium's network emulation: offline, no new connection can be made (as on a train)."""
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd(
        "Network.emulateNetworkConditions",
        {"offline": offline, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
    )


def connection_ids(local_stack: Any, user: str) -> list[str]:
    """The user's open connections, from the connections table's user index."""
    table = local_stack.dynamodb().Table(local_stack.table_names["ConnectionsTable"])
    answer = table.query(IndexName="user_id-index", KeyConditionExpression=Key("user_id").eq(user))
    return [item["connection_id"] for item in answer["Items"]]


def management(local_stack: Any, connection_id: str, method: str, document: Any = None) -> int:
    """The @connections API of serverless-offline: DELETE closes the connection from the server
    side, POST sends it a frame. The HTTP status."""
    url = f"http://localhost:{local_stack.ports.websocket}/@connections/{connection_id}"
    body = json.dumps(document).encode() if document is not None else None
    request = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


# --- shared by the chat page tests (tests/e2e/test_chat_page*.py) ----------------------------------

# Under the per-connection rate limit (5 a second): a client sending many messages paces itself.
SEND_INTERVAL = 0.25
# A user's last connection leaves a channel: the leave is announced after this grace (chat/presence.py).
PRESENCE_GRACE_SECONDS = 15
# A token this short gets the expiry notice at the sweeper's first run (it is due 90 s before
# exp). Not much shorter: a row due more than 10 sweep buckets ago (50 s here) is not looked at.
SHORT_TOKEN_SECONDS = 45
# Tokens that expire during a test (their notice is posted by the test). Long enough for three
# pages to open and one to renew on a loaded CI machine: at 12 s the renewer's token once ran
# out while the pages were still opening, beside another xdist worker.
QUICK_TOKEN_SECONDS = 30


async def send_paced(client: Client, contents: list[str], channel: str | None = None) -> None:
    """Send to the room or a channel, each once the one before is answered (so stored in this order)."""
    frames = [{"action": "sendMessage", "content": content, **({"channel": channel} if channel else {})} for content in contents]
    await client.send_in_order(frames, SEND_INTERVAL)


def history_of(local_stack: Any, user: str, **conversation: Any) -> list[dict[str, Any]]:
    """Every stored message of a conversation, read back by a client of `user`."""

    async def read() -> list[dict[str, Any]]:
        client = await Client.connect(local_stack.url_for(user))
        await client.send(json.dumps({"action": "getRecentMessages", "limit": 100, **conversation}))
        await client.wait_until(lambda: any(f.startswith('{"history"') for f in client.frames), 30)
        await client.close()
        return next(json.loads(f) for f in client.frames if f.startswith('{"history"'))["history"]["messages"]

    return asyncio.run(read())


def wait_for_contents(page: ChatPage, wanted: list[str], timeout: float = 30.0) -> None:
    page.wait_until(lambda: all(text in page.contents() for text in wanted), timeout)


def ruth_and_sam_in_a_channel(local_stack: Any, pages: Any, name: str) -> tuple[ChatPage, ChatPage, str, str]:
    """ruth's page (with tests/support/websocket_faults.js) and sam's, both in a new channel: ruth's
    page, sam's page, sam's user id, the channel."""
    ruth, sam, channel = fresh("ruth", "sam", name)
    ruth_page = pages(local_stack.page_url_for(ruth), faults=True).wait_connected()
    sam_page = pages(local_stack.page_url_for(sam)).wait_connected()
    ruth_page.join(channel)
    sam_page.join(channel)
    return ruth_page, sam_page, sam, channel


def sent_messages(page: ChatPage) -> list[dict[str, Any]]:
    """Every sendMessage frame the page's (fault-injecting) WebSocket sent."""
    return [json.loads(f) for f in page.driver.execute_script("return window.__faults.sent") if '"sendMessage"' in f]


def assert_shown_and_stored_once(local_stack: Any, shown_on: tuple[ChatPage, ...], reader: str, channel: str, text: str) -> None:
    """The message is on every page once (still once a second later) and stored once."""
    for page in shown_on:
        wait_for_contents(page, [text])
    time.sleep(1)
    for page in shown_on:
        assert page.contents() == [text]
    assert [m["content"] for m in history_of(local_stack, reader, channel=channel)] == [text]


def page_link(local_stack: Any, token: str) -> str:
    return f"{local_stack.page_url}#url={local_stack.websocket_url}&token={token}"


def sockets(page: ChatPage) -> int:
    """How many WebSocket connections the page opened (tests/support/websocket_faults.js counts them)."""
    return page.driver.execute_script("return window.__faults.sockets")
