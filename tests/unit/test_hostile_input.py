"""Input a hostile or careless client sends, and AWS failures: nothing may poison the history,
and every request gets an answer."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from chat import connections, delivery, frames, ratelimit, tokens, verifier
from chat import history as history_store
from tests.support.actions import all_history, dm, dm_response, history, history_response, routes, say, say_response, send
from tests.support.events import (
    authorizer_event,
    connect_event,
    disconnect_event,
    message_event,
    send_message_body,
    token,
)


def nested(depth: int, leaf: Any = "x") -> Any:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def raw_body(content_json: str) -> str:
    """A sendMessage frame whose content is this JSON text, exactly as written."""
    return '{"action": "sendMessage", "content": ' + content_json + "}"


# --- nesting ------------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [65, 200, 990, 5000])
def test_deeply_nested_content_is_refused_with_a_reason(
    handler: Any, management: Any, connect: Any, messages: Any, depth: int
) -> None:
    connect("alice", "bob")

    response = say_response(handler, None, nested(depth)) if depth < 990 else handler.send_message(
        message_event("alice", raw_body("[" * depth + "1" + "]" * depth)), None
    )

    assert response["statusCode"] == 400
    assert "nested too deeply" in response["body"] and "64" in response["body"]
    assert management.attempts == {}
    assert messages.scan()["Items"] == []


def test_content_nested_64_deep_is_accepted_and_read_back(handler: Any, management: Any, clock: Any) -> None:
    content = nested(63, {"deepest": True})  # 63 lists and one object: 64 levels

    say(handler, "alice", content)

    assert history(handler, "bob", limit=1)["messages"][0]["content"] == content


def test_history_still_answers_everyone_after_deep_nesting_attempts(handler: Any, management: Any, clock: Any) -> None:
    # Which depth gets through the JSON parser but breaks encoding later depends on how deep
    # the stack already is (the Lambda runtime's is shallower than pytest's): try them all.
    say(handler, "alice", "before")
    for depth in range(700, 1001, 10):
        response = handler.send_message(message_event("mallory", raw_body("[" * depth + "]" * depth), user="mallory"), None)
        assert response["statusCode"] == 400
    say(handler, "alice", "after")

    assert all_history(handler, "bob", limit=20) == ["before", "after"]


# --- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_json",
    ["1e400", "-1e400", "[1, 2, 1e999]", '{"a": {"b": -1E+500}}', "NaN", "Infinity", "-Infinity", "[NaN]"],
)
def test_numbers_json_cannot_carry_are_refused(
    handler: Any, management: Any, connect: Any, messages: Any, content_json: str
) -> None:
    connect("alice", "bob")

    response = handler.send_message(message_event("alice", raw_body(content_json)), None)

    assert response["statusCode"] == 400
    assert "finite" in response["body"]
    assert management.attempts == {}
    assert messages.scan()["Items"] == []


def test_non_finite_number_in_a_direct_message_is_refused(handler: Any, management: Any, connect: Any) -> None:
    connect("bob-1", user="bob")
    body = '{"action": "sendDirectMessage", "to": "bob", "content": {"n": 1e400}}'

    response = handler.send_direct_message(message_event("alice-1", body, "sendDirectMessage", "alice"), None)

    assert response["statusCode"] == 400 and "finite" in response["body"]
    assert management.attempts == {}


def test_integer_too_long_for_python_is_refused_with_a_reason(handler: Any, management: Any, connect: Any) -> None:
    connect("alice")

    response = handler.send_message(message_event("alice", raw_body("9" * 5000)), None)

    assert response["statusCode"] == 400
    assert "digits" in response["body"]
    assert management.attempts == {}


@pytest.mark.parametrize("content", [1e308, -1e-320, 2**200, -(10**4000), 10**4299, 0.1, -0.0])
def test_large_and_tiny_finite_numbers_come_back_exactly(
    handler: Any, management: Any, clock: Any, content: Any
) -> None:
    say(handler, "alice", content)

    (message,) = history(handler, "bob", limit=1)["messages"]
    assert message["content"] == content and json.dumps(message["content"]) == json.dumps(content)


# --- the size budget ----------------------------------------------------------------------


def largest_accepted_content(handler: Any, user: str | None) -> str:
    """The longest ASCII content the handler accepts from this user, found by bisection."""
    low, high = 0, 128 * 1024
    while low < high:
        middle = (low + high + 1) // 2
        if say_response(handler, user, "x" * middle)["statusCode"] == 200:
            low = middle
        else:
            high = middle - 1
    return "x" * low


@pytest.mark.parametrize("user", [None, "alice", "가" * 128], ids=["anonymous", "alice", "longest-korean-id"])
def test_message_exactly_at_the_budget_is_read_back_alone_and_paging_goes_on(
    handler: Any, management: Any, clock: Any, user: str | None
) -> None:
    say(handler, "alice", "older")
    content = largest_accepted_content(handler, user)
    say(handler, user, content)  # the newest message is the largest accepted one

    page = history(handler, "bob", limit=1)
    assert [m["content"] for m in page["messages"]] == [content]
    assert page["before"]
    # Paging goes on past it, one page at a time, back to the first message.
    everything = all_history(handler, "bob", limit=1)
    assert everything[0] == "older" and everything[-1] == content
    body = history_response(handler, "bob", limit=100)["body"]
    assert len(body.encode("utf-8")) <= 128 * 1024


# --- stored items this version did not write ----------------------------------------------


def put_stored(messages: Any, seq: int, sent_at_ms: Any, **fields: Any) -> None:
    """A history item as written by hand or by another version: any field may be missing or odd."""
    item = {"conversation": "room", "seq": seq, "id": f"{seq:032x}", "sent_at_ms": sent_at_ms, "ttl": 2_000_000_000}
    item.update(fields)
    messages.put_item(Item={key: value for key, value in item.items() if value is not None})


POISONED = {
    "nested-990": {"content_json": "[" * 990 + "]" * 990},
    "infinity": {"content_json": "Infinity"},
    "nan-inside": {"content_json": '{"n": NaN}'},
    "not-json": {"content_json": "{oops"},
    "no-content": {"content_json": None},
    "no-id": {"content_json": '"no id"', "id": None},
    "too-large": {"content_json": json.dumps("y" * (130 * 1024))},
    "bad-time": {"content_json": '"bad time"', "sent_at_ms": "yesterday"},
}


@pytest.mark.parametrize("fields", POISONED.values(), ids=POISONED.keys())
def test_a_stored_item_that_cannot_be_sent_back_is_skipped_and_logged(
    handler: Any, messages: Any, clock: Any, caplog: Any, fields: dict[str, Any]
) -> None:
    now_ms = int(clock[0] * 1000)
    put_stored(messages, 1, now_ms - 9000, content_json='"oldest"')
    put_stored(messages, 2, **{"sent_at_ms": now_ms - 8000, **fields})
    put_stored(messages, 3, now_ms - 1000, content_json='"newest"')

    with caplog.at_level(logging.WARNING):
        assert [m["content"] for m in history(handler, "bob", limit=100)["messages"]] == ["oldest", "newest"]
    assert caplog.text.count("Skipped stored message") == 1 and ("room#2" in caplog.text or " 2: " in caplog.text)
    # Page by page, both ways: a page of nothing but the bad item still leads on.
    for limit in (1, 2):
        assert all_history(handler, "bob", limit=limit) == ["oldest", "newest"]
        assert [m["content"] for m in catch_up(handler, "bob", limit=limit)] == ["oldest", "newest"]


def catch_up(handler: Any, user: str, limit: int, after: int = 0, **fields: Any) -> list[dict[str, Any]]:
    """Every message after `after`, following the reply's "after" to the end."""
    messages: list[dict[str, Any]] = []
    for _ in range(1000):
        page = history(handler, user, limit=limit, after=after, **fields)
        messages += page["messages"]
        if page["after"] is None:
            return messages
        after = page["after"]
    raise AssertionError("catching up did not end")


