"""`make events`: the events of the running `make offline`, one JSON line each, as they arrive
(the local stack's rule sends every event on its bus to a queue it empties into a file:
scripts/local_events.py). Each line is the EventBridge event a rule's target gets:
"detail-type", "source", "detail". Ctrl-C stops it; any number may run at once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from scripts import local_events
    from scripts.dev_token import TokenError, running_stack

    try:
        stack = running_stack()
    except TokenError as error:
        print(f"make events: {error}", file=sys.stderr)
        return 1
    events_file = stack.get("events_file")
    if not events_file:
        print("make events: the running make offline sends no events (started with events=off?)", file=sys.stderr)
        return 1
    try:
        with Path(events_file).open(encoding="utf-8") as source:
            source.seek(0, os.SEEK_END)  # from now on
            print(f"make events: the events of {stack['websocket_url']}, as they arrive (Ctrl-C stops)",
                  file=sys.stderr, flush=True)
            for line in local_events.follow(source):
                print(line, flush=True)
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:  # `make events | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
