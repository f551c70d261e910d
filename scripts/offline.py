"""`make offline`: run the whole service on this machine until Ctrl-C.

Ports come from OFFLINE_HTTP_PORT (3000), OFFLINE_WEBSOCKET_PORT (3001), OFFLINE_LAMBDA_PORT
(3002), OFFLINE_PAGE_PORT (3003) and OFFLINE_DYNAMODB_PORT (5000). While it runs,
.offline/stack-<websocket port>.json says where (for `make token`); it is removed on exit.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import IO, Iterator, Mapping

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.local_stack import (  # noqa: E402
    COGNITO_USERS,
    DEV_TOKEN_HOURS,
    SECRET_FILE,
    STAGE,
    LocalStack,
    Ports,
    StackError,
)
from scripts.service_config import ROOT  # noqa: E402

READY = "The service is running locally."
# Not .serverless/: `sls package` and `sls deploy` delete that folder, also while this runs.
STATE_DIR = ROOT / ".offline"


def state_file(websocket_port: int) -> Path:
    """Where a running `make offline` says where it runs (read by `make token`)."""
    return STATE_DIR / f"stack-{websocket_port}.json"


class Stop(BaseException):
    """SIGINT or SIGTERM arrived.

    A BaseException, like KeyboardInterrupt: botocore treats any Exception raised inside a
    request as a failed attempt and retries it, so a Stop(Exception) landing in a boto3 call
    was swallowed, startup went on, and the stack could no longer be stopped.
    """


class StopSignals:
    """SIGINT/SIGTERM raise Stop at once, or at the end of a `deferred()` block."""

    def __init__(self) -> None:
        self._deferring = False
        self._pending: int | None = None

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        # The first signal stops us; ignore the rest, or a second one (make passes SIGTERM on
        # to its child as well, so `make offline` gets two) would interrupt the cleanup.
        ignore_stop_signals()
        if self._deferring:
            self._pending = signum
            return
        raise Stop(signal.Signals(signum).name)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Hold a Stop until the block is done (a child started in it is recorded by then)."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False
            if self._pending is not None:
                raise Stop(signal.Signals(self._pending).name)


def ignore_stop_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class OutputRelay(threading.Thread):
    """serverless-offline's output: into a log file while it starts (40 lines of routes that
    would bury the instructions), then, once the banner is out, to this terminal."""

    def __init__(self, stream: IO[str], startup_log: Path) -> None:
        super().__init__(name="serverless-offline-output", daemon=True)
        self.stream = stream
        self.startup_log = startup_log
        self.lock = threading.Lock()
        self.live = False
        self.last_line = time.monotonic()

    def run(self) -> None:
        with self.startup_log.open("w") as log:
            for line in self.stream:
                with self.lock:
                    if self.live:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        log.write(line)
                        log.flush()
                        self.last_line = time.monotonic()

    def go_live(self, banner: str, quiet: float = 0.5, at_most: float = 3.0) -> None:
        """Print the banner once startup output has gone quiet, then pass the function logs on."""
        deadline = time.monotonic() + at_most
        while time.monotonic() - self.last_line < quiet and time.monotonic() < deadline:
            time.sleep(0.05)
        with self.lock:
            print(banner, flush=True)
            self.live = True


def review_note(stack: LocalStack) -> str:
    if stack.params.get("reviewFunction") != "example":
        return ""
    return "\n  Review     every message is reviewed by the example word list (chat/example_review.py)"


def instructions(stack: LocalStack) -> str:
    return f"""
{READY}{review_note(stack)}
  WebSocket  {stack.websocket_url}
  HTTP       {stack.http_url}/ping
  DynamoDB   {stack.dynamodb_endpoint} (moto; tables {', '.join(stack.table_names.values())})
  Chat page  {stack.page_url}
  (moto's log: {relative(stack.moto_log)}; serverless-offline's startup: {relative(stack_startup_log(stack.ports))})

The data lives in moto, in memory. On Ctrl-C the messages and conversations are kept in
{relative(stack.data_file)} and the token secret in {relative(STATE_DIR / SECRET_FILE)}, so tokens, open pages
and history survive a restart ({stack.restored} items were brought back now); `make clean` forgets them.

In a browser, open one link per user (each is a signed-in chat page):
  alice  {stack.page_url_for('alice')}
  bob    {stack.page_url_for('bob')}

