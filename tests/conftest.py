"""Fixtures: moto in-process AWS, the connections table from serverless.yml, and a
management API whose per-connection answers a test can choose."""

from __future__ import annotations

import json
from typing import Any, Iterator
from urllib.parse import unquote

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from scripts import service_config
from tests.events import MANAGEMENT_ENDPOINT, REGION, connect_event

# Logical id in serverless.yml -> (environment variable the handler reads, name used here).
TEST_TABLES = {
    "ConnectionsTable": ("CONNECTIONS_TABLE", "connections-under-test"),
    "MessagesTable": ("MESSAGES_TABLE", "messages-under-test"),
}
SECRET_PARAMETER = "/serverless-websocket/test/jwt-secret"


@pytest.fixture(scope="session")
def service_tables() -> dict[str, dict[str, Any]]:
    """The table definitions that `sls deploy` would create."""
    return service_config.table_resources(service_config.resolved_config("test"))


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
    from moto import mock_aws

    with mock_aws():
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
    """The messages (history) table."""
    return tables["MessagesTable"]


@pytest.fixture
def jwt_secret(aws: None, monkeypatch: pytest.MonkeyPatch) -> str:
    """A SecureString secret in moto's SSM, where the authorizer reads it."""
    secret = "test-secret-" + "x" * 60
    boto3.client("ssm").put_parameter(Name=SECRET_PARAMETER, Value=secret, Type="SecureString")
    monkeypatch.setenv("JWT_SECRET_PARAMETER", SECRET_PARAMETER)
    return secret


def _clear_caches(module: Any) -> None:
    for cached in (module.connections_table, module.messages_table, module.management_client, module.ssm_client, module._read_secret):
        cached.cache_clear()


@pytest.fixture
def handler(tables: dict[str, Any]) -> Iterator[Any]:
    """The handler module, imported only once the mock is running, with cold caches."""
    import handler as module

    _clear_caches(module)
    yield module
    _clear_caches(module)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch, handler: Any) -> list[float]:
    """The handler's clock, one millisecond further at every reading, so message order is
    known; a test may move it (now[0] += seconds)."""
    now = [1_764_000_000.000]

    def tick() -> float:
        now[0] += 0.001
        return now[0]

    monkeypatch.setattr(handler.time, "time", tick)
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


class _RawBody:
    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._body


class ManagementApi:
    """The mocked @connections API as the handler's client sees it.

    moto records what each connection received; `answer` makes chosen connections answer
    with a given HTTP status instead, at the wire level, as API Gateway or
    serverless-offline would.
    """

    def __init__(self, client: Any) -> None:
        from moto.apigatewaymanagementapi.models import apigatewaymanagementapi_backends
        from moto.core import DEFAULT_ACCOUNT_ID

        self._backend = apigatewaymanagementapi_backends[DEFAULT_ACCOUNT_ID][REGION]
        self._answers: dict[str, tuple[int, bytes, dict[str, str]]] = {}
        self.attempts: dict[str, int] = {}
        client.meta.events.register_first("before-send.apigatewaymanagementapi.PostToConnection", self._before_send)

    def answer(self, connection_id: str, status: int, error_code: str | None = None) -> None:
        """Make posts to this connection fail; no error_code means an empty body."""
        headers = {"x-amzn-ErrorType": error_code} if error_code else {}
        body = json.dumps({"message": f"{error_code} from test"}).encode() if error_code else b""
        self._answers[connection_id] = (status, body, headers)

    def received(self, connection_id: str) -> list[Any]:
        """Every JSON document posted to the connection, in order."""
        connection = self._backend.connections.get(connection_id)
        data = connection.data.decode("utf-8") if connection else ""
        decoder, documents, position = json.JSONDecoder(), [], 0
        while position < len(data):
            document, position = decoder.raw_decode(data, position)
            documents.append(document)
        return documents

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        connection_id = unquote(request.url.rsplit("/@connections/", 1)[1])
        self.attempts[connection_id] = self.attempts.get(connection_id, 0) + 1
        if connection_id not in self._answers:
            return None
        status, body, headers = self._answers[connection_id]
        return AWSResponse(request.url, status, headers, _RawBody(body))


@pytest.fixture
def management(handler: Any) -> ManagementApi:
    return ManagementApi(handler.management_client(MANAGEMENT_ENDPOINT))


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
    """The stack `make offline` runs, on free ports, stopped when the session ends."""
    from scripts.local_stack import LocalStack, Ports

    log_dir = tmp_path_factory.mktemp("local-stack")
    with (log_dir / "serverless-offline.log").open("w") as output:
        stack = LocalStack(Ports.free(), output=output, log_dir=log_dir)
        with stack:
            yield stack


@pytest.fixture
def connections(local_stack: Any) -> Any:
    """The local connections table, read through moto server."""
    return local_stack.dynamodb().Table(local_stack.table_names["ConnectionsTable"])
