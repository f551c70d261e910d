"""Events out (docs/events.md), in process on moto: the stage's bus, a rule to a queue, read back as
an app's target gets them. message.created comes from the history table's stream, so a message
whose storing function died right after the store still has its event; the others are sent from
where they are decided, through the delivery queue when EventBridge does not take them."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import boto3
import pytest

from chat import connections, events, frames, history, jobs, presence, publisher, sessions, stream, sweeper
from chat.jobs import PoisonJob
from tests.support.actions import dm_response, send
from tests.support.event_bus import BUS, Bus
from tests.support.events import MANAGEMENT_ENDPOINT, action_body, connect_event, disconnect_event


@pytest.fixture
def bus(handler: Any, tables: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Bus:
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", MANAGEMENT_ENDPOINT)
    return Bus(handler, tables["HistoryTable"].name)


def opened(handler: Any, connection_id: str, user: str, seconds_ago: int = 0) -> None:
    event = connect_event(connection_id, user)
    event["requestContext"]["connectedAt"] = (int(time.time()) - seconds_ago) * 1000
    assert handler.connection_manager(event, None)["statusCode"] == 200


def frame(handler: Any, route: str, connection_id: str, user: str, **fields: Any) -> None:
    response = send(handler, route, connection_id, user, **fields)
    assert response["statusCode"] == 200, response


# --- message.created ------------------------------------------------------------------------------


def test_every_stored_message_is_one_message_created_with_its_conversation_seq_and_content(
    handler: Any, bus: Bus
) -> None:
    opened(handler, "alice-conn", "alice")
    opened(handler, "bob-1", "bob")
    frame(handler, "sendMessage", "alice-conn", "alice", content="hello room")
    frame(handler, "join", "alice-conn", "alice", channel="lobby")
    frame(handler, "sendMessage", "alice-conn", "alice", channel="lobby", content={"n": 1}, clientMessageId="m-1")
    assert dm_response(handler, "alice", "bob", "안녕 bob")["statusCode"] == 200

    assert bus.details(events.MESSAGE_CREATED) == []  # nothing until the stream is read
    bus.feed_stream()
    created = bus.details(events.MESSAGE_CREATED)

    by_conversation = {json.dumps(d["conversation"], sort_keys=True): d for d in created}
    assert set(by_conversation) == {'{"room": true}', '{"channel": "lobby"}', '{"with": ["alice", "bob"]}'}
    room, channel, dm = (by_conversation[k] for k in ('{"room": true}', '{"channel": "lobby"}', '{"with": ["alice", "bob"]}'))
    assert (room["seq"], room["sender"], room["content"], room["origin"]) == (1, "alice", "hello room", "websocket")
    assert (channel["content"], channel["clientMessageId"]) == ({"n": 1}, "m-1")
    assert "clientMessageId" not in room
    assert dm["content"] == "안녕 bob"
    for detail in created:
        stored = history.stored_to_message(
            history.history_table().get_item(Key={"conversation": _key(detail["conversation"]), "seq": detail["seq"]})["Item"]
        )
        assert detail["id"] == stored["id"]
        assert detail["sentAt"] == detail["time"] == frames.iso(stored["sent_at_ms"])
        assert len(detail["eventId"]) == 32


def _key(conversation: dict[str, Any]) -> str:
    if "channel" in conversation:
        return history.channel_conversation(conversation["channel"])
    if "with" in conversation:
        return history.dm_conversation(*conversation["with"])
    return "room"


def test_a_published_message_says_its_origin(handler: Any, bus: Bus) -> None:
    body = json.dumps({"messages": [{"channel": "deploys", "sender": "ci-bot", "content": "build 812 is green"}]})
    event = {"httpMethod": "POST", "path": "/publish", "resource": "/publish", "headers": {}, "body": body,
             "isBase64Encoded": False,
             "requestContext": {"identity": {"userArn": "arn:aws:sts::123456789012:assumed-role/ci/x"}}}
    assert handler.publish(event, None)["statusCode"] == 200
    bus.feed_stream()

    (created,) = bus.details(events.MESSAGE_CREATED)
    assert created["origin"] == "publish" and created["sender"] == "ci-bot" and created["conversation"] == {"channel": "deploys"}


def test_a_stream_record_read_twice_is_the_same_event_id(handler: Any, bus: Bus) -> None:
    opened(handler, "alice-conn", "alice")
    frame(handler, "sendMessage", "alice-conn", "alice", content="once")
    records = bus.streams.get_records(ShardIterator=bus.iterators[0])["Records"]
    from scripts.local_events import lambda_records

    event = {"Records": lambda_records(records, bus.stream_arn)}
    assert handler.publish_events(event, None) == handler.publish_events(event, None) == {"batchItemFailures": []}

    first, second = bus.details(events.MESSAGE_CREATED)
    assert first["eventId"] == second["eventId"] and first == second  # a consumer drops the repeat by it


def test_an_edit_and_a_delete_are_message_edited_and_message_deleted_and_the_change_in_place_is_none(
    handler: Any, bus: Bus
) -> None:
    opened(handler, "alice-conn", "alice")
    frame(handler, "sendMessage", "alice-conn", "alice", content="helo")
    frame(handler, "editMessage", "alice-conn", "alice", seq=1, content="hello")
    frame(handler, "deleteMessage", "alice-conn", "alice", seq=1, reason="typo")
    bus.feed_stream()

    assert [d["seq"] for d in bus.details(events.MESSAGE_CREATED)] == [1]  # the message changed in place: no event
    (edited,) = bus.details(events.MESSAGE_EDITED)
    (deleted,) = bus.details(events.MESSAGE_DELETED)
    assert (edited["seq"], edited["target"], edited["content"], edited["sender"]) == (2, 1, "hello", "alice")
    assert (deleted["seq"], deleted["target"], deleted["reason"], deleted["sender"]) == (3, 1, "typo", "alice")
    assert "content" not in deleted


def test_a_ban_and_its_lifting_are_user_banned_and_user_unbanned(handler: Any, bus: Bus) -> None:
    opened(handler, "mod-conn", "mod")
    for route, fields in (("ban", {"channel": "lobby", "seconds": 60, "reason": "spam"}), ("unban", {"channel": "lobby"})):
        body = action_body(route, user="mallory", **fields)
        assert send(handler, route, "mod-conn", "mod", moderates=["lobby"], body=body)["statusCode"] == 200

    (banned,) = bus.details(events.USER_BANNED)
    (unbanned,) = bus.details(events.USER_UNBANNED)
    assert {k: banned[k] for k in ("user", "channel", "reason", "by")} == {"user": "mallory", "channel": "lobby", "reason": "spam", "by": "mod"}
    assert banned["until"] is not None and unbanned == {**unbanned, "user": "mallory", "channel": "lobby", "by": "mod"}


def test_removals_and_records_that_are_not_messages_are_no_events(handler: Any, bus: Bus) -> None:
    ttl_removal = {"eventName": "REMOVE", "dynamodb": {"SequenceNumber": "1", "OldImage": {}}}
    not_a_message = {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "2", "NewImage": {"conversation": {"S": "room"}}}}
    assert handler.publish_events({"Records": [ttl_removal, not_a_message, "junk"]}, None) == {"batchItemFailures": []}
    assert bus.events() == []


def test_content_that_would_pass_eventbridges_256_kb_is_left_out(bus: Bus) -> None:
    small = events.entry(events.MESSAGE_CREATED, "e1", {"seq": 1, "content": "x" * 1000})
    assert json.loads(small["Detail"])["content"] == "x" * 1000

    big = events.entry(events.MESSAGE_CREATED, "e2", {"seq": 2, "content": "가" * 90_000})  # 270 KB in UTF-8
    detail = json.loads(big["Detail"])
    assert "content" not in detail and detail["contentOmitted"] is True and detail["seq"] == 2
    assert len(big["Detail"].encode()) < events.MAX_ENTRY_BYTES

    just_under = events.entry(events.MESSAGE_CREATED, "e3", {"seq": 3, "content": "x" * (250 * 1024)})
    assert "content" in json.loads(just_under["Detail"])  # 250 KB: kept, under 256 KB less the margin
    just_over = events.entry(events.MESSAGE_CREATED, "e4", {"seq": 4, "content": "x" * (253 * 1024)})
    assert "content" not in json.loads(just_over["Detail"])


def test_with_events_off_nothing_is_sent_and_the_stream_is_acknowledged(
    handler: Any, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVENT_BUS_NAME", "")
    opened(handler, "alice-conn", "alice")
    frame(handler, "sendMessage", "alice-conn", "alice", content="quiet")
    bus.feed_stream()
    assert bus.events() == []


# --- connections ----------------------------------------------------------------------------------


def test_a_connection_opens_and_closes_once_with_the_reason_disconnect(handler: Any, bus: Bus) -> None:
    opened(handler, "c1", "alice")
    assert handler.connection_manager(disconnect_event("c1", "alice"), None)["statusCode"] == 200
    assert handler.connection_manager(disconnect_event("c1", "alice"), None)["statusCode"] == 200  # repeated

    (opening,) = bus.details(events.CONNECTION_OPENED)
    assert opening["user"] == "alice" and opening["connectionId"] == "c1" and opening["connectedAt"].endswith("Z")
    (closing,) = bus.details(events.CONNECTION_CLOSED)
    assert {k: closing[k] for k in ("user", "connectionId", "reason")} == {"user": "alice", "connectionId": "c1", "reason": "disconnect"}


def test_a_refused_connect_opens_nothing(handler: Any, bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    from chat import ratelimit

    monkeypatch.setattr(ratelimit, "MAX_CONNECTIONS_PER_USER", 1)
    opened(handler, "c1", "alice")
    assert handler.connection_manager(connect_event("c2", "alice"), None)["statusCode"] == 429
    assert [d["connectionId"] for d in bus.details(events.CONNECTION_OPENED)] == ["c1"]


def test_each_way_a_connection_ends_has_its_reason(
    handler: Any, bus: Bus, management: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened(handler, "expiring", "erin")
    sessions.end_expired("expiring", MANAGEMENT_ENDPOINT)

    opened(handler, "vanished", "gail", seconds_ago=connections.HANDSHAKE_GRACE_SECONDS + 5)
    management.answer("vanished", 410)
    sessions.forget(["vanished"], MANAGEMENT_ENDPOINT)

    monkeypatch.setattr(connections, "GHOST_CHECK_SECONDS", 0)
    opened(handler, "ancient", "olga")
    now = time.time() + connections.CONNECTION_LIFETIME_SECONDS + 120
    assert sweeper.sweep(now)["too old"] == 1

    reasons = {d["connectionId"]: d["reason"] for d in bus.details(events.CONNECTION_CLOSED)}
    assert reasons == {"expiring": "expired", "vanished": "gone", "ancient": "swept"}
    assert set(events.CLOSE_REASONS) >= set(reasons.values())


def test_a_connection_found_gone_and_disconnected_at_once_is_closed_once(
    handler: Any, bus: Bus, management: Any
) -> None:
    opened(handler, "raced", "rita", seconds_ago=connections.HANDSHAKE_GRACE_SECONDS + 5)
    row = connections.row("raced")
    assert handler.connection_manager(disconnect_event("raced", "rita"), None)["statusCode"] == 200
    management.answer("raced", 410)
    # The post's cleanup read the row just before $disconnect deleted it.
    from unittest import mock

    with mock.patch.object(connections, "gone_rows", lambda ids: [row]):
        sessions.forget(["raced"], MANAGEMENT_ENDPOINT)

    assert [d["reason"] for d in bus.details(events.CONNECTION_CLOSED)] == ["disconnect"]


def test_when_eventbridge_and_the_queue_both_fail_the_route_still_answers(
    handler: Any, bus: Bus, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    from chat import fanout

    flaky = FlakyEvents(None, fail_calls=10)
    monkeypatch.setattr(events, "events_client", lambda: flaky)

    def no_queue(entries: Any) -> None:
        raise RuntimeError("the queue is gone too")

    monkeypatch.setattr(fanout, "queue_events", no_queue)
    opened(handler, "c1", "alice")
    frame(handler, "join", "c1", "alice", channel="lobby")

    assert "Lost events" in capsys.readouterr().out  # logged (and counted: EventsLost)


# --- channels and presence ------------------------------------------------------------------------


def test_joins_leaves_and_presence_transitions_once_per_user_above_the_event_cap(
    handler: Any, bus: Bus, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import channels

    monkeypatch.setattr(channels, "PRESENCE_EVENTS_MAX_USERS", 0)  # no presenceChange to members
    opened(handler, "carol-1", "carol")
    opened(handler, "carol-2", "carol")
    frame(handler, "join", "carol-1", "carol", channel="lobby")
    frame(handler, "join", "carol-2", "carol", channel="lobby")
    frame(handler, "join", "carol-2", "carol", channel="lobby")  # again: nothing new
    assert [d["user"] for d in bus.details(events.PRESENCE_ENTERED)] == ["carol"]
    assert [d["connectionId"] for d in bus.details(events.CHANNEL_JOINED)] == ["carol-1", "carol-2"]

    frame(handler, "leave", "carol-1", "carol", channel="lobby")
    frame(handler, "leave", "carol-1", "carol", channel="lobby")  # not a member any more: nothing
    assert handler.connection_manager(disconnect_event("carol-2", "carol"), None)["statusCode"] == 200
    assert [d["connectionId"] for d in bus.details(events.CHANNEL_LEFT)] == ["carol-1", "carol-2"]
    assert bus.details(events.PRESENCE_LEFT) == []  # the grace

    workers.advance(presence.LEAVE_GRACE_SECONDS + 1)
    workers.drain()
    workers.drain()
    (left,) = bus.details(events.PRESENCE_LEFT)
    assert left["channel"] == "lobby" and left["user"] == "carol"
    assert bus.types() == {"connection.opened": 2, "connection.closed": 1, "channel.joined": 2, "channel.left": 2,
                           "presence.entered": 1, "presence.left": 1}


# --- when EventBridge fails -----------------------------------------------------------------------


class FlakyEvents:
    """EventBridge that fails some entries of each PutEvents (as its FailedEntryCount reports an
    internal failure or throttling), or whole calls; the rest reach moto's bus (`real`), or with
    None only `taken` (moto's bus matches rules at about 0.1 s a call: too slow for 1,000)."""

    def __init__(self, real: Any | None, entry_failure: float = 0.0, fail_calls: int = 0, seed: int = 7) -> None:
        self.real = real
        self.entry_failure = entry_failure
        self.fail_calls = fail_calls
        self.random = random.Random(seed)
        self.calls = 0
        self.failed_entries = 0
        self.taken: list[dict[str, Any]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        from botocore.exceptions import EndpointConnectionError

        self.calls += 1
        assert 1 <= len(Entries) <= events.ENTRIES_PER_CALL
        if self.fail_calls:
            self.fail_calls -= 1
            raise EndpointConnectionError(endpoint_url="https://events.test")
        failing = [self.random.random() < self.entry_failure for _ in Entries]
        taken = [entry for entry, fails in zip(Entries, failing, strict=True) if not fails]
        self.taken += taken
        if taken and self.real is not None:
            assert self.real.put_events(Entries=taken)["FailedEntryCount"] == 0
        self.failed_entries += sum(failing)
        results = [{"ErrorCode": "InternalFailure", "ErrorMessage": "try again"} if fails else {"EventId": "x"}
                   for fails in failing]
        return {"FailedEntryCount": sum(failing), "Entries": results}


def test_events_eventbridge_does_not_take_go_through_the_delivery_queue(
    handler: Any, bus: Bus, workers: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    flaky = FlakyEvents(events.events_client(), fail_calls=1)
    monkeypatch.setattr(events, "events_client", lambda: flaky)
    opened(handler, "c1", "alice")
    assert bus.details(events.CONNECTION_OPENED) == []
    (body,) = [m["Body"] for m in boto3.client("sqs").receive_message(
        QueueUrl=workers.queue, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages", [])]
    assert isinstance(jobs.parse(body), jobs.EventsJob)

    workers.drain()
    (detail,) = bus.details(events.CONNECTION_OPENED)
    assert detail["connectionId"] == "c1"


def test_only_the_entries_eventbridge_failed_are_sent_again(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    flaky = FlakyEvents(events.events_client(), entry_failure=0.5, seed=3)
    monkeypatch.setattr(events, "events_client", lambda: flaky)
    monkeypatch.setattr(events.time, "sleep", lambda seconds: None)
    entries = [events.channel_joined("lobby", f"u{n}", f"c{n}", 1_000 + n) for n in range(25)]
    try:
        events.put(entries)
    except events.EventsFailed as failed:
        assert 0 < len(failed.entries) < 25  # the rest were taken; only these are left
        events.put(failed.entries)
    ids = [d["eventId"] for d in bus.details(events.CHANNEL_JOINED)]
    assert sorted(ids) == sorted(json.loads(e["Detail"])["eventId"] for e in entries)  # each once


@pytest.mark.parametrize("body", [
    {"v": 1, "kind": "events", "entries": []},
    {"v": 1, "kind": "events", "entries": [{"Source": "s", "DetailType": "d", "Detail": "{}"}]},
    {"v": 1, "kind": "events", "entries": [{"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": 5}]},
    {"v": 1, "kind": "events", "entries": [{"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "b"}] * 11},
    {"v": 2, "kind": "events", "entries": [{"Source": "s", "DetailType": "d", "Detail": "{}", "EventBusName": "b"}]},
    {"v": 1, "kind": "events", "entries": "all of them"},
])
def test_a_malformed_events_job_is_poison(body: dict[str, Any]) -> None:
    with pytest.raises(PoisonJob):
        jobs.parse(json.dumps(body))


def test_a_thousand_messages_all_have_their_event_though_put_events_fails_a_third_and_stores_die(
    handler: Any, bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """issue 27's fault injection: PutEvents fails a third of the entries; the function storing
    every seventh message dies right after the store. 1,000 messages, 1,000 distinct eventIds."""
    flaky = FlakyEvents(None, entry_failure=1 / 3, seed=27)
    monkeypatch.setattr(events, "events_client", lambda: flaky)
    monkeypatch.setattr(events.time, "sleep", lambda seconds: None)
    real_append = history.append
    stored = 0

    class Killed(BaseException):
        """The Lambda runtime ending the invocation: nothing after the store runs."""

    def append_then_die(*args: Any, **kwargs: Any) -> Any:
        nonlocal stored
        appended = real_append(*args, **kwargs)
        stored += 1
        if stored % 7 == 0:
            raise Killed
        return appended

    monkeypatch.setattr(history, "append", append_then_die)
    for n in range(1000):
        message = history.new_message(f"m{n}", "loader", channel="load")
        try:
            publisher.publish(publisher.Target(channel="load"), message, "loader", MANAGEMENT_ENDPOINT)
        except Killed:
            pass

    bus.feed_stream()

    created = [json.loads(entry["Detail"]) for entry in flaky.taken]
    assert {entry["DetailType"] for entry in flaky.taken} == {events.MESSAGE_CREATED}
    assert stored == 1000 and flaky.failed_entries > 250  # the failures really happened
    assert len({d["eventId"] for d in created}) == 1000
    assert sorted({d["seq"] for d in created}) == list(range(1, 1001))
    assert bus.invocations > 10  # batches were resent from their first failed record


def test_the_events_function_reports_the_first_record_whose_event_failed(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail_third(Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        results = [{"ErrorCode": "ThrottlingException"} if json.loads(e["Detail"])["seq"] == 3 else {} for e in Entries]
        return {"FailedEntryCount": sum(1 for r in results if r), "Entries": results}

    class Failing:
        put_events = staticmethod(fail_third)

    monkeypatch.setattr(events, "events_client", lambda: Failing())
    monkeypatch.setattr(events.time, "sleep", lambda seconds: None)
    records = [_record(seq) for seq in range(1, 6)]
    assert stream.publish_created({"Records": records}) == {"batchItemFailures": [{"itemIdentifier": "sn-3"}]}


def _record(seq: int) -> dict[str, Any]:
    image = {"conversation": {"S": "room"}, "seq": {"N": str(seq)}, "id": {"S": f"id{seq}"},
             "sent_at_ms": {"N": "1764000000000"}, "content_json": {"S": '"hi"'}}
    return {"eventName": "INSERT", "dynamodb": {"SequenceNumber": f"sn-{seq}", "NewImage": image}}