# --- retention ----------------------------------------------------------------------------


def test_history_never_returns_a_message_past_its_retention(handler: Any, management: Any, clock: Any) -> None:
    say(handler, "alice", "a month ago")
    clock[0] += 29 * 24 * 3600
    say(handler, "alice", "yesterday")
    clock[0] += 1 * 24 * 3600 + 60  # "a month ago" is now 30 days and a minute old

    assert all_history(handler, "bob", limit=20) == ["yesterday"]
    assert all_history(handler, "bob", limit=1) == ["yesterday"]
    assert [m["content"] for m in catch_up(handler, "bob", limit=1)] == ["yesterday"]


def test_a_message_older_than_the_retention_is_not_served_whatever_its_own_ttl_says(
    handler: Any, messages: Any, clock: Any
) -> None:
    """The retention in force counts, not only the item's ttl (written under an older, longer
    retention, or by hand)."""
    now_ms = int(clock[0] * 1000)
    put_stored(messages, 1, now_ms - 31 * 24 * 3600 * 1000, content_json='"too old"', ttl=int(clock[0]) + 3600)
    put_stored(messages, 2, now_ms - 5000, content_json='"kept"')

    assert all_history(handler, "bob", limit=20) == ["kept"]
    assert [m["content"] for m in catch_up(handler, "bob", limit=1)] == ["kept"]


