"""`make offline`: run the whole service on this machine until Ctrl-C.

Ports come from OFFLINE_HTTP_PORT (3000), OFFLINE_WEBSOCKET_PORT (3001), OFFLINE_LAMBDA_PORT
(3002) and OFFLINE_DYNAMODB_PORT (5000).
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.local_stack import DEV_TOKEN_HOURS, LocalStack, Ports, StackError  # noqa: E402

READY = "The service is running locally."


class Stop(Exception):
    """SIGINT or SIGTERM arrived."""


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    # The first signal stops us; ignore the rest, or a second one (make passes SIGTERM on to
    # its child as well, so `make offline` gets two) would interrupt the cleanup.
    _ignore_stop_signals()
    raise Stop(signal.Signals(signum).name)


def _ignore_stop_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def instructions(stack: LocalStack) -> str:
    return f"""
{READY}
  WebSocket  {stack.websocket_url}
  HTTP       {stack.http_url}/ping
  DynamoDB   {stack.dynamodb_endpoint} (moto; tables {', '.join(stack.table_names.values())})

Connecting needs a token (valid {DEV_TOKEN_HOURS} h; more with `make token USER=carol`).
Try it from two other terminals in this folder, as alice and as bob:
  npx wscat -c "{stack.url_for('alice')}"
  npx wscat -c {stack.websocket_url} -H "Authorization: Bearer {stack.token('bob')}"

Then type:
  > {{"action": "sendMessage", "content": "서버리스 웹소켓 API 테스트"}}
  > {{"action": "sendDirectMessage", "to": "bob", "content": "안녕 bob"}}
  > {{"action": "getRecentMessages", "with": "alice", "limit": 20}}
And over HTTP:
  curl {stack.http_url}/ping

Ctrl-C stops everything.
"""


def main() -> int:
    signal.signal(signal.SIGINT, _raise_stop)
    signal.signal(signal.SIGTERM, _raise_stop)
    stack = None
    try:
        stack = LocalStack(Ports.from_env())
        print("Starting moto (DynamoDB) and serverless-offline ...", flush=True)
        stack.start()
        print(instructions(stack), flush=True)
        while True:
            failed = stack.failed_process()
            if failed:
                print(f"\n{failed} stopped unexpectedly; stopping the rest.", file=sys.stderr, flush=True)
                return 1
            time.sleep(0.5)
    except StackError as error:
        print(f"make offline: {error}", file=sys.stderr, flush=True)
        return 1
    except Stop:
        print("\nStopping ...", flush=True)
        return 0
    finally:
        # Signals now would interrupt the cleanup itself: let it finish.
        _ignore_stop_signals()
        if stack is not None:
            stack.stop()
            print("Stopped: nothing left running.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
