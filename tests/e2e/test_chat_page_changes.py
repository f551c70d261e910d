"""Edits and deletes on the chat page, in Chromium through the local stack (issue 29): another
user's edit and delete are shown in place, live; the page edits and deletes its own messages;
after a reload the messages show their current state."""

from __future__ import annotations

import asyncio
from typing import Any

from scripts.browser import ChatPage
from tests.support.browser_support import joined_client
from tests.support.helpers import fresh


def row_of(page: ChatPage, seq: int) -> dict[str, Any]:
    (row,) = [r for r in page.rows() if r["seq"] == seq]
    return row


def click(page: ChatPage, seq: int, label: str) -> None:
    page.driver.execute_script(
        "[...document.querySelectorAll('#feed li')].find(li => li.dataset.seq === String(arguments[0]))"
        ".querySelector('.actions').querySelectorAll('button').forEach(b => { if (b.textContent === arguments[1]) b.click(); })",
        seq,
        label,
    )


def test_changes_are_shown_in_place_live_and_after_a_reload(local_stack: Any, pages: Any) -> None:
    alice, bob, channel = fresh("alice", "bob", "edits")
    page = pages(local_stack.page_url_for(bob)).wait_connected()
    page.join(channel)

    async def alice_writes_then_changes() -> None:
        client = await joined_client(local_stack, alice, channel)
        await client.send_all([{"action": "sendMessage", "channel": channel, "content": "helo"},
                               {"action": "sendMessage", "channel": channel, "content": "buy watches"}], 0.25)
        page.wait_until(lambda: page.seqs() == [1, 2])
        assert "actions" not in row_of(page, 1)["parts"]  # not bob's, and bob moderates nothing
        await client.send_all([{"action": "editMessage", "channel": channel, "seq": 1, "content": "hello"},
                               {"action": "deleteMessage", "channel": channel, "seq": 2}], 0.25)
        page.wait_until(lambda: "deleted" in row_of(page, 2)["parts"])
        await client.close()

    asyncio.run(alice_writes_then_changes())

    assert page.seqs() == [1, 2]  # the changes are no rows of their own
    assert row_of(page, 1)["parts"]["content"] == "hello" and row_of(page, 1)["parts"]["edited"] == "(edited)"
    assert row_of(page, 2)["parts"]["deleted"] == "message deleted" and "content" not in row_of(page, 2)["parts"]

    page.send("mine, with a tpyo")
    page.send("mine, to take back")
    page.wait_until(lambda: page.seqs() == [1, 2, 5, 6])
    click(page, 6, "delete")
    page.wait_until(lambda: "deleted" in row_of(page, 6)["parts"])
    click(page, 5, "edit")
    alert = page.driver.switch_to.alert
    alert.send_keys("mine, with no typo")
    alert.accept()
    page.wait_until(lambda: row_of(page, 5)["parts"].get("content") == "mine, with no typo")

    again = pages(local_stack.page_url_for(bob)).wait_connected()
    again.join(channel)
    again.wait_until(lambda: again.seqs() == [1, 2, 5, 6])
    shown = {seq: row_of(again, seq)["parts"] for seq in (1, 2, 5, 6)}
    assert shown[1]["content"] == "hello" and shown[1]["edited"] == "(edited)"
    assert shown[5]["content"] == "mine, with no typo" and shown[5]["edited"] == "(edited)"
    assert "deleted" in shown[2] and "deleted" in shown[6]
