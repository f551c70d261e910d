"""Sequence numbers and sends that are safe to retry: every stored message gets its
conversation's next seq (1, 2, 3, ... no gap, no repeat, whoever sends and however they race),
and a clientMessageId makes a retry the same message."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import connections, history, ratelimit
from tests.support.actions import dm_response, say_response
from tests.support.events import action_body, message_event
from tests.support.helpers import interfering_transactions


def send(handler: Any, connection_id: str, user: str | None, **fields: Any) -> dict[str, Any]:
    return handler.send_message(message_event(connection_id, action_body("sendMessage", **fields), user=user), None)


def acked(response: dict[str, Any]) -> dict[str, Any]:
    assert response["statusCode"] == 200, response
    return json.loads(response["body"])["sent"]


def stored(messages: Any, conversation: str = "room") -> list[tuple[int, Any]]:
    items = [item for item in messages.scan(ConsistentRead=True)["Items"] if item["conversation"] == conversation]
    return sorted((int(item["seq"]), json.loads(item["content_json"])) for item in items)


def test_each_conversation_counts_its_own_seq_from_1(handler: Any, management: Any, messages: Any, connect: Any) -> None:
    connect("alice-1", user="alice")
    connect("bob-1", user="bob")
    for n in range(3):
        say_response(handler, "alice", f"room {n}")
        dm_response(handler, "alice", "bob", f"dm {n}")

    assert stored(messages) == [(1, "room 0"), (2, "room 1"), (3, "room 2")]
    assert stored(messages, "dm#alice#bob") == [(1, "dm 0"), (2, "dm 1"), (3, "dm 2")]
    assert [m["seq"] for frame in management.received("bob-1") for m in frame["messages"]] == [1, 1, 2, 2, 3, 3]


def test_the_head_keeps_the_latest_seq(handler: Any, management: Any, tables: dict[str, Any]) -> None:
    for n in range(4):
        say_response(handler, "alice", n)

    head = tables["ConversationsTable"].get_item(Key={"pk": "room", "sk": "head"})["Item"]
    assert head["seq"] == 4 and history.latest_seq("room") == 4 and history.latest_seq("ch#never") == 0


def test_a_failed_store_leaves_no_hole(
    handler: Any, management: Any, messages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    say_response(handler, "alice", "one")
    client = history.history_table().meta.client
    original = client.transact_write_items
    calls = Counter[str]()

    def fail_once(**kwargs: Any) -> Any:
        calls["transact"] += 1
        if calls["transact"] == 1:
            raise EndpointConnectionError(endpoint_url="x")
        return original(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", fail_once)
    assert say_response(handler, "alice", "lost")["statusCode"] == 500
    assert say_response(handler, "alice", "two")["statusCode"] == 200

    assert stored(messages) == [(1, "one"), (2, "two")]  # the failed one took no seq


def test_concurrent_senders_get_every_seq_once_with_no_gap(handler: Any, management: Any, messages: Any, connect: Any) -> None:
    senders, each = 6, 12
    for n in range(senders):
        connect(f"s{n}", user=f"sender-{n}")  # a user may have at most 5 connections
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            for k in range(each):
                assert send(handler, f"s{n}", None, content=f"{n}:{k}")["statusCode"] == 200
        except BaseException as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    seqs = [seq for seq, _ in stored(messages)]
    assert seqs == list(range(1, senders * each + 1))
    assert sorted(content for _, content in stored(messages)) == sorted(f"{n}:{k}" for n in range(senders) for k in range(each))
    # Each sender's own messages are in the order it sent them.
    for n in range(senders):
        mine = [int(content.split(":")[1]) for _, content in stored(messages) if content.startswith(f"{n}:")]
        assert mine == sorted(mine)


def test_a_conversation_too_busy_to_take_a_seq_refuses_and_stores_nothing(
    handler: Any, management: Any, messages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = history.history_table().meta.client

    def always_taken(**kwargs: Any) -> Any:
        raise ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "taken"},
                           "CancellationReasons": [{"Code": "ConditionalCheckFailed"}]}, "TransactWriteItems")

    monkeypatch.setattr(client, "transact_write_items", always_taken)
    monkeypatch.setattr(history, "APPEND_SECONDS", 0.2)

    assert say_response(handler, "alice", "x") == {"statusCode": 429, "body": history.BUSY}
    assert messages.scan()["Items"] == []


# --- clientMessageId ---------------------------------------------------------------------------


def test_a_retried_send_is_stored_once_and_delivered_once(handler: Any, management: Any, messages: Any, connect: Any) -> None:
    connect("alice-1", "bob-1", user="bob")
    first = acked(send(handler, "alice-1", "alice", content="hello", clientMessageId="m-1"))
    again = acked(send(handler, "alice-1", "alice", content="hello", clientMessageId="m-1"))

    assert first == {"seq": 1, "id": first["id"], "clientMessageId": "m-1", "duplicate": False, "delivery": "complete"}
    assert again == {**first, "duplicate": True}
    assert stored(messages) == [(1, "hello")]
    assert [m["clientMessageId"] for frame in management.received("bob-1") for m in frame["messages"]] == ["m-1"]


def test_a_retry_from_another_connection_of_the_same_user_is_the_same_message(
    handler: Any, management: Any, messages: Any, connect: Any
) -> None:
    connect("alice-phone", "alice-laptop", user="alice")
    acked(send(handler, "alice-phone", "alice", content="hi", clientMessageId="same"))

    assert acked(send(handler, "alice-laptop", "alice", content="hi", clientMessageId="same"))["duplicate"] is True
    assert stored(messages) == [(1, "hi")]


def test_another_users_message_with_the_same_id_is_a_different_message(handler: Any, management: Any, messages: Any) -> None:
    acked(send(handler, "a", "alice", content="from alice", clientMessageId="x1"))

    bob = acked(send(handler, "b", "bob", content="from bob", clientMessageId="x1"))

    assert bob["duplicate"] is False and bob["seq"] == 2
    assert stored(messages) == [(1, "from alice"), (2, "from bob")]


def test_the_same_id_in_another_conversation_is_a_different_message(handler: Any, management: Any, messages: Any) -> None:
    acked(send(handler, "a", "alice", content="room", clientMessageId="x1"))
    dm = json.loads(dm_response(handler, "alice", "bob", "dm", clientMessageId="x1")["body"])["sent"]

    assert dm["duplicate"] is False and dm["to"] == "bob" and dm["seq"] == 1
    assert stored(messages) == [(1, "room")] and stored(messages, "dm#alice#bob") == [(1, "dm")]


def test_in_a_channel_a_retry_is_delivered_once_and_another_users_same_id_is_a_new_message(
    handler: Any, management: Any, messages: Any, connect: Any
) -> None:
    connect("a", user="alice")
    connect("b", user="bob")
    for connection_id, user in (("a", "alice"), ("b", "bob")):
        assert handler.join(message_event(connection_id, action_body("join", channel="lobby"), "join", user), None)["statusCode"] == 200

    first = acked(send(handler, "a", "alice", channel="lobby", content="from alice", clientMessageId="x1"))
    retry = acked(send(handler, "a", "alice", channel="lobby", content="from alice", clientMessageId="x1"))
    bob = acked(send(handler, "b", "bob", channel="lobby", content="from bob", clientMessageId="x1"))

    assert (first["duplicate"], retry["duplicate"], bob["duplicate"]) == (False, True, False) and bob["seq"] == 2
    assert stored(messages, "ch#lobby") == [(1, "from alice"), (2, "from bob")]
    assert [m["content"] for frame in management.received("b") for m in frame["messages"]] == ["from alice", "from bob"]


def test_anonymous_retries_are_recognized_per_connection(handler: Any, management: Any, messages: Any) -> None:
    acked(send(handler, "anon-1", None, content="x", clientMessageId="k"))

    assert acked(send(handler, "anon-1", None, content="x", clientMessageId="k"))["duplicate"] is True
    assert acked(send(handler, "anon-2", None, content="x", clientMessageId="k"))["duplicate"] is False


def test_after_24_hours_the_same_id_is_a_new_message(handler: Any, management: Any, messages: Any, clock: list[float]) -> None:
    acked(send(handler, "a", "alice", content="monday", clientMessageId="daily"))
    clock[0] += 24 * 3600 - 5
    assert acked(send(handler, "a", "alice", content="monday", clientMessageId="daily"))["duplicate"] is True
    clock[0] += 10

    assert acked(send(handler, "a", "alice", content="tuesday", clientMessageId="daily"))["seq"] == 2
    assert stored(messages) == [(1, "monday"), (2, "tuesday")]


def test_a_sender_overtaken_again_and_again_waits_a_full_jitter_that_doubles_up_to_a_cap(
    handler: Any, management: Any, messages: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    interfering_transactions(history.history_table().meta.client, monkeypatch, times=7, reason="ConditionalCheckFailed", at=0)
    ranges: list[tuple[float, float]] = []
    monkeypatch.setattr(history.random, "uniform", lambda low, high: ranges.append((low, high)) or 0.0)

    assert acked(send(handler, "a", "alice", content="at last", clientMessageId="m"))["seq"] == 1

    # AWS's full jitter: a wait from 0 up to 5 ms, 10 ms, 20 ms... never more than 200 ms.
    assert ranges == [(0, 0.005), (0, 0.01), (0, 0.02), (0, 0.04), (0, 0.08), (0, 0.16), (0, 0.2)]
    assert stored(messages) == [(1, "at last")]


def test_exactly_24_hours_later_the_same_id_is_a_new_message(
    handler: Any, management: Any, messages: Any, frozen_clock: list[float]
) -> None:
    acked(send(handler, "a", "alice", content="monday", clientMessageId="daily"))
    frozen_clock[0] += history.SEND_RECORD_SECONDS  # the record's last second is over

    assert acked(send(handler, "a", "alice", content="tuesday", clientMessageId="daily"))["duplicate"] is False
    assert stored(messages) == [(1, "monday"), (2, "tuesday")]


def test_a_send_record_is_kept_24_hours_and_then_left_to_dynamodbs_ttl(
    handler: Any, management: Any, tables: dict[str, Any], frozen_clock: list[float]
) -> None:
    acked(send(handler, "a", "alice", content="hi", clientMessageId="m-1"))

    record = tables["ConversationsTable"].get_item(Key={"pk": "room", "sk": "send#alice#m-1"})["Item"]
    assert int(record["expires_at"]) == int(record["ttl"]) == int(frozen_clock[0]) + history.SEND_RECORD_SECONDS


def test_time_follows_seq_when_a_sender_is_overtaken(
    handler: Any, management: Any, messages: Any, frozen_clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Retention stops reading at the first expired message (chat/history.py: "Seq follows time"),
    # so a message must be stamped when it takes its seq, not when its send began.
    client = history.history_table().meta.client
    real = client.transact_write_items
    tries: list[int] = []

    def bob_gets_there_first(**kwargs: Any) -> Any:
        tries.append(1)
        if len(tries) == 1:  # alice's first try: meanwhile, 5 s later, bob takes seq 1
            frozen_clock[0] += 5
            acked(send(handler, "b", "bob", content="bob's", clientMessageId="b-1"))
        return real(**kwargs)

    monkeypatch.setattr(client, "transact_write_items", bob_gets_there_first)
    started = frozen_clock[0]

    assert acked(send(handler, "a", "alice", content="alice's", clientMessageId="a-1"))["seq"] == 2

    items = sorted(messages.scan(ConsistentRead=True)["Items"], key=lambda item: int(item["seq"]))
    assert [(json.loads(item["content_json"]), int(item["sent_at_ms"])) for item in items] == [
        ("bob's", int((started + 5) * 1000)), ("alice's", int((started + 5) * 1000))]


def test_a_retry_after_a_failed_delivery_completes_it_once(
    handler: Any, management: Any, messages: Any, connect: Any, aws_failure: Any
) -> None:
    """Stored, then the Scan for the room failed: the reply says so, and the retry delivers."""
    connect("alice-1", "bob-1", user="bob")
    table_client = connections.table().meta.client

    def scan_fails(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="x")

    table_client.meta.events.register_first("before-call.dynamodb.Scan", scan_fails)
    first = acked(send(handler, "alice-1", "alice", content="important", clientMessageId="r-1"))
    table_client.meta.events.unregister("before-call.dynamodb.Scan", scan_fails)

    assert first["delivery"] == "incomplete" and first["seq"] == 1
    assert management.received("bob-1") == []
    retry = acked(send(handler, "alice-1", "alice", content="important", clientMessageId="r-1"))
    assert retry == {**first, "duplicate": True, "delivery": "complete"}
    assert [m["content"] for frame in management.received("bob-1") for m in frame["messages"]] == ["important"]
    third = acked(send(handler, "alice-1", "alice", content="important", clientMessageId="r-1"))
    assert third == retry
    assert len(management.received("bob-1")) == 1 and stored(messages) == [(1, "important")]


def test_a_retry_redelivers_what_was_stored_not_what_it_carries(handler: Any, management: Any, connect: Any) -> None:
    connect("bob-1", user="bob")
    table_client = connections.table().meta.client

    def scan_fails(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="x")

    table_client.meta.events.register_first("before-call.dynamodb.Scan", scan_fails)
    acked(send(handler, "a", "alice", content="original", clientMessageId="r-2"))
    table_client.meta.events.unregister("before-call.dynamodb.Scan", scan_fails)
    acked(send(handler, "a", "alice", content="edited on retry", clientMessageId="r-2"))

    assert [m["content"] for frame in management.received("bob-1") for m in frame["messages"]] == ["original"]


@pytest.mark.parametrize(
    "value", ["", "x" * 65, "has space", "a/b", "한글", 7, ["a"], True], ids=["empty", "65", "space", "slash", "hangul", "number", "list", "bool"]
)
def test_a_bad_client_message_id_is_refused_and_nothing_stored(handler: Any, management: Any, messages: Any, value: Any) -> None:
    response = send(handler, "a", "alice", content="x", clientMessageId=value)

    assert response == {"statusCode": 400, "body": '"clientMessageId" must be 1 to 64 characters: ASCII letters, digits, "-", "_" (a UUID fits).'}
    assert messages.scan()["Items"] == []


def test_a_uuid_and_64_characters_are_fine(handler: Any, management: Any) -> None:
    assert acked(send(handler, "a", "alice", content="x", clientMessageId="123e4567-e89b-12d3-a456-426614174000"))["seq"] == 1
    assert acked(send(handler, "a", "alice", content="y", clientMessageId="Z_" * 32))["seq"] == 2


# --- properties ------------------------------------------------------------------------------

@pytest.fixture
def unlimited(monkeypatch: pytest.MonkeyPatch) -> None:
    """No rate limit: the property is about seq, and one example sends up to 25 frames at once."""
    monkeypatch.setattr(ratelimit, "MESSAGE_RATE_PER_SECOND", 0)


SENDERS = ["alice", "bob", None]
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("send"), st.sampled_from(SENDERS), st.sampled_from(["room", "ch"]), st.one_of(st.none(), st.sampled_from(["k1", "k2", "k3"]))),
        st.tuples(st.just("join"), st.sampled_from(["alice", "bob"]), st.just("ch"), st.none()),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_any_interleaving_of_sends_retries_and_joins_gives_seqs_1_to_n_each_message_once(
    handler: Any, management: Any, messages: Any, tables: dict[str, Any], operations: list[Any], unlimited: None
) -> None:
    for table in tables.values():  # Hypothesis reuses the fixtures: start each example empty
        with table.batch_writer() as batch:
            for item in table.scan()["Items"]:
                batch.delete_item(Key={key["AttributeName"]: item[key["AttributeName"]] for key in table.key_schema})
    for user in ("alice", "bob"):
        connections.connect(f"{user}-conn", 1_764_000_000, user)
    expected: dict[str, list[tuple[Any, Any]]] = {"room": [], "ch#ch": []}
    joined = {"alice": False, "bob": False}
    for kind, user, where, client_message_id in operations:
        connection = f"{user}-conn" if user else "anon"
        if kind == "join":
            handler.join(message_event(connection, action_body("join", channel="ch"), "join", user), None)
            joined[user] = True
            continue
        fields: dict[str, Any] = {"content": len(operations)}
        if client_message_id:
            fields["clientMessageId"] = client_message_id
        if where == "ch":
            fields["channel"] = "ch"
        response = send(handler, connection, user, **fields)
        conversation = "ch#ch" if where == "ch" else "room"
        if where == "ch" and (user is None or not joined[user]):
            assert response["statusCode"] == 403
            continue
        assert response["statusCode"] == 200, response
        key = (user or connection, client_message_id)
        if client_message_id is None or key not in expected[conversation]:
            expected[conversation].append(key)
    for conversation, sends in expected.items():
        seqs = [seq for seq, _ in stored(messages, conversation)]
        assert seqs == list(range(1, len(sends) + 1)), conversation


# --- a repeat while the first send is still delivering ---------------------------------------


def copies(management: Any, connection_id: str) -> list[Any]:
    return [m["content"] for frame in management.received(connection_id) if isinstance(frame, dict)
            for m in frame.get("messages", [])]


def test_a_repeat_while_the_first_send_is_delivering_is_pending_and_posts_nothing(
    handler: Any, management: Any, messages: Any, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A double click: the second frame arrives while the first is still posting. It used to post
    # again (every member got two copies through make offline, 50 of 60 repeats).
    from chat import dispatch

    connect("alice-1", "bob-1", "carol-1", user="bob")
    real, repeats = dispatch.post, []

    def broadcast_with_a_repeat_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not repeats:
            repeats.append(acked(send(handler, "alice-1", "alice", content="once", clientMessageId="dbl")))
        return real(*args, **kwargs)

    monkeypatch.setattr(dispatch, "post", broadcast_with_a_repeat_meanwhile)
    first = acked(send(handler, "alice-1", "alice", content="once", clientMessageId="dbl"))

    assert first["delivery"] == "complete" and first["duplicate"] is False
    assert repeats == [{**first, "duplicate": True, "delivery": "pending"}]
    assert {cid: copies(management, cid) for cid in ("alice-1", "bob-1", "carol-1")} == {
        "alice-1": ["once"], "bob-1": ["once"], "carol-1": ["once"]}
    assert acked(send(handler, "alice-1", "alice", content="once", clientMessageId="dbl")) == {
        **first, "duplicate": True, "delivery": "complete"}  # once it finished
    assert copies(management, "bob-1") == ["once"] and stored(messages) == [(1, "once")]


def test_a_send_that_died_after_storing_is_delivered_by_a_repeat_once_its_lease_runs_out(
    handler: Any, management: Any, connect: Any, clock: list[float]
) -> None:
    connect("bob-1", user="bob")
    # The first send stored the message, then its invocation died before delivering it.
    history.append(history.ROOM, history.new_message("orphan", "alice", client_message_id="d-1"), "alice")

    early = acked(send(handler, "alice-1", "alice", content="orphan", clientMessageId="d-1"))
    clock[0] += history.DELIVERY_LEASE_MS / 1000 - 1
    still = acked(send(handler, "alice-1", "alice", content="orphan", clientMessageId="d-1"))
    assert early["delivery"] == still["delivery"] == "pending" and copies(management, "bob-1") == []

    clock[0] += 2  # the lease ran out unfinished
    late = acked(send(handler, "alice-1", "alice", content="orphan", clientMessageId="d-1"))

    assert (late["duplicate"], late["delivery"]) == (True, "complete") and copies(management, "bob-1") == ["orphan"]


def test_of_two_repeats_after_the_lease_ran_out_only_one_delivers(handler: Any, management: Any, clock: list[float]) -> None:
    appended = history.append(history.ROOM, history.new_message("x", "alice", client_message_id="two"), "alice")
    clock[0] += history.DELIVERY_LEASE_MS / 1000 + 1
    seen = history.append(history.ROOM, history.new_message("x", "alice", client_message_id="two"), "alice")

    assert appended.duplicate is False and seen.duplicate and seen.lease_until_ms > 0
    assert history.take_delivery(history.ROOM, "alice", "two", seen.lease_until_ms) is True
    assert history.take_delivery(history.ROOM, "alice", "two", seen.lease_until_ms) is False  # the other one lost


def test_a_send_that_could_not_deliver_gives_its_lease_back_for_an_immediate_retry(
    handler: Any, management: Any, connect: Any, clock: list[float]
) -> None:
    connect("bob-1", user="bob")
    table_client = connections.table().meta.client

    def scan_fails(**_: Any) -> None:
        raise EndpointConnectionError(endpoint_url="x")

    table_client.meta.events.register_first("before-call.dynamodb.Scan", scan_fails)
    first = acked(send(handler, "alice-1", "alice", content="retry me", clientMessageId="g-1"))
    table_client.meta.events.unregister("before-call.dynamodb.Scan", scan_fails)
    retry = acked(send(handler, "alice-1", "alice", content="retry me", clientMessageId="g-1"))  # well within 30 s

    assert first["delivery"] == "incomplete" and retry["delivery"] == "complete"
    assert copies(management, "bob-1") == ["retry me"]
