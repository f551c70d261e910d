"""Small helpers shared by the end-to-end tests and benchmarks."""

from __future__ import annotations

import time
from typing import Any, Callable


def connection_ids(table: Any) -> set[str]:
    """Every connection id in the table, across Scan pages, read consistently."""
    ids: set[str] = set()
    kwargs: dict[str, Any] = {"ProjectionExpression": "connection_id", "ConsistentRead": True}
    while True:
        page = table.scan(**kwargs)
        ids.update(item["connection_id"] for item in page["Items"])
        if "LastEvaluatedKey" not in page:
            return ids
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    """Poll until the condition holds ($disconnect, for one, runs after the socket closes)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout} s"
        time.sleep(0.1)
