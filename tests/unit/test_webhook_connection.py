"""The webhook's connection (plugins/webhook_connection.py, the custom resource the template
inlines): on moto, it reads the SSM SecureString and makes, updates and deletes the EventBridge
connection with it as the x-api-key header; it always answers CloudFormation (a failure too,
with a reason), and the key never appears in what it answers."""

from __future__ import annotations

import http.server
import importlib.util
import json
import threading
from typing import Any, Iterator

import boto3
import pytest

from scripts.service_config import ROOT

KEY = "wh-key-7f3a9c0d"


def load_module() -> Any:
    spec = importlib.util.spec_from_file_location("webhook_connection", ROOT / "plugins" / "webhook_connection.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class CloudFormation:
    """The pre-signed ResponseURL: what the custom resource answered, as CloudFormation gets it."""

    def __init__(self) -> None:
        answers = self.answers = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:  # noqa: N802 (http.server's name)
                answers.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/response?signature=x"

    def request(self, kind: str, physical: str | None = None, parameter: str = "/chat/webhook-key") -> dict[str, Any]:
        event = {"RequestType": kind, "ResponseURL": self.url, "StackId": "stack", "RequestId": f"r-{kind}",
                 "LogicalResourceId": "WebhookConnection",
                 "ResourceProperties": {"ServiceToken": "x", "Name": "chat-dev-webhook", "ParameterName": parameter,
                                        "HeaderName": "x-api-key"}}
        if physical is not None:
            event["PhysicalResourceId"] = physical
        return event


@pytest.fixture
def cloudformation(aws: None) -> Iterator[CloudFormation]:
    endpoint = CloudFormation()
    boto3.client("ssm").put_parameter(Name="/chat/webhook-key", Value=KEY, Type="SecureString")
    yield endpoint
    endpoint.server.shutdown()
    endpoint.server.server_close()


def answered(cloudformation: CloudFormation) -> dict[str, Any]:
    (text,) = cloudformation.answers
    cloudformation.answers.clear()
    assert KEY not in text  # the key goes to EventBridge only
    return json.loads(text)


def test_create_update_and_delete_the_connection_with_the_secure_strings_key(cloudformation: CloudFormation) -> None:
    module = load_module()
    events = boto3.client("events")

    module.handler(cloudformation.request("Create"), None)
    created = answered(cloudformation)
    assert created["Status"] == "SUCCESS" and created["PhysicalResourceId"] == "chat-dev-webhook"
    connection = events.describe_connection(Name="chat-dev-webhook")
    assert created["Data"] == {"Arn": connection["ConnectionArn"]}
    assert connection["AuthorizationType"] == "API_KEY"
    assert connection["AuthParameters"]["ApiKeyAuthParameters"]["ApiKeyName"] == "x-api-key"
    assert (created["StackId"], created["RequestId"], created["LogicalResourceId"]) == ("stack", "r-Create", "WebhookConnection")

    boto3.client("ssm").put_parameter(Name="/chat/webhook-key", Value=KEY + "-rotated", Type="SecureString", Overwrite=True)
    module.handler(cloudformation.request("Update", physical="chat-dev-webhook"), None)
    updated = answered(cloudformation)
    assert updated["Status"] == "SUCCESS" and updated["PhysicalResourceId"] == "chat-dev-webhook"

    module.handler(cloudformation.request("Delete", physical="chat-dev-webhook"), None)
    assert answered(cloudformation)["Status"] == "SUCCESS"
    assert "chat-dev-webhook" not in [c["Name"] for c in events.list_connections()["Connections"]]
    module.handler(cloudformation.request("Delete", physical="chat-dev-webhook"), None)  # already gone: fine
    assert answered(cloudformation)["Status"] == "SUCCESS"


def test_a_missing_parameter_fails_the_resource_with_a_reason_and_makes_nothing(cloudformation: CloudFormation) -> None:
    module = load_module()

    module.handler(cloudformation.request("Create", parameter="/chat/no-such-key"), None)

    failed = answered(cloudformation)
    assert failed["Status"] == "FAILED" and "ParameterNotFound" in failed["Reason"]
    assert boto3.client("events").list_connections()["Connections"] == []


def test_the_inline_code_fits_cloudformations_zipfile_limit() -> None:
    # AWS::Lambda::Function Code.ZipFile: "up to 4096 characters" (CloudFormation template reference).
    assert len((ROOT / "plugins" / "webhook_connection.py").read_text()) <= 4096
