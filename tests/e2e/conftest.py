"""Fixtures of the end-to-end tier: the local stack (serverless-offline + moto server), as `make
offline` runs it, and chat pages in Chromium."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest

# The local stack's sweeper schedule in the end-to-end tests.
SWEEP_SECONDS = 5
# The tests' stacks (this worker's, and every `make offline` a test starts) keep their Python
# workers for the run: a worker stopped after a minute idle (serverless.yml's default) is started
# again for the next test at 0.4 s of CPU, hundreds of times in a full run on 2 shared cores.
os.environ.setdefault("OFFLINE_IDLE_LAMBDA_SECONDS", "3600")


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The stack `make offline` runs, on free ports, stopped when the session ends. Its sweeper
    runs every 5 s (a minute by default), so an expired token is closed within seconds."""
    from scripts.local_stack import LocalStack, Ports

    log_dir = tmp_path_factory.mktemp("local-stack")
    with (log_dir / "serverless-offline.log").open("w") as output:
        stack = LocalStack(Ports.free(), output=output, log_dir=log_dir, params={"sweepBucketSeconds": str(SWEEP_SECONDS)})
        with stack:
            yield stack


# A failed test's report quotes what the stack's functions logged at WARNING or above while it
# ran, and their refusals, at most this many lines: CI keeps no stack log, and a lost frame is otherwise a guess.
QUOTED_LOG_LINES = 40
LOUD = re.compile(r'"level": ?"(?:WARNING|ERROR|CRITICAL)"|"message": ?"(?:Rejected|Refused) ')
_LOG_START = pytest.StashKey[tuple[Path, int]]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    stack = getattr(item, "funcargs", {}).get("local_stack")
    if stack is not None and stack.output is not None:
        log = Path(stack.output.name)
        item.stash[_LOG_START] = (log, log.stat().st_size)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and _LOG_START in item.stash:
        quoted = stack_log_warnings(*item.stash[_LOG_START])
        report.sections.append(("local stack: warnings, errors and refusals while it ran", quoted))


def stack_log_warnings(log: Path, start: int) -> str:
    """The function log's lines at WARNING or above and its refusals (Powertools' JSON), and
    serverless-offline's own errors, written since `start`."""
    with log.open("rb") as written:
        written.seek(start)
        lines = written.read().decode(errors="replace").splitlines()
    # serverless-offline's own failures (a worker that crashed, a timeout) are plain text
    loud = [line for line in lines if LOUD.search(line) or (not line.startswith("{") and "rror" in line)]
    return "\n".join(loud[-QUOTED_LOG_LINES:]) or "(none)"


@pytest.fixture
def running(local_stack: Any) -> Iterator[Any]:
    """The session's stack, announced by `make offline`'s own writer (this process's pid), so
    that `make token`, `make publish` and `make events` find it."""
    from scripts import offline

    offline.STATE_DIR.mkdir(exist_ok=True)
    path = offline.write_state(local_stack)
    yield local_stack
    path.unlink(missing_ok=True)


@pytest.fixture
def connections(local_stack: Any) -> Any:
    """The local connections table, read through moto server."""
    return local_stack.dynamodb().Table(local_stack.table_names["ConnectionsTable"])


@pytest.fixture
def pages() -> Iterator[Any]:
    """Open chat pages, each in a browser of its own (`faults=True`: with tests/support/websocket_faults.js
    installed before the page's scripts); all closed at the end."""
    from scripts import browser
    from scripts.browser import ChatPage
    from tests.support.browser_support import install_faults, require_browser

    require_browser()
    drivers: list[Any] = []

    def open_page(url: str, faults: bool = False) -> ChatPage:
        drivers.append(browser.chromium())
        if faults:
            install_faults(drivers[-1])
        return ChatPage(drivers[-1]).open(url)

    yield open_page
    for driver in drivers:
        driver.quit()


@pytest.fixture
def ports() -> Iterator[Any]:
    """Free ports for one `make offline`; the logs it leaves in .offline/ go afterwards."""
    from scripts import offline
    from scripts.local_stack import Ports

    ports = Ports.free()
    yield ports
    for log in (f"moto-{ports.dynamodb}.log", f"serverless-offline-{ports.websocket}.log",
                f"conversations-{ports.websocket}.json"):
        (offline.STATE_DIR / log).unlink(missing_ok=True)