def test_history_skips_an_item_whose_own_ttl_has_passed(handler: Any, messages: Any, clock: Any) -> None:
    now_ms = int(clock[0] * 1000)
    put_stored(messages, 1, now_ms - 5000, content_json='"expired"', ttl=int(clock[0]) - 1)
    put_stored(messages, 2, now_ms - 4000, content_json='"kept"', ttl=int(clock[0]) + 3600)

    assert all_history(handler, "bob", limit=20) == ["kept"]
    assert [m["content"] for m in catch_up(handler, "bob", limit=1)] == ["kept"]


def test_a_cursor_older_than_the_retention_gives_an_empty_page(handler: Any, management: Any, clock: Any) -> None:
    say(handler, "alice", "old")
    say(handler, "alice", "new")
    cursor = history(handler, "bob", limit=1)["before"]
    clock[0] += 31 * 24 * 3600

    page = history(handler, "bob", limit=5, before=cursor)

    assert page["messages"] == [] and page["before"] is None


def test_catching_up_far_behind_passes_expired_messages_without_empty_pages(
    handler: Any, management: Any, clock: Any
) -> None:
    for n in range(12):
        say(handler, "alice", f"old {n}")
    clock[0] += 31 * 24 * 3600
    say(handler, "alice", "new")

    page = history(handler, "bob", limit=5, after=0)

    assert [m["content"] for m in page["messages"]] == ["new"] and page["messages"][0]["seq"] == 13
    assert page["after"] is None


# --- user ids -----------------------------------------------------------------------------

LOOKALIKE_IDS = {
    "space": " ",
    "trailing-space": "bob ",
    "inner-space": "bo b",
    "no-break-space": "bo\u00a0b",
    "ideographic-space": "\u3000",
    "hangul-filler": "\u3164",
    "bob-hangul-filler": "bob\u3164",
    "choseong-filler": "\u115f",
    "jungseong-filler": "\u1160",
    "halfwidth-filler": "\uffa0",
    "zero-width-space": "bob\u200b",
    "zero-width-joiner": "b\u200dob",
    "byte-order-mark": "\ufeffbob",
    "line-separator": "bob\u2028",
    "tab": "bob\t",
    "newline": "bob\n",
    "braille-blank": "\u2800",
    "combining-only": "\u0301",
    "private-use": "\ue000",
    # Ids that read as another user's: RFC 8265 (not in canonical form) and UTS #39 (mixed scripts).
    "cyrillic-a-alice": "\u0430lice",
    "greek-alpha-alice": "\u0391lice",
    "fullwidth-alice": "\uff41\uff4c\uff49\uff43\uff45",
    "halfwidth-katakana": "\uff95\uff70\uff7b\uff9e\uff70",
    "cyrillic-o-in-bob": "b\u043eb",
    "digit-then-cyrillic-a-alice": "1\u0430lice",  # a character of any script first hides nothing
    "decomposed-hangul": "\u1100\u1161\u1102\u1161",
    "decomposed-e-acute": "caf\u0065\u0301",
    "ligature-fi": "\ufb01sh",
    "roman-numeral": "\u216b",
    "emoji": "\U0001f600",
}


