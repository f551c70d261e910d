"""`make events`: the events of the running `make offline`, one JSON line each, as they arrive
(the local stack's rule sends every event on its bus to a local queue: scripts/local_events.py).
Each line is the EventBridge event a rule's target gets: "detail-type", "source", "detail".
Ctrl-C stops it; events read are gone from the queue (one reader at a time).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from scripts import local_events
    from scripts.dev_token import TokenError, running_stack
    from scripts.local_stack import local_session

    try:
        stack = running_stack()
    except TokenError as error:
        print(f"make events: {error}", file=sys.stderr)
        return 1
    queue_url = stack.get("events_queue_url")
    if not queue_url:
        print("make events: the running make offline sends no events (started with events=off?)", file=sys.stderr)
        return 1
    sqs = local_session(stack["region"]).client("sqs", endpoint_url=stack["ssm_endpoint"])
    print(f"make events: the events of {stack['websocket_url']}, as they arrive (Ctrl-C stops)", file=sys.stderr)
    try:
        while True:
            for event in local_events.receive(sqs, queue_url):
                print(json.dumps(event, ensure_ascii=False), flush=True)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:  # `make events | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
