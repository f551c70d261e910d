"""What the browser tests share: whether they can run here, a WebSocket client beside the pages,
the fault-injecting WebSocket, and the local stack's management API (to close or post to a
page's connection)."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Key

from scripts import browser
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
