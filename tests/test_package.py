"""The real deployment artifact: `sls package` output, checked as CloudFormation would see it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from scripts.service_config import ROOT, SLS

STAGE = "citest"


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run `sls package` once, with no AWS credentials at all, into a temporary folder."""
    out = tmp_path_factory.mktemp("package")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    result = subprocess.run(
        [str(SLS), "package", "--stage", STAGE, "--package", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def template(package_dir: Path) -> dict[str, Any]:
    return json.loads((package_dir / "cloudformation-template-update-stack.json").read_text())


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


def of_type(resources: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [resource for resource in resources.values() if resource["Type"] == resource_type]


def role_statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    role = resources["IamRoleLambdaExecution"]
    return [statement for policy in role["Properties"]["Policies"] for statement in policy["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def test_websocket_routes_are_the_tutorials_four_and_part_2s_two(resources: dict[str, Any]) -> None:
    routes = {r["Properties"]["RouteKey"] for r in of_type(resources, "AWS::ApiGatewayV2::Route")}
    assert routes == {"$connect", "$disconnect", "$default", "sendMessage", "sendDirectMessage", "getRecentMessages"}
    api = of_type(resources, "AWS::ApiGatewayV2::Api")[0]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"


def test_bad_messages_get_an_answer_through_route_responses(resources: dict[str, Any]) -> None:
    routes_with_response = {
        r["Properties"]["RouteKey"]
        for r in of_type(resources, "AWS::ApiGatewayV2::Route")
        if r["Properties"].get("RouteResponseSelectionExpression") == "$default"
    }
    assert routes_with_response == {"$default", "sendMessage", "sendDirectMessage", "getRecentMessages"}
    assert len(of_type(resources, "AWS::ApiGatewayV2::RouteResponse")) == 4


def test_connect_route_uses_the_lambda_request_authorizer(resources: dict[str, Any]) -> None:
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in of_type(resources, "AWS::ApiGatewayV2::Route")}
    assert routes["$connect"]["AuthorizationType"] == "CUSTOM"
    assert all("AuthorizerId" not in p for key, p in routes.items() if key != "$connect")
    (authorizer,) = of_type(resources, "AWS::ApiGatewayV2::Authorizer")
    properties = authorizer["Properties"]
    assert properties["AuthorizerType"] == "REQUEST"
    assert "AuthorizerLambdaFunction" in json.dumps(properties["AuthorizerUri"])
    # No identity source: API Gateway would refuse a request lacking ANY listed source, and the
    # token may come from the query string or the Authorization header.
    assert "IdentitySource" not in properties


def test_ping_is_http_get(resources: dict[str, Any]) -> None:
    (method,) = of_type(resources, "AWS::ApiGateway::Method")
    assert method["Properties"]["HttpMethod"] == "GET"
    (path,) = of_type(resources, "AWS::ApiGateway::Resource")
    assert path["Properties"]["PathPart"] == "ping"


def test_functions_use_a_supported_runtime_and_the_table_name(resources: dict[str, Any]) -> None:
    functions = of_type(resources, "AWS::Lambda::Function")
    handlers = {f["Properties"]["Handler"] for f in functions}
    assert handlers == {
        "handler.ping",
        "handler.connection_manager",
        "handler.default_message",
        "handler.send_message",
        "handler.send_direct_message",
        "handler.get_recent_messages",
        "handler.authorize",
    }
    for function in functions:
        properties = function["Properties"]
        assert properties["Runtime"] in {"python3.13", "python3.14"}
        assert properties["Environment"]["Variables"] == {
            "CONNECTIONS_TABLE": f"serverless-websocket-connections-{STAGE}",
            "MESSAGES_TABLE": f"serverless-websocket-messages-{STAGE}",
            # The parameter's name only: the secret is never in the template.
            "JWT_SECRET_PARAMETER": f"/serverless-websocket/{STAGE}/jwt-secret",
        }


def test_connections_table_is_on_demand_with_ttl(resources: dict[str, Any]) -> None:
    table = resources["ConnectionsTable"]["Properties"]
    assert table["TableName"] == f"serverless-websocket-connections-{STAGE}"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "connection_id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    (index,) = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "user_id-index"
    assert index["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]


def test_messages_table_is_on_demand_with_ttl_keyed_by_conversation_and_time(resources: dict[str, Any]) -> None:
    table = resources["MessagesTable"]["Properties"]
    assert table["TableName"] == f"serverless-websocket-messages-{STAGE}"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "conversation", "KeyType": "HASH"},
        {"AttributeName": "sort_key", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}


def test_dynamodb_grants_are_only_what_the_code_calls_on_these_tables(resources: dict[str, Any]) -> None:
    grants = {
        json.dumps(s["Resource"], sort_keys=True): sorted(actions(s))
        for s in role_statements(resources)
        if any(a.startswith("dynamodb:") for a in actions(s))
    }
    connections = {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}
    user_index = {"Fn::Join": ["/", [connections, "index", "user_id-index"]]}
    messages = {"Fn::GetAtt": ["MessagesTable", "Arn"]}
    assert grants == {
        json.dumps(connections, sort_keys=True): ["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan"],
        json.dumps(user_index, sort_keys=True): ["dynamodb:Query"],
        json.dumps(messages, sort_keys=True): ["dynamodb:PutItem", "dynamodb:Query"],
    }


def test_ssm_grant_is_get_parameter_on_the_secret_only(resources: dict[str, Any]) -> None:
    grants = [s for s in role_statements(resources) if any(a.startswith(("ssm:", "kms:")) for a in actions(s))]
    assert len(grants) == 1 and actions(grants[0]) == ["ssm:GetParameter"]
    parts = grants[0]["Resource"]["Fn::Join"][1]
    assert parts[-1] == f":parameter/serverless-websocket/{STAGE}/jwt-secret"


def test_manage_connections_is_scoped_to_this_api_and_stage(resources: dict[str, Any]) -> None:
    grants = [s for s in role_statements(resources) if "execute-api:ManageConnections" in actions(s)]
    assert len(grants) == 1, "the framework's account-wide grant must be removed"
    parts = grants[0]["Resource"]["Fn::Join"][1]
    assert {"Ref": "WebsocketsApi"} in parts
    assert parts[-1] == f"/{STAGE}/POST/@connections/*"


def test_no_statement_grants_a_wildcard_resource(template: dict[str, Any], resources: dict[str, Any]) -> None:
    for statement in role_statements(resources):
        if any(a.startswith("logs:") for a in actions(statement)):
            continue  # the framework's own log-group grant, scoped to this service's log groups
        text = json.dumps(statement["Resource"])
        assert text != '"*"' and "*:*:*" not in text, statement
        assert all(not a.endswith(":*") for a in actions(statement)), statement


def test_cfn_lint_reports_no_errors(package_dir: Path) -> None:
    result = subprocess.run(
        [shutil.which("cfn-lint") or "cfn-lint", "--format", "parseable", str(package_dir / "cloudformation-template-update-stack.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # cfn-lint exits with a bit mask: 2 = errors, 4 = warnings, 8 = informational.
    assert result.returncode & 2 == 0 and result.returncode & 1 == 0, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert errors == []


def test_zip_holds_handler_and_pyjwt_but_no_aws_sdk(package_dir: Path) -> None:
    archive = package_dir / "serverless-websocket.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert "handler.py" in names
    assert "jwt/__init__.py" in names and "jwt/api_jwt.py" in names
    assert not [n for n in names if n.split("/")[0] in {"boto3", "botocore", "s3transfer", "urllib3"}]
    assert not [n for n in names if n.startswith(("tests/", "node_modules/", "scripts/", ".venv/")) or "Pipfile" in n]
    # handler.py is about 10 KB zipped, PyJWT (slim: no dist-info, no caches) under 30 KB.
    assert archive.stat().st_size < 48 * 1024
    packaged = zipfile.ZipFile(archive).read("handler.py")
    assert packaged == (ROOT / "handler.py").read_bytes()
