"""The chat page in Chromium against the local stack: who is online, the token's expiry and
renewal, the conversations list (split from test_chat_page.py so that xdist runs them beside it)."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone
from typing import Any

from scripts.local_stack import mint_token
from tests.e2e.conftest import SWEEP_SECONDS
from tests.support.browser_support import (
    PRESENCE_GRACE_SECONDS,
    QUICK_TOKEN_SECONDS,
    SHORT_TOKEN_SECONDS,
    connection_ids,
    joined_client,
    management,
    page_link,
    set_offline,
    sockets,
    wait_for_contents,
)
from tests.support.helpers import fresh
from tests.support.wsclient import Client

# --- who is online, token expiry, the conversations list (issues 15 and 16) ---------------------


def test_the_online_list_follows_users_joining_and_leaving_and_counts_two_connections_once(local_stack: Any, pages: Any) -> None:
    """Issue 15: on opening a channel the page asks getPresence (bob, already there on two
    connections, is one user), then follows presenceChange: carol entering, and both leaving
    once their last connection is gone (announced after the service's 15 s grace)."""
    alice, bob, carol, channel = fresh("alice", "bob", "carol", "online")

    async def scenario() -> None:
        bob_1 = await joined_client(local_stack, bob, channel)
        bob_2 = await joined_client(local_stack, bob, channel)
        page = pages(local_stack.page_url_for(alice)).wait_connected()
        assert page.online()["users"] == [] and "channels" in page.online()["note"]  # the room has no presence
        page.join(channel)
        page.wait_until(lambda: (page.online()["count"], page.online()["users"]) == (2, sorted([alice, bob])))
        carol_ws = await joined_client(local_stack, carol, channel)
        page.wait_until(lambda: (page.online()["count"], page.online()["users"]) == (3, sorted([alice, bob, carol])))
        page.show("room")
        assert page.online()["users"] == []
        page.show(f"channel:{channel}")  # opened again: getPresence again, bob still once
        page.wait_until(lambda: (page.online()["count"], page.online()["users"]) == (3, sorted([alice, bob, carol])))

        for client in (bob_1, bob_2, carol_ws):
            await client.close()
        gone = time.monotonic()
        page.wait_until(lambda: (page.online()["count"], page.online()["users"]) == (1, [alice]), PRESENCE_GRACE_SECONDS + 30)
        print(f"\nthe leaves shown {time.monotonic() - gone:.1f} s after the last connections closed")

    asyncio.run(scenario())

def test_the_expiry_notice_renewal_and_the_end_of_an_unrenewed_token(local_stack: Any, pages: Any) -> None:
    """Issue 15, on three pages:
    - keeper (a 45 s token) gets the sweeper's tokenExpiring notice (it runs every 5 s here);
      a token for someone else is refused with the service's words, a fresh one of keeper's
      makes the notice go away, and the next connection (after a server-side close) uses it;
    - renewer (30 s) renews on a notice the test posts to its connection (the sweeper's frame,
      at once rather than at the sweeper's next run) and goes on past its first exp on the
      same connection;
    - lapser (30 s) does not renew: its first frame after exp is refused and the connection
      closed; the page says why and does not reconnect with that token; Renew with a fresh one
      connects again."""
    keeper, renewer, lapser, stranger = fresh("keeper", "renewer", "lapser", "stranger")
    secret = local_stack.jwt_secret
    exp = time.time() + QUICK_TOKEN_SECONDS
    quick = QUICK_TOKEN_SECONDS / 3600
    lapser_page = pages(page_link(local_stack, mint_token(secret, lapser, quick)), faults=True).wait_connected()
    renewer_page = pages(page_link(local_stack, mint_token(secret, renewer, quick)), faults=True).wait_connected()
    keeper_page = pages(page_link(local_stack, mint_token(secret, keeper, SHORT_TOKEN_SECONDS / 3600)), faults=True).wait_connected()

    (renewer_connection,) = connection_ids(local_stack, renewer)
    notice = {"tokenExpiring": {"at": datetime.fromtimestamp(int(exp), timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")}}
    assert management(local_stack, renewer_connection, "POST", notice) in (200, 204)
    renewer_page.wait_until(lambda: renewer_page.expiry_notice() is not None)
    renewer_page.renew(mint_token(secret, renewer, 1))
    renewer_page.wait_until(lambda: renewer_page.expiry_notice() is None)

    keeper_page.wait_until(lambda: keeper_page.expiry_notice() is not None, 2 * SWEEP_SECONDS + 5)
    assert "expires in" in keeper_page.expiry_notice()  # type: ignore[operator]
    keeper_page.renew(mint_token(secret, stranger, 1))
    keeper_page.wait_until(lambda: "The token is for another user" in keeper_page.text_of("renew-status"))
    assert keeper_page.expiry_notice() is not None
    fresh_token = mint_token(secret, keeper, 1)
    keeper_page.renew(fresh_token)
    keeper_page.wait_until(lambda: keeper_page.expiry_notice() is None)
    assert keeper_page.text_of("token-note").startswith("Token renewed")
    (keeper_connection,) = connection_ids(local_stack, keeper)
    assert management(local_stack, keeper_connection, "DELETE") == 204
    keeper_page.wait_until(lambda: sockets(keeper_page) == 2)
    keeper_page.wait_connected()
    # The token is offered as a subprotocol, never in the URL (docs/protocol.md, "Connecting").
    assert keeper_page.driver.execute_script("return window.__faults.protocols[1]") == ["serverless-websocket", f"bearer.{fresh_token}"]
    assert "token=" not in keeper_page.driver.execute_script("return window.__faults.urls[1]")

    time.sleep(max(0.0, exp + 1 - time.time()))  # past the first tokens' exp
    lapser_page.send("too late")
    lapser_page.wait_until(lambda: "token has expired" in lapser_page.status())
    text = f"past the first exp {uuid.uuid4().hex[:6]}"
    renewer_page.send(text)
    wait_for_contents(renewer_page, [text])
    assert connection_ids(local_stack, renewer) == [renewer_connection] and sockets(renewer_page) == 1
    time.sleep(1.5)
    assert sockets(lapser_page) == 1 and "token has expired" in lapser_page.status()  # no reconnect loop
    assert lapser_page.expiry_notice() is not None and connection_ids(local_stack, lapser) == []

    lapser_page.renew(mint_token(secret, lapser, 1))
    lapser_page.wait_connected()
    assert sockets(lapser_page) == 2 and lapser_page.expiry_notice() is None


def unread_on_the_service(local_stack: Any, user: str) -> dict[str, int]:
    """The user's unread counts as getConversations gives them, by the other user of each DM."""

    async def ask() -> dict[str, int]:
        client = await Client.connect(local_stack.url_for(user))
        await client.send(json.dumps({"action": "getConversations", "ref": "c"}))
        await client.wait_until(lambda: "c" in client.answers(), 30)
        await client.close()
        return {e["with"]: e["unread"] for e in client.answers()["c"]["body"]["conversations"] if "with" in e}

    return asyncio.run(ask())


def with_unread(page: Any) -> list[str]:
    """The conversations listed with an unread count (the service's: issue 30), in list order."""
    return [c["key"] for c in page.conversations() if c["unread"]]


def test_a_dm_sent_while_the_page_was_closed_is_listed_as_new_and_opening_it_shows_it(local_stack: Any, pages: Any) -> None:
    """Issue 16: getConversations on connect lists DMs the page never saw, most recent first,
    with their unread counts (the service's since issue 30); opening one shows it and clears the
    count, which a reload still shows cleared; a DM that comes while the page is closed again is
    counted again and opened with "after"; one started while the connection was down appears
    after the reconnect."""
    dana, erin, finn, gus = fresh("dana", "erin", "finn", "gus")

    def direct(sender: str, content: str) -> None:
        async def send() -> None:
            client = await Client.connect(local_stack.url_for(sender))
            await client.send(json.dumps({"action": "sendDirectMessage", "to": dana, "content": content}))
            await client.wait_until(lambda: any("stored" in f or "delivered" in f for f in client.frames), 30)
            await client.close()

        asyncio.run(send())

    direct(erin, "erin wrote while you were away")
    direct(finn, "finn wrote later")
    link = local_stack.page_url_for(dana)
    page = pages(link, faults=True).wait_connected()

    page.wait_until(lambda: with_unread(page) == [f"dm:{finn}", f"dm:{erin}"])
    assert [c["key"] for c in page.conversations()] == ["room", f"dm:{finn}", f"dm:{erin}"]  # most recent first
    page.show(f"dm:{erin}")
    wait_for_contents(page, ["erin wrote while you were away"])
    assert with_unread(page) == [f"dm:{finn}"]
    page.wait_until(lambda: unread_on_the_service(local_stack, dana).get(erin) == 0)  # the page marked it read

    page.open("about:blank")
    page.open(link).wait_connected()
    page.wait_until(lambda: len(page.conversations()) == 3)
    assert with_unread(page) == [f"dm:{finn}"]  # erin's was shown before the reload

    page.open("about:blank")
    direct(erin, "erin again")
    page.open(link).wait_connected()
    page.wait_until(lambda: with_unread(page) == [f"dm:{erin}", f"dm:{finn}"])
    page.show(f"dm:{erin}")
    page.wait_until(lambda: page.contents() == ["erin wrote while you were away", "erin again"])
    assert with_unread(page) == [f"dm:{finn}"]
    sent = [json.loads(f) for f in page.driver.execute_script("return window.__faults.sent")]
    # Every request carries a ref of its own (its reply carries it back): left out here.
    asked = [{k: v for k, v in f.items() if k != "ref"} for f in sent if f.get("with") == erin]
    assert asked == [{"action": "getRecentMessages", "with": erin, "limit": 100, "after": 0}]

    set_offline(page.driver, True)
    # Closed from the server side: this page's connection, and those of the earlier loads that
    # Chromium keeps open for its back/forward cache.
    for connection_id in connection_ids(local_stack, dana):
        try:
            management(local_stack, connection_id, "DELETE")
        except urllib.error.HTTPError:
            pass  # gone already
    page.wait_until(lambda: not page.status().startswith("Connected"))
    direct(gus, "gus, new while you reconnected")
    set_offline(page.driver, False)
    page.wait_until(lambda: with_unread(page) == [f"dm:{gus}", f"dm:{finn}"], 30)



def test_a_user_in_the_presence_grace_is_shown_as_leaving_and_not_counted(local_stack: Any, pages: Any) -> None:
    """Issue 24: a user whose last connection just went is listed by getPresence with 0
    connections for the 15 s grace; the page counted them as online like anyone else."""
    vera, walt, channel = fresh("vera", "walt", "grace")

    async def walt_comes_and_goes() -> None:
        walt_ws = await joined_client(local_stack, walt, channel)
        await walt_ws.close()
        await asyncio.sleep(1)  # his $disconnect is done: the service lists him with 0

    asyncio.run(walt_comes_and_goes())
    page = pages(local_stack.page_url_for(vera)).wait_connected()
    page.join(channel)

    page.wait_until(lambda: page.online()["users"] == sorted([vera, walt]))
    online = page.online()
    assert online["leaving"] == [walt] and online["count"] == 1
    assert any("leaving" in text for text in online["texts"] if text.startswith(walt))
    page.wait_until(lambda: page.online()["users"] == [vera], PRESENCE_GRACE_SECONDS + 30)
    assert page.online()["count"] == 1
