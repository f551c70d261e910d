"""The review hook through `make offline REVIEW=example` (issue 29): serverless-offline runs the
example review function behind its own Lambda endpoint, and every message a client sends goes
through it first: a denied one is refused with `denied` and takes no seq, a masked one reaches
everyone masked, an edit is reviewed too; without REVIEW= nothing is reviewed."""

from __future__ import annotations

import asyncio
import json
import re
import signal
from typing import Any

import pytest
import websockets

from scripts import offline
from scripts.local_stack import Ports, StackError
from tests.support.make_offline import make_offline, offline_ports_env, read_until_ready, stop_and_check_nothing_is_left


async def exchange(alice_url: str, bob_url: str) -> list[dict[str, Any]]:
    """alice sends four frames to the room with refs; bob reads along. Every reply to alice, then
    what bob received, in order."""
    async with websockets.connect(bob_url, open_timeout=60) as bob, websockets.connect(alice_url, open_timeout=60) as alice:
        frames = [
            {"action": "sendMessage", "content": "hello everyone", "ref": "a"},
            {"action": "sendMessage", "content": "cheap spam here", "ref": "b"},
            {"action": "sendMessage", "content": "oh heck, a typo", "ref": "c"},
            {"action": "editMessage", "seq": 1, "content": "hello, scam", "ref": "d"},
        ]
        replies = []
        for frame in frames:
            await alice.send(json.dumps(frame))
            while True:
                document = json.loads(await asyncio.wait_for(alice.recv(), 60))
                if "reply" in document:
                    replies.append(document["reply"])
                    break
        received = []
        while len(received) < 2:
            document = json.loads(await asyncio.wait_for(bob.recv(), 60))
            received.extend(document.get("messages", []))
        return replies + received


def test_make_offline_review_example_reviews_every_message_before_it_is_stored(ports: Ports) -> None:
    process = make_offline(ports, offline_ports_env(ports, REVIEW="example"))
    try:
        banner = read_until_ready(process)
        assert "every message is reviewed by the example word list" in banner
        # The links the banner gives alice and bob (their pages' #url=...&token=...).
        alice, bob = (re.search(rf"{user}  +\S+#url=(\S+)&token=(\S+)", banner).groups() for user in ("alice", "bob"))  # type: ignore[union-attr]
        sent, denied, masked, edit, first, second = asyncio.run(exchange(f"{alice[0]}?token={alice[1]}", f"{bob[0]}?token={bob[1]}"))
    finally:
        stop_and_check_nothing_is_left(process, ports, signal.SIGINT)

    assert sent["status"] == 200
    assert (denied["status"], denied["error"]["code"]) == (403, "denied")
    assert denied["error"]["text"] == "Not sent: it contains a word this service does not allow"
    assert masked["status"] == 200
    assert (edit["status"], edit["error"]["code"]) == (403, "denied")
    # bob got the first and the masked one, as seqs 1 and 2: the denied message took no seq.
    assert [(m["seq"], m["content"]) for m in (first, second)] == [(1, "hello everyone"), (2, "oh ****, a typo")]


@pytest.mark.parametrize("value", ["arn:aws:lambda:us-east-1:123456789012:function:mine", "yes"])
def test_make_offline_refuses_a_review_function_it_cannot_call(value: str) -> None:
    with pytest.raises(StackError, match="REVIEW=example"):
        offline.review_params({offline.REVIEW_VARIABLE: value})
    assert offline.review_params({}) == {}
    assert offline.review_params({offline.REVIEW_VARIABLE: "example"}) == {"reviewFunction": "example", "reviewTimeoutMs": "5000"}
