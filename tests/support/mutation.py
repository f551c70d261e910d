"""pytest plugin for `make mutate` (mutmut; pyproject.toml loads it with `-p tests.support.mutation`):
which of the tests that reach a mutant run against it, and in what order.

mutmut runs, for each mutant, every test that called the mutated function during its first
pass (with -x: the first failure kills it). Nearly every test goes through $connect, the
caller and the rate limiter, so a mutant there has 400 tests to pass, and a survivor costs the
whole unit suite (minutes on this machine; thousands of mutants). So, against a mutant:

- the test files about its module run first, all their tests that reach it (RELATED below,
  else tests/unit/test_<module>.py), then at most MUTATE_OTHER_TESTS (default 10; -1 means all) of
  the others, fastest first (the durations mutmut measured in its first pass). A mutant
  counted as survived passed the related tests, not necessarily every test: the score is a
  lower bound. `MUTATE_OTHER_TESTS=-1 make mutate MUTANTS=<name>` tries one against all.

Outside a mutant (mutmut's first pass, its clean run, its forced failure) nothing changes.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Any

import pytest

# The test files that are about each module, most direct first. A module not listed here is
# tested first by tests/unit/test_<module>.py, if there is one. Only unit tests: mutmut runs
# tests/unit (pyproject.toml).
RELATED: dict[str, tuple[str, ...]] = {
    "callers": ("test_callers.py", "test_tokens.py", "test_channels.py", "test_expiry.py", "test_handler.py"),
    "bans": ("test_moderation.py",),
    "example_review": ("test_review.py",),
    "channels": ("test_channels.py", "test_moderation.py", "test_presence.py", "test_events.py"),
    "connections": ("test_connections.py", "test_sweeper.py", "test_connect_race.py", "test_ratelimit.py",
                    "test_expiry.py", "test_handler.py"),
    "delivery": ("test_delivery.py", "test_worker_faults.py", "test_handler.py", "test_fanout.py"),
    "dispatch": ("test_fanout.py", "test_rounds.py", "test_direct_messages.py", "test_messaging.py", "test_presence.py",
                 "test_handler.py"),
    "fanout": ("test_fanout.py", "test_worker_faults.py", "test_worker.py"),
    "jobs": ("test_fanout.py", "test_worker_faults.py", "test_presence.py", "test_worker.py", "test_events.py",
             "test_rounds.py"),
    "conversations": ("test_seq.py", "test_history.py", "test_presence.py", "test_conversations.py", "test_rounds.py"),
    "inbox": ("test_conversations.py", "test_direct_messages.py", "test_hostile_input.py"),
    "errors": ("test_handler.py", "test_hostile_input.py"),
    "aws": ("test_members.py", "test_seq.py", "test_history.py", "test_connections.py", "test_presence.py"),
    "frames": ("test_changes.py", "test_history.py", "test_hostile_input.py", "test_direct_messages.py", "test_messaging.py", "test_rounds.py"),
    "gateway": ("test_handler.py", "test_hostile_input.py", "test_ratelimit.py"),
    "handler": ("test_handler.py",),
    "history": ("test_changes.py", "test_history.py", "test_seq.py", "test_conversations.py", "test_hostile_input.py", "test_messaging.py"),
    "members": ("test_members.py", "test_channels.py", "test_presence.py", "test_events.py"),
    "messaging": ("test_messaging.py", "test_seq.py", "test_direct_messages.py", "test_channels.py", "test_handler.py",
                  "test_recovery.py"),
    "backend": ("test_publish.py", "test_operators.py"),
    "publisher": ("test_rounds.py", "test_seq.py", "test_messaging.py", "test_direct_messages.py", "test_channels.py", "test_handler.py", "test_review.py"),
    "presence": ("test_presence.py", "test_sweeper.py"),
    "ratelimit": ("test_ratelimit.py",),
    "recovery": ("test_recovery.py", "test_history.py", "test_conversations.py"),
    "requests": ("test_hostile_input.py", "test_history.py", "test_presence.py", "test_conversations.py", "test_handler.py"),
    "sessions": ("test_sessions.py", "test_expiry.py", "test_sweeper.py", "test_presence.py", "test_connect_race.py",
                 "test_ratelimit.py", "test_events.py"),
    "sweeper": ("test_sweeper.py", "test_expiry.py", "test_events.py"),
    "stream": ("test_events.py",),
    "events": ("test_events.py",),
    "telemetry": ("test_telemetry.py",),
    "verifier": ("test_tokens.py", "test_issuers.py", "test_expiry.py"),
    "jwks": ("test_issuers.py",),
    "issuers": ("test_issuers.py",),
    "tokens": ("test_tokens.py", "test_expiry.py"),
    "users": ("test_hostile_input.py", "test_direct_messages.py", "test_properties.py"),
    "worker": ("test_worker.py", "test_worker_faults.py", "test_fanout.py", "test_presence.py", "test_events.py"),
}


# No unit test takes more than a few seconds; one that runs this long against a mutant is stuck.
MUTANT_TEST_TIMEOUT_SECONDS = 60


def other_tests_per_mutant() -> int:
    return int(os.environ.get("MUTATE_OTHER_TESTS", "10"))


def mutant_module(mutant: str) -> str | None:
    """The module a mutant is in ("chat.history.x_append__mutmut_3" -> "history", a method's
    "chat.fanout.xǁDeliveryJobǁfrom_body__mutmut_2" -> "fanout", "handler.x_ping__mutmut_1" ->
    "handler"); None outside a mutant (mutmut also sets "", "stats", "fail", ...)."""
    if "__mutmut_" not in mutant:
        return None
    parts = mutant.split(".")
    if parts[0] == "handler":
        return "handler"
    return parts[1] if parts[0] == "chat" and len(parts) > 2 else None


@functools.cache
def _durations() -> dict[str, float]:
    """How long each test took in mutmut's first pass (mutants/mutmut-stats.json, the current
    directory while mutmut runs tests)."""
    try:
        return dict(json.loads(Path("mutmut-stats.json").read_text())["duration_by_test"])
    except (OSError, ValueError, KeyError):
        return {}


def pytest_collection_modifyitems(session: Any, config: Any, items: list[Any]) -> None:
    module = mutant_module(os.environ.get("MUTANT_UNDER_TEST", ""))
    if module is None or not items:
        return
    related = RELATED.get(module, (f"test_{module}.py",))
    durations = _durations()

    def rank(item: Any) -> tuple[int, float]:
        name = Path(str(item.fspath)).name
        return (related.index(name) if name in related else len(related), durations.get(item.nodeid, 0.0))

    items.sort(key=rank)
    for item in items:  # a mutant that sleeps (a pacer's wait) costs no CPU, so mutmut's limit never ends it
        item.add_marker(pytest.mark.timeout(MUTANT_TEST_TIMEOUT_SECONDS))
    keep = sum(1 for item in items if Path(str(item.fspath)).name in related) + other_tests_per_mutant()
    if other_tests_per_mutant() >= 0 and keep < len(items):
        config.hook.pytest_deselected(items=items[keep:])
        del items[keep:]
