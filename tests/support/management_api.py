"""A fake of API Gateway's management API (@connections), at the wire level of the handler's own
boto3 client: per-connection answers a test chooses, and a record of what each connection got."""

from __future__ import annotations

import json
import threading
from typing import Any, Iterator
from urllib.parse import unquote

from botocore.awsrequest import AWSResponse

from tests.support.events import REGION


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class ManagementApi:
    """The mocked @connections API as the handler's client sees it.

    moto answers posts with 200; `answer` makes chosen connections answer with a given HTTP
    status instead, at the wire level, as API Gateway or serverless-offline would, to posts,
    GetConnection and DeleteConnection alike. What each connection received is recorded here
    (moto records failed posts too), and which were asked after and closed; a closed connection
    answers 410 from then on.
    """

    def __init__(self, client: Any) -> None:
        from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        self._backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION]
        self._answers: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self._times: dict[str, int] = {}
        self._delivered: dict[str, list[bytes]] = {}
        self._lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        self.asked: list[str] = []
        self.closed: list[str] = []
        client.meta.events.register_first("before-send.apigatewaymanagementapi.PostToConnection", self._before_send)
        client.meta.events.register_first("before-send.apigatewaymanagementapi.GetConnection", self._before_get)
        client.meta.events.register_first("before-send.apigatewaymanagementapi.DeleteConnection", self._before_delete)

    def answer(self, connection_id: str, status: int, error_code: str | None = None, times: int | None = None) -> None:
        """Make posts to this connection fail (the next `times` ones, or all); no error_code
        means an empty body."""
        headers = {"x-amzn-ErrorType": error_code} if error_code else {}
        body = json.dumps({"message": f"{error_code} from test"}).encode() if error_code else b""
        self._answers[connection_id] = (status, body, headers)
        if times is not None:
            self._times[connection_id] = times

    def received(self, connection_id: str) -> list[Any]:
        """Every frame the connection was sent (posts answered 200), in order: JSON documents
        as parsed, plain text as it is."""
        with self._lock:
            return [_json_or_text(data) for data in self._delivered.get(connection_id, [])]

    def raw(self, connection_id: str) -> list[bytes]:
        """Every frame the connection was sent, as the bytes posted."""
        with self._lock:
            return list(self._delivered.get(connection_id, []))

    def _answer_for(self, connection_id: str) -> tuple[int, bytes, dict[str, str]] | None:
        """The answer chosen for this connection, if any (counting down `times`); call locked."""
        if connection_id not in self._answers:
            return None
        answer = self._answers[connection_id]
        if connection_id in self._times:
            self._times[connection_id] -= 1
            if self._times[connection_id] <= 0:
                del self._answers[connection_id], self._times[connection_id]
        return answer

    def _before_get(self, request: Any, **_: Any) -> AWSResponse:
        connection_id = unquote(request.url.rsplit("/@connections/", 1)[1])
        with self._lock:
            self.asked.append(connection_id)
            status, body, headers = self._answer_for(connection_id) or (200, json.dumps({
                "connectedAt": "2026-11-27T12:00:00Z", "lastActiveAt": "2026-11-27T12:00:00Z",
                "identity": {"sourceIp": "127.0.0.1", "userAgent": "test"},
            }).encode(), {})
        return AWSResponse(request.url, status, headers, _RawBody(body))

    def _before_delete(self, request: Any, **_: Any) -> AWSResponse:
        connection_id = unquote(request.url.rsplit("/@connections/", 1)[1])
        with self._lock:
            answer = self._answer_for(connection_id)
            if answer is None:
                self.closed.append(connection_id)
                self._answers[connection_id] = (410, b"", {})  # closed: gone from now on
                answer = (204, b"", {})
        status, body, headers = answer
        return AWSResponse(request.url, status, headers, _RawBody(body))

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        connection_id = unquote(request.url.rsplit("/@connections/", 1)[1])
        with self._lock:  # posts come from a pool of threads
            self.attempts[connection_id] = self.attempts.get(connection_id, 0) + 1
            answer = self._answer_for(connection_id)
            if answer is None:
                self._delivered.setdefault(connection_id, []).append(request.body)
                return None  # moto answers 200
        status, body, headers = answer
        return AWSResponse(request.url, status, headers, _RawBody(body))


def _json_or_text(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        return data.decode("utf-8")