@pytest.mark.parametrize("user_id", LOOKALIKE_IDS.values(), ids=LOOKALIKE_IDS.keys())
def test_invisible_blank_or_lookalike_user_ids_are_refused_everywhere(
    handler: Any, management: Any, jwt_secret: str, user_id: str
) -> None:
    assert dm_response(handler, "alice", user_id, "hi")["statusCode"] == 400
    response = history_response(handler, "alice", **{"with": user_id})
    assert response["statusCode"] == 400 and '"with" must be a user id' in response["body"]
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, user_id)), None)
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"


VALID_IDS = {
    "alice": "alice",
    "one-letter": "x",
    "longest": "a" * 128,
    "capital-alice": "Alice",
    "korean": "\uae40\ucca0\uc218",  # 김철수
    "katakana": "\u30e6\u30fc\u30b6\u30fc",  # ユーザー
    "kanji-and-kana": "\u5c71\u7530\u305f\u308d\u3046",  # 山田たろう: one writing system (UTS #39 Jpan)
    "greek": "\u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",  # Ελληνικά
    "cyrillic": "\u041c\u043e\u0441\u043a\u0432\u0430",  # Москва
    "ascii-punctuation": "user_1.test-2",
}


@pytest.mark.parametrize("user_id", VALID_IDS.values(), ids=VALID_IDS.keys())
def test_ids_in_their_canonical_form_and_one_script_are_users(
    handler: Any, management: Any, connect: Any, jwt_secret: str, user_id: str
) -> None:
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, user_id)), None)
    assert policy["context"]["userId"] == user_id and set(policy["context"]) == {"userId", "exp"}
    connect(f"{user_id}-1", user=user_id)

    assert dm_response(handler, "bob", user_id, "hi") == {"statusCode": 200, "body": f"Direct message delivered to {user_id}."}


def test_alice_and_her_lookalikes_are_never_one_user_nor_two(
    handler: Any, management: Any, connect: Any, jwt_secret: str
) -> None:
    """The issue's report: `аlice` (Cyrillic а), `ａｌｉｃｅ` (fullwidth) and `alice` each
    connected as their own user. Now only `alice` is one."""
    connect("alice-1", user="alice")
    for lookalike in ("\u0430lice", "\uff41\uff4c\uff49\uff43\uff45"):
        policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, lookalike)), None)
        assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"  # not a user...
        assert dm_response(handler, "bob", lookalike, "psst")["statusCode"] == 400  # ...nor mapped onto alice
    assert management.received("alice-1") == []