Or with wscat, from two other terminals in this folder (tokens valid {DEV_TOKEN_HOURS} h; more with
`make token FOR=carol`; alice and bob can also sign in to the local Cognito user pool, passwords
{' and '.join(COGNITO_USERS.values())}: `make token FOR=alice ISSUER=cognito` prints an ID token it signs):
  alice's window:  npx wscat -c "{stack.url_for('alice')}"
  bob's window:    npx wscat -c {stack.websocket_url} -H "Authorization: Bearer {stack.token('bob')}"

In alice's window, type:
  > {{"action": "sendMessage", "content": "서버리스 웹소켓 API 테스트"}}
  > {{"action": "sendDirectMessage", "to": "bob", "content": "안녕 bob"}}
Then in bob's window:
  > {{"action": "getRecentMessages", "with": "alice", "limit": 20}}
And over HTTP:
  curl {stack.http_url}/ping
What the app's backend would hear (EventBridge events, one JSON line each): `make events`

Ctrl-C stops everything. The function logs follow.
"""


# `make offline REVIEW=example`: the review hook with the example word list (docs/moderation.md).
REVIEW_VARIABLE = "OFFLINE_REVIEW"
LOCAL_REVIEW_TIMEOUT_MS = "5000"


def review_params(env: Mapping[str, str]) -> dict[str, str]:
    """serverless.yml's review parameters for REVIEW= (StackError for anything but example: a
    function on AWS cannot be called from here)."""
    value = env.get(REVIEW_VARIABLE, "").strip()
    if value == "":
        return {}
    if value != "example":
        raise StackError(f'REVIEW={value}: locally the review function can only be the example, REVIEW=example')
    # 5 s, not the deployed default of 1 s: the example's first call starts a Python worker of
    # serverless-offline's, which takes over a second on a busy laptop, and a timeout would let
    # that message through unreviewed (the fallback), a surprise when trying the hook out.
    return {"reviewFunction": "example", "reviewTimeoutMs": LOCAL_REVIEW_TIMEOUT_MS}


def stack_startup_log(ports: Ports) -> Path:
    return STATE_DIR / f"serverless-offline-{ports.websocket}.log"


def relative(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def write_state(stack: LocalStack) -> Path:
    path = state_file(stack.ports.websocket)
    document = {
        "pid": os.getpid(),
        "stage": STAGE,
        "region": stack.region,
        "ports": stack.ports.as_env(),
        "websocket_url": stack.websocket_url,
        "ssm_endpoint": stack.dynamodb_endpoint,
        "secret_parameter": stack.secret_parameter,
        "user_pool_id": stack.user_pool_id,
        "user_pool_client_id": stack.user_pool_client_id,
        "events_file": str(stack.events_file) if stack.events_enabled else "",
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def main() -> int:
    signals = StopSignals()
    signals.install()
    stack = relay = state = None
    try:
        ports = Ports.from_env()
        LocalStack(ports).check_ports()  # before touching the files of a stack that may be running
        STATE_DIR.mkdir(exist_ok=True)
        read_end, write_end = os.pipe()
        relay = OutputRelay(os.fdopen(read_end, encoding="utf-8", errors="replace"), stack_startup_log(ports))
        relay.start()
        params = review_params(os.environ)
        with os.fdopen(write_end, "w") as output:  # the child keeps its own copy
            stack = LocalStack(
                ports, output=output, progress=lambda step: print(f"{step} ...", flush=True), spawn_guard=signals.deferred,
                keep_in=STATE_DIR, params=params,
            )
            stack.start()
        state = write_state(stack)
        relay.go_live(instructions(stack))
        while True:
            failed = stack.failed_process()
            if failed:
                print(f"\n{failed} stopped unexpectedly; stopping the rest.", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.5)
    except StackError as error:
        hint = f"\n(serverless-offline's output: {relative(stack_startup_log(stack.ports))})" if stack else ""
        print(f"make offline: {error}{hint}", file=sys.stderr, flush=True)
        return 1
    except Stop:
        print("\nStopping ...", flush=True)
        return 0
    finally:
        # Signals now would interrupt the cleanup itself: let it finish.
        ignore_stop_signals()
        if state is not None:
            state.unlink(missing_ok=True)
        if stack is not None:
            stack.stop()
            print("Stopped: nothing left running.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
