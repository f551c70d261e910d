"""Fixtures: moto in-process AWS, the connections table from serverless.yml, and a
management API whose per-connection answers a test can choose."""

from __future__ import annotations

import copy
import functools
import importlib
import json
import pkgutil
import sys
import threading
import time
from typing import Any, Iterator
from urllib.parse import unquote

import boto3
import botocore.loaders
import botocore.session
import pytest
from botocore.awsrequest import AWSResponse

from scripts import moto_fixes, service_config
from chat import delivery, fanout, ratelimit
from tests.events import MANAGEMENT_ENDPOINT, REGION, connect_event
from tests.helpers import queue_depth

# Logical id in serverless.yml -> (environment variable the handler reads, name used here).
TEST_TABLES = {
    "ConnectionsTable": ("CONNECTIONS_TABLE", "connections-under-test"),
    "MembersTable": ("MEMBERS_TABLE", "members-under-test"),
    "HistoryTable": ("HISTORY_TABLE", "history-under-test"),
    "ConversationsTable": ("CONVERSATIONS_TABLE", "conversations-under-test"),
    "LimitsTable": ("LIMITS_TABLE", "limits-under-test"),
    "PresenceTable": ("PRESENCE_TABLE", "presence-under-test"),
}
SECRET_PARAMETER = "/serverless-websocket/test/jwt-secret"
# The local stack's sweeper schedule in the end-to-end tests.
SWEEP_SECONDS = 5
# botocore's service models, read from disk once for the whole run: each mock_aws() starts with
# no boto3 default session, and a new session would parse them again (about 0.1 s a test).
_MODELS = botocore.loaders.create_loader()


@functools.cache
def _resolved_test_config() -> dict[str, Any]:
    """`sls print` for the test stage, once per process (it takes about 2 s of node). Two session
    fixtures read it, and mutation testing (`make mutate`) runs a pytest session per mutant in
    processes forked from one that already has it."""
    return service_config.resolved_config("test")


@pytest.fixture(scope="session")
def service_tables() -> dict[str, dict[str, Any]]:
    """The table definitions that `sls deploy` would create."""
    return service_config.table_resources(copy.deepcopy(_resolved_test_config()))


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials, so nothing here can reach a real AWS account."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "IS_OFFLINE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def aws(aws_credentials: None) -> Iterator[None]:
    """moto in this process, with its DynamoDB made atomic as DynamoDB is (scripts/moto_fixes.py)."""
    from moto import mock_aws

    moto_fixes.apply()
    with mock_aws():
        session = botocore.session.get_session()
        session.register_component("data_loader", _MODELS)
        boto3.setup_default_session(botocore_session=session)
        yield