def test_only_the_canonical_spelling_of_an_id_is_accepted(handler: Any, management: Any, connect: Any, jwt_secret: str) -> None:
    composed, decomposed = "\uac00\ub098", "\u1100\u1161\u1102\u1161"  # "가나" in NFC and NFD
    assert handler.authorize(authorizer_event(query_token=token(jwt_secret, decomposed)), None)["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    policy = handler.authorize(authorizer_event(query_token=token(jwt_secret, composed)), None)
    assert policy["context"]["userId"] == composed and set(policy["context"]) == {"userId", "exp"}
    connect("ganada-1", user=composed)

    assert dm_response(handler, "alice", decomposed, "안녕")["statusCode"] == 400  # never mapped onto 가나
    response = dm_response(handler, "alice", composed, "안녕")

    assert response == {"statusCode": 200, "body": f"Direct message delivered to {composed}."}
    assert [m["content"] for d in management.received("ganada-1") for m in d["messages"]] == ["안녕"]
    assert [m["content"] for m in history(handler, composed, **{"with": "alice"})["messages"]] == ["안녕"]
    assert history_response(handler, "alice", **{"with": decomposed})["statusCode"] == 400


def test_user_id_error_says_what_is_allowed(handler: Any, management: Any) -> None:
    response = dm_response(handler, "alice", "bob\u3164", "hi")

    assert response["body"] == (
        '"to" must be a user id: 1 to 128 characters, already in the form of an RFC 8265 username (no spaces, '
        'no fullwidth or invisible characters, NFC), not mixing lookalike scripts (Unicode UTS #39), no "#".'
    )


def test_history_with_yourself_is_refused_like_a_dm_to_yourself(handler: Any, management: Any, clock: Any) -> None:
    dm(handler, "alice", "bob", "hi")

    response = history_response(handler, "alice", **{"with": "alice"})

    assert response == {
        "statusCode": 400,
        "body": 'You have no direct conversation with yourself: leave out "with" for the room.',
    }


# --- AWS failures -------------------------------------------------------------------------

BOTOCORE_FAILURES = {
    "endpoint-connection": EndpointConnectionError(endpoint_url="https://dynamodb.example"),
    "read-timeout": ReadTimeoutError(endpoint_url="https://dynamodb.example"),
    "connect-timeout": ConnectTimeoutError(endpoint_url="https://dynamodb.example"),
    "no-credentials": NoCredentialsError(),
    "throttled": ClientError({"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "Any"),
}


def entry_points(handler: Any) -> dict[str, tuple[Any, str, Any, dict[str, Any]]]:
    """Each entry point: (client, operation that fails, call, expected answer). Before the
    message is stored, a failure is a 500 (nothing happened: sending again is safe); after, the
    answer says it was stored, with its seq, and that delivery is incomplete (sending again
    would store it twice)."""
    connections_client = connections.table().meta.client
    history_client = history_store.history_table().meta.client
    stored_room = "Message stored as seq 1, but not delivered to everyone: do not send it again; it is in the room's history."
    stored_dm = "Message stored as seq 1, but not delivered to everyone: do not send it again; it is in your history with bob."
    return {
        "connect": (connections_client, "TransactWriteItems",  # the row, with one of alice's connection slots
                    lambda: handler.connection_manager(connect_event("c1", "alice"), None),
                    {"statusCode": 500, "body": "Connect failed."}),
        "disconnect": (connections_client, "DeleteItem", lambda: handler.connection_manager(disconnect_event("c1"), None),
                       {"statusCode": 500, "body": "Disconnect failed."}),
        "send-store": (history_client, "TransactWriteItems", lambda: say_response(handler, "alice", "hi"),
                       {"statusCode": 500, "body": "Message could not be sent."}),
        "send-scan": (connections_client, "Scan", lambda: say_response(handler, "alice", "hi"),
                      {"statusCode": 200, "body": stored_room}),
        "dm-store": (history_client, "TransactWriteItems", lambda: dm_response(handler, "alice", "bob", "hi"),
                     {"statusCode": 500, "body": "Direct message could not be sent."}),
        "dm-lookup": (connections_client, "Query", lambda: dm_response(handler, "alice", "bob", "hi"),
                      {"statusCode": 200, "body": stored_dm}),
        "history": (history_client, "Query", lambda: history_response(handler, "alice"),
                    {"statusCode": 500, "body": "History could not be loaded."}),
    }


@pytest.mark.parametrize("failure", BOTOCORE_FAILURES.values(), ids=BOTOCORE_FAILURES.keys())
@pytest.mark.parametrize(
    "entry_point", ["connect", "disconnect", "send-store", "send-scan", "dm-store", "dm-lookup", "history"]
)
def test_every_entry_point_answers_an_aws_failure_clearly_and_logs_it(
    handler: Any, management: Any, aws_failure: Any, caplog: Any, entry_point: str, failure: Exception
) -> None:
    client, operation, call, expected = entry_points(handler)[entry_point]
    aws_failure(client, operation, failure)

    with caplog.at_level(logging.ERROR):
        assert call() == expected

    assert any(record.exc_info and record.exc_info[1] is failure for record in caplog.records), caplog.text


@pytest.mark.parametrize("failure", BOTOCORE_FAILURES.values(), ids=BOTOCORE_FAILURES.keys())
def test_authorizer_denies_when_the_secret_cannot_be_read(
    handler: Any, jwt_secret: str, aws_failure: Any, caplog: Any, failure: Exception
) -> None:
    aws_failure(verifier.ssm_client(), "GetParameter", failure)

    with caplog.at_level(logging.ERROR):
        policy = handler.authorize(authorizer_event(query_token=token(jwt_secret)), None)

    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"
    assert any(record.exc_info and record.exc_info[1] is failure for record in caplog.records)


@pytest.mark.parametrize("failure", list(BOTOCORE_FAILURES.values())[:4], ids=list(BOTOCORE_FAILURES)[:4])
def test_a_post_that_fails_in_botocore_is_logged_and_the_others_still_get_it(
    handler: Any, management: Any, connect: Any, table: Any, caplog: Any, failure: Exception
) -> None:
    connect("alice", "flaky", "bob")
    client = delivery.management_client(delivery.management_endpoint(message_event("alice", "{}")["requestContext"]))

    def fail_for_flaky(params: dict[str, Any], **_: Any) -> None:
        if params["ConnectionId"] == "flaky":
            raise failure

    client.meta.events.register_first("before-parameter-build.apigatewaymanagementapi.PostToConnection", fail_for_flaky)
    try:
        response = handler.send_message(message_event("alice", send_message_body("hi")), None)
    finally:
        client.meta.events.unregister("before-parameter-build.apigatewaymanagementapi.PostToConnection", fail_for_flaky)

    assert response == {"statusCode": 200, "body": "Message sent to all connections."}
    assert management.received("bob") == [{"messages": [{"content": "hi"}]}]
    assert {item["connection_id"] for item in table.scan()["Items"]} == {"alice", "flaky", "bob"}
    assert "Could not post to connection flaky" in caplog.text


def test_aws_clients_give_up_well_inside_the_29_second_integration_limit(handler: Any) -> None:
    for client in (
        connections.table().meta.client,
        history_store.history_table().meta.client,
        verifier.ssm_client(),
        delivery.management_client("https://example.com/dev"),
    ):
        config = client.meta.config
        worst = config.retries["total_max_attempts"] * (config.connect_timeout + config.read_timeout)
        assert worst <= 24, (client, worst)  # and botocore's backoff between attempts: at most 14 s


def test_default_answers_a_frame_nested_deeper_than_the_parser_goes(handler: Any) -> None:
    """$default looks for the offline heartbeat in every frame; a frame too deep to parse is
    just an unknown frame (found by the any-body property: a RecursionError escaped)."""
    body = "[" * 100_000 + "]" * 100_000

    assert handler.default_message(message_event("c1", body, "$default"), None) == {"statusCode": 400, "body": "Unrecognized WebSocket action."}


def nested(depth: int, innermost: Any = "x") -> Any:
    """Objects in objects, `depth` levels of them."""
    value = innermost
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(
    ("route", "body", "reason"),
    [
        ("sendMessage", "not json", "Message body is not valid JSON."),
        ("sendMessage", '{"action": "sendMessage"}', 'Message has no "content" (it is missing or null).'),
        ("sendMessage", '{"action": "sendMessage", "content": "\\ud800"}', 'Message "content" is not valid Unicode (it has a lone surrogate).'),
        ("sendMessage", json.dumps({"action": "sendMessage", "content": nested(65)}),
         'Message is nested too deeply: "content" may have at most 64 levels of arrays and objects.'),
        ("sendMessage", json.dumps({"action": "sendMessage", "content": [nested(65), 1]}),  # the scalar read first
         'Message is nested too deeply: "content" may have at most 64 levels of arrays and objects.'),
        ("getRecentMessages", '{"action": "getRecentMessages", "limit": true}', '"limit" must be a whole number from 1 to 100.'),
        ("getRecentMessages", '{"action": "getRecentMessages", "limit": "5"}', '"limit" must be a whole number from 1 to 100.'),
        ("getConversations", '{"action": "getConversations", "before": "x"}',
         '"before" must be the "before" of an earlier getConversations reply.'),
        ("getPresence", '{"action": "getPresence", "channel": "lobby", "after": "bad id"}',
         '"after" must be the "after" of an earlier getPresence reply (a user id).'),
    ],
    ids=["not-json", "no-content", "lone-surrogate", "nested-objects", "nested-then-scalar", "limit-true", "limit-text", "bad-inbox-cursor",
         "bad-presence-cursor"],
)
def test_each_malformed_request_is_refused_word_for_word(handler: Any, route: str, body: str, reason: str) -> None:
    assert send(handler, route, "alice-conn", "alice", body=body) == {"statusCode": 400, "body": reason}


def test_frames_are_utf8_with_text_as_is_and_never_nan() -> None:
    # Every byte counts against API Gateway's 128 KB, and no browser's JSON.parse reads NaN.
    assert frames.encode({"content": "안녕 👋"}) == '{"content": "안녕 👋"}'.encode("utf-8")
    with pytest.raises(ValueError):
        frames.encode({"content": float("nan")})


# --- numbers at the limits of every type ------------------------------------------------------

# Beyond DynamoDB's 38 digits (boto3's serializer raised decimal.Rounded, Inexact or Overflow and
# the route was left without an answer), below any sane value, the largest double, past int64.
EXTREME_NUMBERS = [10**38, 10**40, 10**200, -(10**40), 1e308, -1e308, 2**63, 2**64, -(2**63) - 1]
NUMERIC_FIELDS = ["limit", "before", "after", "seq", "content", "channel", "to", "with", "clientMessageId", "token", "ref",
                  "action"]


@pytest.mark.parametrize("value", EXTREME_NUMBERS, ids=str)
@pytest.mark.parametrize("route", sorted(set(routes()) - {"$connect", "$disconnect"}))
def test_every_field_of_every_action_given_a_number_at_the_limits_is_answered_without_a_failure(
    handler: Any, management: Any, connect: Any, route: str, value: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "TYPING_RATE_PER_SECOND", 0)  # 12 typing frames: past their own burst of 5
    connect("alice-1", user="alice")
    base = {"channel": "lobby", "to": "bob", "content": "hi"}
    for field in NUMERIC_FIELDS:
        response = send(handler, route, "alice-1", "alice", body=json.dumps({"action": route, **base, field: value}))
        assert response["statusCode"] in (200, 400, 403), (field, response)
        assert isinstance(response.get("body", ""), str)


@pytest.mark.parametrize("field, value, text", [
    ("after", 10**40, '"after" is beyond any seq a conversation can reach (at most 1000000000000000).'),
    ("after", 10**15 + 1, '"after" is beyond any seq a conversation can reach (at most 1000000000000000).'),
    ("before", 10**38, '"before" is beyond any seq a conversation can reach (at most 1000000000000001).'),
    ("before", 10**15 + 2, '"before" is beyond any seq a conversation can reach (at most 1000000000000001).'),
], ids=["after-40-digits", "after-one-past", "before-38-digits", "before-one-past"])
def test_a_cursor_beyond_any_seq_is_refused_with_the_bound(handler: Any, field: str, value: int, text: str) -> None:
    assert history_response(handler, "alice", **{field: value}) == {"statusCode": 400, "body": text}


@pytest.mark.parametrize("field, value", [("after", 10**15), ("before", 10**15 + 1)], ids=["after", "before"])
def test_a_cursor_at_the_bound_is_read(handler: Any, management: Any, field: str, value: int) -> None:
    say(handler, "alice", "hi")

    page = json.loads(history_response(handler, "alice", **{field: value})["body"])["history"]

    assert [m["content"] for m in page["messages"]] == ([] if field == "after" else ["hi"])
