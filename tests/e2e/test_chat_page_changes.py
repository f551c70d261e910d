"""Edits, deletes and bans on the chat page, in Chromium through the local stack (issue 29):
another user's edit and delete are shown in place, live; the page edits and deletes its own
messages; after a reload the messages show their current state; a moderator bans a member from
the online list; the banned member's page drops the channel, and stops on a service-wide ban
saying why."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from scripts.browser import ChatPage
from scripts.local_stack import mint_token
from tests.support.browser_support import connection_ids, joined_client, management, page_link, sockets
from tests.support.helpers import fresh
from tests.support.wsclient import Client


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
        await client.send_in_order([{"action": "sendMessage", "channel": channel, "content": "helo"},
                                    {"action": "sendMessage", "channel": channel, "content": "buy watches"}])
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


def test_a_moderator_bans_a_member_from_the_online_list(local_stack: Any, pages: Any) -> None:
    """Issue 29: a page whose token moderates the channel has a ban button beside each other
    member's name (not its own, and none on a page without the claim); the reason typed goes
    with the ban, the member is taken out of the channel at once and cannot join again."""
    mod, alice, bob, channel = fresh("mod", "alice", "bob", "bans")
    token = mint_token(local_stack.jwt_secret, mod, moderates=[channel])
    page = pages(page_link(local_stack, token)).wait_connected()
    onlooker = pages(local_stack.page_url_for(bob)).wait_connected()

    async def scenario() -> None:
        member = await joined_client(local_stack, alice, channel)
        page.join(channel)
        onlooker.join(channel)
        page.wait_until(lambda: {alice, mod, bob} <= set(page.online()["users"]))
        onlooker.wait_until(lambda: {alice, mod, bob} <= set(onlooker.online()["users"]))
        assert ban_buttons(page) == sorted([alice, bob]) and ban_buttons(onlooker) == []

        page.driver.execute_script(
            "document.querySelector(`#online li[data-user='${arguments[0]}'] button.ban`).click()", alice
        )
        prompt = page.driver.switch_to.alert
        prompt.send_keys("spamming links")
        prompt.accept()
        await member.wait_until(lambda: any('"left"' in f and '"banned"' in f for f in member.frames), 15)
        page.wait_until(lambda: any(f"{alice} is banned from #{channel}" in r["text"] for r in page.rows()))
        await member.send(json.dumps({"action": "join", "channel": channel, "ref": "j"}))
        await member.wait_until(lambda: "j" in member.answers(), 15)
        assert member.answers()["j"]["error"]["code"] == "banned"
        assert "spamming links" in member.answers()["j"]["error"]["text"]
        await member.close()

    asyncio.run(scenario())


def ban_buttons(page: ChatPage) -> list[str]:
    """The members the page offers to ban, by name."""
    return sorted(page.driver.execute_script(
        "return [...document.querySelectorAll('#online li')].filter(li => li.querySelector('button.ban')).map(li => li.dataset.user)"
    ))


def test_a_banned_members_page_drops_the_channel_and_a_service_ban_stops_it_saying_why(local_stack: Any, pages: Any) -> None:
    """The page of the member banned: a channel ban takes the channel off its list at once, says
    why, and a reconnect (which reads the conversation list again) does not join it back; a service-wide ban stops
    the page with the reason and the end of the ban, and it does not knock on the door again."""
    mod, bob, channel = fresh("mod", "bob", "banned")
    moderator_token = mint_token(local_stack.jwt_secret, mod, moderates=["*"])
    page = pages(local_stack.page_url_for(bob), faults=True).wait_connected()
    page.join(channel)
    key = f"channel:{channel}"

    async def ban(**frame: Any) -> None:
        moderator = await Client.connect(f"{local_stack.websocket_url}?token={moderator_token}")
        await moderator.send_in_order([{"action": "ban", "user": bob, **frame}])
        await moderator.close()

    asyncio.run(ban(channel=channel, reason="off topic"))
    page.wait_until(lambda: key not in [c["key"] for c in page.conversations()])
    assert page.text_of("conversations-status") == f"You were taken out of #{channel}: a moderator banned you from it."
    (connection,) = connection_ids(local_stack, bob)
    assert management(local_stack, connection, "DELETE") == 204  # a reconnect reads the list again
    page.wait_until(lambda: "Caught up after reconnecting" in page.status())
    time.sleep(2)  # the list's answer, and any join it would start
    assert key not in [c["key"] for c in page.conversations()] and page.title() != f"#{channel}"

    asyncio.run(ban(reason="abuse", seconds=600))
    page.wait_until(lambda: page.status().startswith("Banned from this service until 20"))
    assert page.status().endswith(": abuse. The page does not reconnect.")
    time.sleep(3)
    assert sockets(page) == 2 and page.status().startswith("Banned")  # the first, and the reconnect's