@pytest.fixture
def tables(aws: None, service_tables: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    client, resource = boto3.client("dynamodb"), boto3.resource("dynamodb")
    created = {}
    for logical_id, (variable, name) in TEST_TABLES.items():
        service_config.create_table(client, service_tables[logical_id], name)
        monkeypatch.setenv(variable, name)
        created[logical_id] = resource.Table(name)
    return created


@pytest.fixture
def table(tables: dict[str, Any]) -> Any:
    """The connections table."""
    return tables["ConnectionsTable"]


@pytest.fixture
def messages(tables: dict[str, Any]) -> Any:
    """The history table: every stored message, by conversation and seq."""
    return tables["HistoryTable"]


@pytest.fixture
def jwt_secret(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SecureString secret in moto's SSM, where the authorizer reads it."""
    secret = "test-secret-" + "x" * 60
    boto3.client("ssm").put_parameter(Name=SECRET_PARAMETER, Value=secret, Type="SecureString")
    monkeypatch.setenv("JWT_SECRET_PARAMETER", SECRET_PARAMETER)
    return secret


def _clear_caches() -> None:
    """Forget every client, table, queue URL, pacer and secret the package cached (each is made
    once per Lambda container), so each test starts cold on its own mock."""
    import chat
    from chat import tokens

    for module_info in pkgutil.iter_modules(chat.__path__):
        module = importlib.import_module(f"chat.{module_info.name}")
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
    tokens._secrets.clear()


@pytest.fixture(scope="session")
def service_config_test() -> dict[str, Any]:
    return copy.deepcopy(_resolved_test_config())


@pytest.fixture
def queues(aws: None, service_config_test: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The delivery queue and its DLQ, as serverless.yml declares them; logical id -> URL."""
    urls = service_config.create_queues(boto3.client("sqs"), service_config_test)
    name = service_config_test["provider"]["environment"]["DELIVERY_QUEUE_NAME"]
    monkeypatch.setenv("DELIVERY_QUEUE_NAME", name)
    return urls


@pytest.fixture
def handler(tables: dict[str, Any], queues: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The handler module, imported only once the mock is running, with cold caches. Delays
    of retries and throttling backoff (the handler's and botocore's) are zero, so tests do not
    wait for them."""
    import handler as module
    from botocore.retries import standard

    from chat import worker
    from chat.telemetry import logger, metrics

    _clear_caches()
    # Metrics a test added outside an invocation (a module called directly) are not flushed by
    # any handler: without this they would land in the next test's first flush.
    metrics.clear_metrics()
    # Not setStream(): it flushes the stream it replaces, which a pytest session earlier in this
    # process (mutmut runs several) may have closed when the logger was made.
    logger.logger_handler.stream = _CurrentStdout()
    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0)  # botocore's own
    monkeypatch.setattr(delivery, "backoff", lambda attempt: 0.0)
    monkeypatch.setattr(worker, "retry_delay_seconds", lambda attempt: 0)
    # Most tests send more than one user's burst under a frozen or slow clock: the rate limit
    # is off unless a test asks for it (the `limited` fixture).
    monkeypatch.setattr(ratelimit, "MESSAGE_RATE_PER_SECOND", 0.0)
    yield module
    _clear_caches()


@pytest.fixture
def limited(handler: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The handler with the rate limit of serverless.yml's defaults (5 a second, 10 at once,
    per connection's worth; twice that per user)."""
    monkeypatch.setattr(ratelimit, "MESSAGE_RATE_PER_SECOND", 5.0)
    monkeypatch.setattr(ratelimit, "MESSAGE_BURST", 10)
    return handler


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, handler: Any) -> list[float]:
    """The handler's clock, one millisecond further at every reading, so message order is
    known; a test may move it (now[0] += seconds)."""
    now = [1_764_000_000.000]

    def tick() -> float:
        now[0] += 0.001
        return now[0]

    monkeypatch.setattr(time, "time", tick)
    return now


@pytest.fixture
def frozen_clock(handler: Any, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The handler's clock, standing still until a test moves it (now[0] += seconds)."""
    now = [1_764_000_000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    return now


@pytest.fixture
def aws_failure() -> Iterator[Any]:
    """Make one operation of one boto3 client raise, as a network, SDK or service failure would.

    The exception is raised in `before-call`, before botocore's retry loop, so a test does
    not wait for retries; the handler sees exactly what botocore would finally raise.
    """
    registered: list[tuple[Any, str, Any]] = []

    def fail(client: Any, operation: str, error: Exception) -> None:
        def raise_error(**_: Any) -> None:
            raise error

        event = f"before-call.{client.meta.service_model.service_id.hyphenize()}.{operation}"
        client.meta.events.register_first(event, raise_error)
        registered.append((client, event, raise_error))

    yield fail
    for client, event, raise_error in registered:
        client.meta.events.unregister(event, raise_error)


class _CurrentStdout:
    """Whatever sys.stdout is at the moment of writing: Powertools' log handler keeps the stream
    it was made with, and pytest's capsys replaces sys.stdout for each test."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


class FakeLambdaContext:
    """What the worker reads of its context: the time left, running down in real time from
    `remaining_ms` as Lambda's does (so a worker that overruns its invocation shows it)."""

    def __init__(self, remaining_ms: int = 60_000) -> None:
        self.remaining_ms = remaining_ms
        self._started = time.monotonic()

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms - int((time.monotonic() - self._started) * 1000)


class EventSourceMapping:
    """Lambda's SQS event source mapping, on moto's queue: receive up to `batch_size`
    messages, invoke the worker with them, delete the ones it did not report as failed. A
    failed one stays where SQS leaves it: invisible for the queue's visibility timeout (360 s,
    from serverless.yml), unless the worker itself makes it visible. moto's SQS clock is
    `sqs_clock`: `advance(seconds)` moves it, so a test sees that wait without sleeping; moto's
    redrive policy moves a record to the DLQ after maxReceiveCount receives."""

    def __init__(self, handler: Any, urls: dict[str, str], clock: SqsClock, batch_size: int = 5) -> None:
        self.handler = handler
        self.sqs = boto3.client("sqs")
        self.queue = urls["DeliveryQueue"]
        self.dead_letters = urls["DeliveryDeadLetterQueue"]
        self.batch_size = batch_size
        self.clock = clock
        self.invocations: list[dict[str, Any]] = []

    def advance(self, seconds: float) -> None:
        """Let this much time pass for SQS (visibility timeouts, delays)."""
        self.clock.offset += seconds

    def send_raw(self, body: str) -> None:
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=body)

    def pending_jobs(self) -> list[Any]:
        """The jobs waiting in the queue, read without taking them."""
        messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
        jobs = []
        while messages.get("Messages"):
            jobs += [fanout.DeliveryJob.from_body(m["Body"]) for m in messages["Messages"]]
            for message in messages["Messages"]:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            messages = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10, VisibilityTimeout=0)
        for job in jobs:
            self.sqs.send_message(QueueUrl=self.queue, MessageBody=job.to_body())
        return jobs

    def drain(self, context: FakeLambdaContext | None = None, max_invocations: int = 500) -> None:
        for _ in range(max_invocations):
            received = self.sqs.receive_message(
                QueueUrl=self.queue, MaxNumberOfMessages=self.batch_size, AttributeNames=["All"], MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not received:
                return
            event = {"Records": [self._record(message) for message in received]}
            response = self.handler.deliver_messages(event, context or FakeLambdaContext())
            self.invocations.append(response)
            failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
            for message in received:
                if message["MessageId"] not in failed:
                    self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
        raise AssertionError("the delivery queue did not drain")

    def count(self, url: str) -> int:
        return queue_depth(self.sqs, url)

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:delivery",
            "awsRegion": REGION,
        }


class SqsClock:
    """moto's SQS clock (visibility timeouts, delays, retention): real time plus `offset`."""

    def __init__(self) -> None:
        self.offset = 0.0

    def unix_time(self, dt: Any = None) -> float:
        return _moto_unix_time(dt) + (0.0 if dt is not None else self.offset)

    def unix_time_millis(self, dt: Any = None) -> float:
        return self.unix_time(dt) * 1000.0


def _moto_unix_time(dt: Any = None) -> float:
    from moto.core.utils import unix_time

    return unix_time(dt)


@pytest.fixture
def sqs_clock(aws: None, monkeypatch: pytest.MonkeyPatch) -> SqsClock:
    from moto.sqs import models

    clock = SqsClock()
    monkeypatch.setattr(models, "unix_time", clock.unix_time)
    monkeypatch.setattr(models, "unix_time_millis", clock.unix_time_millis)
    return clock


@pytest.fixture
def workers(handler: Any, queues: dict[str, str], sqs_clock: SqsClock) -> EventSourceMapping:
    return EventSourceMapping(handler, queues, sqs_clock)


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


@pytest.fixture
def management(handler: Any) -> ManagementApi:
    return ManagementApi(delivery.management_client(MANAGEMENT_ENDPOINT))


@pytest.fixture
def connect(handler: Any) -> Any:
    """Open connections through the real $connect handler."""

    def _connect(*connection_ids: str, user: str | None = None) -> None:
        for connection_id in connection_ids:
            assert handler.connection_manager(connect_event(connection_id, user), None)["statusCode"] == 200

    return _connect


# --- the local stack (serverless-offline + moto server), for end-to-end tests ---------------


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


@pytest.fixture
def connections(local_stack: Any) -> Any:
    """The local connections table, read through moto server."""
    return local_stack.dynamodb().Table(local_stack.table_names["ConnectionsTable"])


@pytest.fixture
def pages() -> Iterator[Any]:
    """Open chat pages, each in a browser of its own (`faults=True`: with tests/websocket_faults.js
    installed before the page's scripts); all closed at the end."""
    from scripts import browser
    from scripts.browser import ChatPage
    from tests.browser_support import install_faults, require_browser

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
