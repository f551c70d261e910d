"""A review function on 127.0.0.1, answering Lambda's Invoke API (POST
/2015-03-31/functions/<name>/invocations) as AWS Lambda does, so chat/review.py's boto3 client
is tested at the wire: its timeout, a function error (the X-Amz-Function-Error header), an
answer that means nothing. By default it answers as the shipped example (chat/example_review.py)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from chat import example_review

# What the function does with one request: (its answer's bytes, whether it failed as a function).
Behaviour = Callable[[dict[str, Any]], tuple[bytes, bool]]


def example(request: dict[str, Any]) -> tuple[bytes, bool]:
    return json.dumps(example_review.decide(request)).encode(), False


class ReviewFunction:
    """Records every request it got (`requests`, `names`); answers after `delay` seconds."""

    def __init__(self, behaviour: Behaviour = example) -> None:
        self.behaviour = behaviour
        self.delay = 0.0
        self.requests: list[dict[str, Any]] = []
        self.names: list[str] = []
        self._lock = threading.Lock()
        function = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                with function._lock:
                    function.requests.append(request)
                    function.names.append(self.path.split("/functions/", 1)[1].split("/", 1)[0])
                time.sleep(function.delay)
                body, failed = function.behaviour(request)
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.send_header("Content-Type", "application/json")
                    if failed:
                        self.send_header("X-Amz-Function-Error", "Unhandled")
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the caller gave up waiting (its read timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
