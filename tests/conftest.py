"""Fixtures shared by the tiers: moto in-process AWS with the tables and queues of serverless.yml,
the handler with cold caches, clocks, and the fakes of tests/support (a management API whose
per-connection answers a test chooses, Lambda's SQS event source). The end-to-end tier's own
fixtures (the local stack, browsers) are in tests/e2e/conftest.py."""

from __future__ import annotations

import copy
import functools
import importlib
import pkgutil
import signal
import sys
import time
from typing import Any, Iterator

import boto3
import botocore.loaders
import botocore.session
import pytest

from chat import delivery, ratelimit, verifier
from scripts import moto_fixes, service_config
from tests.support.events import MANAGEMENT_ENDPOINT, REGION, connect_event
from tests.support.lambda_sqs import EventSourceMapping, SqsClock
from tests.support.management_api import ManagementApi

# The order tests are handed to pytest-xdist's workers in, a test file at a time (`make test`:
# --dist loadfile --no-loadscope-reorder; xdist's own order is by tests a file, most first, which
# put the unit tier's many short files first and left the end-to-end tier's few long ones, the
# load tests among them, for the end, one or two workers busy while the others idled). Long files
# first, short ones last, where they even out the workers' ends.
TIER_ORDER = ("e2e", "build", "unit")


def pytest_configure(config: pytest.Config) -> None:
    """A TERM (a CI timeout, a kill of `make test`'s process group) ends the run as Ctrl-C does,
    in pytest and in each xdist worker: fixtures are torn down, so the local stacks, each in a
    session of its own that the signal does not reach, are stopped rather than left running."""
    signal.signal(signal.SIGTERM, _interrupted)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The end-to-end tier first, then the build tier, then the unit tier; within a tier as
    collected (every worker sorts alike: xdist requires one collection order)."""
    def tier(item: pytest.Item) -> int:
        parts = item.nodeid.split("/")
        return TIER_ORDER.index(parts[1]) if len(parts) > 2 and parts[1] in TIER_ORDER else len(TIER_ORDER)

    items.sort(key=tier)


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


# moto's DynamoDB with the service's tables, empty, as the first test of this process made them.
_EMPTY_TABLES: list[Any] = []


@pytest.fixture
def tables(aws: None, service_tables: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The service's tables, empty. The first test of a process creates them as `make offline`
    does (scripts/service_config.py); the others get a copy of moto's DynamoDB as it was then:
    0.3 ms, not the 30 ms of 18 calls, in each of a thousand tests."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    if _EMPTY_TABLES:
        dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION] = copy.deepcopy(_EMPTY_TABLES[0])
    else:
        client = boto3.client("dynamodb")
        for logical_id, (_, name) in TEST_TABLES.items():
            service_config.create_table(client, service_tables[logical_id], name)
        _EMPTY_TABLES.append(copy.deepcopy(dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]))
    resource = boto3.resource("dynamodb")
    created = {}
    for logical_id, (variable, name) in TEST_TABLES.items():
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


    for module_info in pkgutil.iter_modules(chat.__path__):
        module = importlib.import_module(f"chat.{module_info.name}")
        for value in vars(module).values():
            if callable(getattr(value, "cache_clear", None)):
                value.cache_clear()
    verifier._secrets.clear()
    from chat import fanout

    fanout._backlog.clear()


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

    from chat import fanout
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
    monkeypatch.setattr(fanout, "retry_delay_seconds", lambda attempt: 0)
    # Most tests send more than one user's burst (and connect more often than one user's burst of
    # connects) under a frozen or slow clock: the limits are off unless a test asks for them (the
    # `limited` fixture).
    monkeypatch.setattr(ratelimit, "MESSAGE_RATE_PER_SECOND", 0.0)
    monkeypatch.setattr(ratelimit, "CONNECT_RATE_PER_SECOND", 0.0)
    yield module
    _clear_caches()


@pytest.fixture
def limited(handler: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The handler with the limits of serverless.yml's defaults (5 frames a second, 10 at once,
    per connection's worth, twice that per user; 1 connect a second, 10 at once, per user)."""
    monkeypatch.setattr(ratelimit, "MESSAGE_RATE_PER_SECOND", 5.0)
    monkeypatch.setattr(ratelimit, "MESSAGE_BURST", 10)
    monkeypatch.setattr(ratelimit, "CONNECT_RATE_PER_SECOND", 1.0)
    monkeypatch.setattr(ratelimit, "CONNECT_BURST", 10)
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


