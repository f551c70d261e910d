"""The chat page in a real browser (Debian's headless Chromium), against the local stack."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.parse
import urllib.request
import uuid
from typing import Any, Iterator

import pytest

from scripts import browser
from scripts.browser import ChatPage
from scripts.service_config import ROOT
from tests.wsclient import Client

# Set by .ci/run: there, a missing browser fails the browser tests instead of skipping them.
REQUIRED = "BROWSER_TESTS"


def require_browser() -> None:
    """Skip a test that needs Chromium where it is not installed (saying why), or fail it where
    the browser tests are required (CI). Only the tests that open a page call this."""
    reason = browser.missing()
    if reason is None:
        return
    if os.environ.get(REQUIRED) == "required":
        pytest.fail(f"the browser tests must run here ({REQUIRED}=required), but {reason}")
    pytest.skip(f"no browser: {reason}")


@pytest.fixture
def pages() -> Iterator[Any]:
    """Open chat pages, each in a browser of its own; all closed at the end."""
    require_browser()
    drivers: list[Any] = []

    def open_page(url: str) -> ChatPage:
        drivers.append(browser.chromium())
        return ChatPage(drivers[-1]).open(url)

    yield open_page
    for driver in drivers:
        driver.quit()


def users(*names: str) -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{name}-{run}" for name in names]


def test_the_page_is_served_as_utf8_html_with_its_script(local_stack: Any) -> None:
    with urllib.request.urlopen(local_stack.page_url, timeout=30) as response:
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'<script src="chat.js">' in response.read()
    with urllib.request.urlopen(f"{local_stack.page_url}chat.js", timeout=30) as response:
        assert response.headers["Content-Type"] == "text/javascript; charset=utf-8"


@pytest.mark.parametrize("required", [True, False], ids=["ci", "elsewhere"])
def test_without_a_browser_the_browser_tests_fail_in_ci_and_are_skipped_elsewhere(
    monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    monkeypatch.setattr(browser, "missing", lambda: "/usr/bin/chromium not installed")
    if required:
        monkeypatch.setenv(REQUIRED, "required")
    else:
        monkeypatch.delenv(REQUIRED, raising=False)

    with pytest.raises(pytest.fail.Exception if required else pytest.skip.Exception) as stopped:
        require_browser()

    assert "/usr/bin/chromium not installed" in str(stopped.value)


def test_two_users_exchange_a_room_message_and_a_dm_and_a_wscat_frame_appears(local_stack: Any, pages: Any) -> None:
    alice, bob, carol, dave = users("alice", "bob", "carol", "dave")
    alice_page = pages(local_stack.page_url_for(alice)).wait_connected()
    bob_page = pages(local_stack.page_url_for(bob)).wait_connected()
    assert alice_page.status() == f"Connected to {local_stack.websocket_url} as {alice}."

    async def scenario() -> None:
        carol_ws = await Client.connect(local_stack.url_for(carol))
        room = "안녕하세요 여러분 👋 <b>not bold</b>"
        alice_page.send(room)
        bob_page.wait_until(lambda: room in bob_page.contents())
        alice_page.wait_until(lambda: "Message sent to all connections." in alice_page.notices())
        (row,) = [r for r in bob_page.rows("feed") if r["parts"].get("content") == room]
        assert row["parts"]["sender"] == alice and row["elements"] == 3  # text, not HTML

        secret = "비밀 이야기"
        alice_page.send(secret, to=bob)
        bob_page.wait_until(lambda: secret in bob_page.contents())
        alice_page.wait_until(lambda: f"Direct message delivered to {bob}." in alice_page.notices())
        (dm_row,) = [r for r in bob_page.rows("feed") if r["parts"].get("content") == secret]
        assert "dm" in dm_row["classes"].split() and dm_row["parts"]["sender"] == f"{alice} → {bob}"

        # A frame from a wscat client appears in both pages.
        wscat_text = f"wscat 에서 왔어요 {uuid.uuid4().hex[:6]}"
        wscat = await asyncio.create_subprocess_exec(
            "npx", "wscat", "-c", local_stack.url_for(dave),
            "-x", json.dumps({"action": "sendMessage", "content": wscat_text}, ensure_ascii=False),
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        await asyncio.wait_for(wscat.communicate(), 60)
        for page in (alice_page, bob_page):
            page.wait_until(lambda p=page: wscat_text in p.contents())
        await carol_ws.wait_until(lambda: wscat_text in carol_ws.contents())
        assert secret not in carol_ws.contents()  # the DM reached bob only
        await carol_ws.close()

    asyncio.run(scenario())

    # bob loads his conversation with alice.
    bob_page.load_history(alice)
    bob_page.wait_until(lambda: "비밀 이야기" in bob_page.contents("history"))
    assert bob_page.contents("history") == ["비밀 이야기"]


def test_refusals_and_disconnects_are_shown(local_stack: Any, pages: Any) -> None:
    (erin,) = users("erin")
    page = pages(local_stack.page_url_for(erin)).wait_connected()

    page.send("hi", to="a#b")
    page.wait_until(lambda: any('"to" must be a user id' in text for text in page.notices(refusals=True)))
    page.send("x" * 40_000)  # over API Gateway's 32 KB frame limit: refused before sending
    page.wait_until(lambda: any("frame over 32768 bytes" in text for text in page.notices(refusals=True)))
    page.load_history(erin)
    page.wait_until(lambda: any("no direct conversation with yourself" in t for t in page.notices(refusals=True)))

    page.element("disconnect").click()
    page.wait_until(lambda: page.status() == "Disconnected (code 1000: bye).")
    assert page.element("send").get_property("disabled")


def test_a_refused_token_is_shown_as_such(local_stack: Any, pages: Any) -> None:
    page = pages(f"{local_stack.page_url}#url={local_stack.websocket_url}&token=not-a-token")

    page.wait_until(lambda: page.status().startswith("Could not connect: the token was refused"))


def test_the_token_leaves_the_address_bar_once_read(local_stack: Any, pages: Any) -> None:
    (frank,) = users("frank")
    token = local_stack.token(frank)

    page = pages(local_stack.page_url_for(frank)).wait_connected()

    assert token not in page.driver.current_url and "token=" not in page.driver.current_url
    address, _, fragment = page.driver.current_url.partition("#")
    assert address == local_stack.page_url and urllib.parse.parse_qs(fragment) == {"url": [local_stack.websocket_url]}
    page.driver.back()  # the entry was replaced: no entry of this tab's history holds the token
    assert token not in page.driver.current_url
