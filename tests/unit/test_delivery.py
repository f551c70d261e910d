"""Where posts go: the API's own endpoint, behind a custom domain and in every partition."""

from __future__ import annotations

from typing import Any

import pytest

from chat import delivery
from tests.support.events import (
    API_ID,
    MANAGEMENT_ENDPOINT,
    REGION,
    STAGE,
    message_event,
    send_message_body,
)

# --- the management endpoint -------------------------------------------------------------


def custom_domain_event(connection_id: str = "alice", body: str = "{}") -> dict[str, Any]:
    event = message_event(connection_id, body)
    event["requestContext"].update(domainName="chat.example.com", stage=STAGE)
    return event


def test_behind_a_custom_domain_the_endpoint_is_the_apis_own(handler: Any) -> None:
    # https://chat.example.com/dev answers 403 "No method found matching route" for @connections.
    assert delivery.management_endpoint(custom_domain_event()["requestContext"]) == f"https://{API_ID}.execute-api.{REGION}.amazonaws.com/{STAGE}"


def test_the_endpoint_built_in_the_template_wins(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", "https://zz9.execute-api.cn-north-1.amazonaws.com.cn/prod")

    assert delivery.management_endpoint(custom_domain_event()["requestContext"]) == "https://zz9.execute-api.cn-north-1.amazonaws.com.cn/prod"


def test_in_a_china_region_the_fallback_uses_its_partitions_suffix(handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_REGION", "cn-northwest-1")

    assert delivery.management_endpoint(custom_domain_event()["requestContext"]) == f"https://{API_ID}.execute-api.cn-northwest-1.amazonaws.com.cn/{STAGE}"


def test_a_broadcast_behind_a_custom_domain_reaches_everyone(handler: Any, management: Any, connect: Any) -> None:
    connect("alice", "bob")

    response = handler.send_message(custom_domain_event("alice", send_message_body("via chat.example.com")), None)

    assert response == {"statusCode": 200, "body": "Message sent to all connections."}
    assert management.received("bob") == [{"messages": [{"content": "via chat.example.com"}]}]


def test_an_expired_connection_already_closed_on_api_gateways_side_is_still_cleaned_up(
    handler: Any, management: Any, table: Any, frozen_clock: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    from chat import sweeper
    from tests.support.events import MANAGEMENT_ENDPOINT, connect_event

    monkeypatch.setenv("WEBSOCKET_API_ENDPOINT", MANAGEMENT_ENDPOINT)
    expires = int(frozen_clock[0]) + 100
    assert handler.connection_manager(connect_event("c1", "alice", expires), None)["statusCode"] == 200
    management.answer("c1", 410)  # the notice and DeleteConnection both find it gone

    assert sweeper.sweep(expires + 60) == {"expired": 1}

    assert "Item" not in table.get_item(Key={"connection_id": "c1"})


# --- what each answer to a post means ----------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "outcome"),
    [
        (429, "LimitExceededException", delivery.THROTTLED),  # API Gateway's account rate
        (429, None, delivery.THROTTLED),  # a bare 429, as serverless-offline answers
        (429, "SlowDownPlease", delivery.THROTTLED),  # a throttle under a name not known here: 429 says it
        (400, "ThrottlingException", delivery.THROTTLED),  # a throttle by its name, whatever the status
        (410, "GoneException", delivery.GONE),
        (410, None, delivery.GONE),  # serverless-offline's bare 410
        (400, "BadRequestException", delivery.FAILED),
        (500, "InternalServerErrorException", delivery.FAILED),
    ],
)
def test_each_answer_to_a_post_is_the_outcome_it_means(handler: Any, management: Any, status: int, code: str | None, outcome: str) -> None:
    management.answer("c1", status, code)

    assert delivery.post_to_connection(delivery.management_client(MANAGEMENT_ENDPOINT), "c1", b"hi") == outcome
