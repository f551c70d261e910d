"""Events out through the local stack (docs/events.md): what a client does shows in `make events`,
one JSON line each, message.created with its seq from the history's stream (fed to the events
function as Lambda's event source mapping would), the others from where they were decided, the
presence.left after the grace."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import signal
import subprocess
import threading
import time
from typing import Any


from scripts.service_config import ROOT
from tests.support.helpers import fresh
from tests.support.wsclient import Client, request


class MakeEvents:
    """`make events` in its own process group, its lines read by a thread."""

    def __init__(self, stack: Any) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OFFLINE_"))}
        env["OFFLINE_WEBSOCKET_PORT"] = str(stack.ports.websocket)
        self.process = subprocess.Popen(["make", "--no-print-directory", "events"], cwd=ROOT, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.process.stderr is not None
        banner = self.process.stderr.readline()  # printed once it follows the stack's events
        assert "as they arrive" in banner, banner + self.process.stderr.read()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)

    def until(self, wanted: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Every event printed until `wanted(events so far)` holds."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not wanted(seen):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"make events printed {len(seen)} events, not what was wanted: {seen[-5:]}"
            try:
                seen.append(json.loads(self.lines.get(timeout=remaining)))
            except queue.Empty:
                continue
        return seen

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(timeout=30)


def test_what_a_client_does_shows_in_make_events_one_json_line_each(running: Any) -> None:
    alice, channel = fresh("alice", "events")
    tail = MakeEvents(running)

    async def scenario() -> dict[str, Any]:
        client = await Client.connect(running.url_for(alice))
        await request(client, {"action": "join", "channel": channel})
        sent = await request(client, {"action": "sendMessage", "channel": channel, "content": "for the app",
                                      "clientMessageId": "e-1"})
        await client.close()
        return dict(sent["sent"])

    try:
        sent = asyncio.run(scenario())

        def mine(event: dict[str, Any]) -> bool:
            detail = event["detail"]
            return detail.get("user") == alice or detail.get("sender") == alice

        def complete(seen: list[dict[str, Any]]) -> bool:
            types = {e["detail-type"] for e in seen if mine(e)}
            return {"connection.opened", "channel.joined", "presence.entered", "message.created",
                    "channel.left", "connection.closed", "presence.left"} <= types

        seen = [event for event in tail.until(complete, timeout=90) if mine(event)]  # presence.left: after the grace
    finally:
        tail.stop()

    assert all(event["source"] == "serverless-websocket" for event in seen)
    (created,) = [e["detail"] for e in seen if e["detail-type"] == "message.created"]
    assert created["seq"] == sent["seq"] and created["id"] == sent["id"]
    assert created["conversation"] == {"channel": channel} and created["content"] == "for the app"
    assert created["clientMessageId"] == "e-1" and created["origin"] == "websocket"
    (closed,) = [e["detail"] for e in seen if e["detail-type"] == "connection.closed"]
    (opened,) = [e["detail"] for e in seen if e["detail-type"] == "connection.opened"]
    assert closed["reason"] == "disconnect" and closed["connectionId"] == opened["connectionId"]
    (left,) = [e["detail"] for e in seen if e["detail-type"] == "presence.left"]
    assert left == {**left, "channel": channel, "user": alice}
    # At least once: a repeat is possible, and then it is the same event (a consumer drops it).
    by_id: dict[str, list[dict[str, Any]]] = {}
    for event in seen:
        by_id.setdefault(event["detail"]["eventId"], []).append(event["detail"])
    assert all(all(d == details[0] for d in details) for details in by_id.values())
    assert len(by_id) == 7


def test_make_events_without_a_running_stack_says_so(tmp_path: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OFFLINE_"))}
    env["OFFLINE_WEBSOCKET_PORT"] = "1"  # no stack there
    made = subprocess.run(["make", "--no-print-directory", "events"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert made.returncode != 0
    assert "make events: no `make offline` is running in this folder on WebSocket port 1" in made.stderr
