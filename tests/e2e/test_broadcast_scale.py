"""Broadcast at sizes where the tutorial's code silently loses recipients, on both delivery
paths: posted by sendMessage itself (inline), and through SQS by the delivery workers."""

from __future__ import annotations

from typing import Any

import pytest

from chat import connections, fanout
from tests.support.events import message_event, send_message_body


# The smallest room these tests send to (test_many_gone_connections_are_all_pruned).
SMALLEST_ROOM = 200


@pytest.fixture(params=["inline", "fan-out"])
def send(request: pytest.FixtureRequest, handler: Any, workers: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """send_message on one path, checked to have taken it; on the fan-out path the workers then
    drain the queue. The threshold puts every room here on the path: above all of them inline,
    below all of them for the fan-out (at the default, 200, a room of 200 stays inline)."""
    fan_out = request.param == "fan-out"
    monkeypatch.setattr(fanout, "FANOUT_THRESHOLD", SMALLEST_ROOM // 4 if fan_out else 100_000)

    def _send(event: dict[str, Any]) -> dict[str, Any]:
        response = handler.send_message(event, None)
        before = len(workers.invocations)
        workers.drain()
        assert (len(workers.invocations) > before) == fan_out, f"the {request.param} path was not taken"
        return response

    return _send


def count_scan_pages(handler: Any) -> list[int]:
    pages: list[int] = []
    client = connections.table().meta.client
    client.meta.events.register("after-call.dynamodb.Scan", lambda parsed, **_: pages.append(parsed["Count"]))
    return pages


def test_broadcast_reads_every_scan_page_past_1_mb(handler: Any, send: Any, management: Any, table: Any) -> None:
    # 600 rows of ~5 KB: about 3 MB, so DynamoDB (and moto) must split the Scan into pages.
    connection_ids = [f"padded-{i:04d}" for i in range(600)]
    with table.batch_writer() as batch:
        for connection_id in connection_ids:
            batch.put_item(Item={"connection_id": connection_id, "padding": "p" * 5000})
    pages = count_scan_pages(handler)

    response = send(message_event("padded-0000", send_message_body("all pages")))

    assert response["statusCode"] == 200
    if fanout.FANOUT_THRESHOLD < 600:  # first one short page (is the room small?), then the round reads them all
        assert pages[0] == fanout.FANOUT_THRESHOLD + 1
        pages = pages[1:]
    assert len(pages) >= 3, pages
    assert sum(pages) == 600
    missing = [cid for cid in connection_ids if management.received(cid) != [{"messages": [{"content": "all pages"}]}]]
    assert missing == []


def test_projection_keeps_scan_pages_small(handler: Any, management: Any, table: Any) -> None:
    # With only connection_id projected, 600 padded rows still cost one page of results.
    with table.batch_writer() as batch:
        for i in range(600):
            batch.put_item(Item={"connection_id": f"c{i}", "padding": "p" * 1000})
    scanned: list[dict] = []
    client = connections.table().meta.client
    client.meta.events.register("after-call.dynamodb.Scan", lambda parsed, **_: scanned.extend(parsed["Items"]))

    handler.send_message(message_event("c0", send_message_body("hi")), None)

    assert len(scanned) == (fanout.FANOUT_THRESHOLD + 1) + 600  # is the room small? then every row once
    assert all(set(item) == {"connection_id"} for item in scanned)


def test_1000_connections_each_receive_exactly_one_copy(send: Any, management: Any, connect: Any) -> None:
    connection_ids = [f"conn-{i:04d}" for i in range(1000)]
    connect(*connection_ids)

    response = send(message_event("conn-0000", send_message_body("hello, 1000")))

    assert response["statusCode"] == 200
    assert {cid: management.attempts.get(cid) for cid in connection_ids} == dict.fromkeys(connection_ids, 1)
    assert all(management.received(cid) == [{"messages": [{"content": "hello, 1000"}]}] for cid in connection_ids)


def test_many_gone_connections_are_all_pruned(send: Any, management: Any, connect: Any, table: Any) -> None:
    connection_ids = [f"conn-{i:03d}" for i in range(200)]
    connect(*connection_ids)
    gone = set(connection_ids[::3])
    for connection_id in gone:
        management.answer(connection_id, 410)

    send(message_event("conn-001", send_message_body("hi")))

    remaining = {item["connection_id"] for item in table.scan()["Items"]}
    assert remaining == set(connection_ids) - gone
    assert all(management.received(cid) == [{"messages": [{"content": "hi"}]}] for cid in remaining)
