"""The real deployment artifact: `sls package` output, checked as CloudFormation would see it."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.service_config import ROOT, SLS

# Each package is made in a copy of the service of its own (service_copy): one at a time or side
# by side (pytest -n with --dist load), never in the project folder the local stacks use.

STAGE = "citest"


# What `sls package` reads: the service, its plugins, its dependencies' lock files.
SERVICE_FILES = ("serverless.yml", "handler.py", "package.json", "package-lock.json", "Pipfile", "Pipfile.lock", ".npmrc")
SERVICE_DIRS = ("chat", "plugins")
# The installed tools, and serverless-python-requirements' cache of downloaded wheels (custom.
# pythonRequirements.cacheLocation: filled once, not once per copy; one package at a time uses it).
SHARED_DIRS = ("node_modules", ".venv", ".tools", ".serverless-requirements-cache")


def service_copy(folder: Path) -> Path:
    """The service copied into a folder of its own, to package there: `sls package` writes
    .serverless/ and serverless-python-requirements' files beside serverless.yml, and so does the
    serverless-offline of a local stack that the end-to-end tests run in the project folder at
    the same time (both in one folder, a package read a zip the other was writing: "Corrupted
    zip"). The installed tools are shared, by symbolic link."""
    root = folder / "service"
    root.mkdir(parents=True)
    for name in SERVICE_FILES:
        shutil.copy2(ROOT / name, root / name)
    for name in SERVICE_DIRS:
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (ROOT / ".serverless-requirements-cache").mkdir(exist_ok=True)
    for name in SHARED_DIRS:
        (root / name).symlink_to(ROOT / name)
    return root


def sls_package(out: Path, service: Path, *params: str) -> subprocess.CompletedProcess:
    """`sls package` of the service copy into `out`, with no AWS credentials at all. Two may run
    at once (two workers); the first to find the wheel cache empty fills it alone, under a lock,
    the others wait for it and then only read it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    options = [option for param in params for option in ("--param", param)]
    command = [str(SLS), "package", "--stage", STAGE, "--package", str(out), *options]
    cache = ROOT / ".serverless-requirements-cache"
    with (ROOT / ".serverless-requirements-cache.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if any(cache.glob("*_slspyc")):
            fcntl.flock(lock, fcntl.LOCK_UN)  # filled: read by any number at once
        return subprocess.run(command, cwd=service, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run `sls package` once, with no AWS credentials at all, into a temporary folder."""
    out = tmp_path_factory.mktemp("package")
    result = sls_package(out, service_copy(tmp_path_factory.mktemp("service")))
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


def our_functions(resources: dict[str, Any]) -> list[dict[str, Any]]:
    """The functions of handler.py (not the framework's custom-resource function)."""
    return [f for f in of_type(resources, "AWS::Lambda::Function") if f["Properties"]["Handler"].startswith("handler.")]


def role_statements(resources: dict[str, Any]) -> list[dict[str, Any]]:
    role = resources["IamRoleLambdaExecution"]
    return [statement for policy in role["Properties"]["Policies"] for statement in policy["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action


def test_websocket_routes_are_the_tutorials_four_part_2s_two_and_the_channels(resources: dict[str, Any]) -> None:
    routes = {r["Properties"]["RouteKey"] for r in of_type(resources, "AWS::ApiGatewayV2::Route")}
    assert routes == {
        "$connect", "$disconnect", "$default", "sendMessage", "sendDirectMessage", "getRecentMessages", "join", "leave", "heartbeat",
        "getPresence", "renewToken", "getConversations", "editMessage", "deleteMessage", "ban", "unban", "markRead", "typing",
    }
    api = of_type(resources, "AWS::ApiGatewayV2::Api")[0]["Properties"]
    assert api["ProtocolType"] == "WEBSOCKET"
    assert api["RouteSelectionExpression"] == "$request.body.action"


def test_bad_messages_get_an_answer_through_route_responses(resources: dict[str, Any]) -> None:
    routes_with_response = {
        r["Properties"]["RouteKey"]
        for r in of_type(resources, "AWS::ApiGatewayV2::Route")
        if r["Properties"].get("RouteResponseSelectionExpression") == "$default"
    }
    assert routes_with_response == {
        "$default", "sendMessage", "sendDirectMessage", "getRecentMessages", "join", "leave", "getPresence", "renewToken",
        "getConversations", "editMessage", "deleteMessage", "ban", "unban", "markRead", "typing",
    }
    assert len(of_type(resources, "AWS::ApiGatewayV2::RouteResponse")) == 15


def test_the_heartbeat_is_a_mock_route_with_no_lambda_and_no_reply_in_the_deployment(resources: dict[str, Any]) -> None:
    route = resources["HeartbeatWebsocketsRoute"]["Properties"]
    assert route["RouteKey"] == "heartbeat" and "RouteResponseSelectionExpression" not in route
    assert route["Target"] == {"Fn::Join": ["/", ["integrations", {"Ref": "HeartbeatIntegration"}]]}
    integration = resources["HeartbeatIntegration"]["Properties"]
    assert integration["IntegrationType"] == "MOCK" and integration["RequestTemplates"] == {"$default": '{"statusCode": 200}'}
    assert not [r for r in of_type(resources, "AWS::ApiGatewayV2::RouteResponse") if "Heartbeat" in json.dumps(r)]
    (deployment,) = of_type(resources, "AWS::ApiGatewayV2::Deployment")
    assert "HeartbeatWebsocketsRoute" in deployment["DependsOn"]


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
    methods = {m["Properties"]["HttpMethod"]: m["Properties"] for m in of_type(resources, "AWS::ApiGateway::Method")}
    assert set(methods) == {"GET", "POST"}  # GET /ping, POST /publish and /moderate
    paths = {p["Properties"]["PathPart"] for p in of_type(resources, "AWS::ApiGateway::Resource")}
    assert paths == {"ping", "publish", "moderate"}


def test_functions_use_a_supported_runtime_and_the_table_name(resources: dict[str, Any]) -> None:
    functions = our_functions(resources)
    handlers = {f["Properties"]["Handler"] for f in functions}
    assert handlers == {
        "handler.ping",
        "handler.connection_manager",
        "handler.default_message",
        "handler.send_message",
        "handler.send_direct_message",
        "handler.edit_message",
        "handler.delete_message",
        "handler.ban",
        "handler.unban",
        "handler.get_recent_messages",
        "handler.join",
        "handler.leave",
        "handler.get_presence",
        "handler.get_conversations", "handler.mark_read", "handler.typing",
        "handler.renew_token",
        "handler.sweep",
        "handler.publish",
        "handler.moderate",
        "handler.publish_events",
        "handler.authorize",
        "handler.deliver_messages",
    }
    for function in functions:
        properties = function["Properties"]
        assert properties["Runtime"] in {"python3.13", "python3.14"}
        assert properties["Environment"]["Variables"] == {
            "CONNECTIONS_TABLE": f"serverless-websocket-connections-{STAGE}",
            "MEMBERS_TABLE": f"serverless-websocket-members-{STAGE}",
            "HISTORY_TABLE": f"serverless-websocket-history-{STAGE}",
            "CONVERSATIONS_TABLE": f"serverless-websocket-conversations-{STAGE}",
            "LIMITS_TABLE": f"serverless-websocket-limits-{STAGE}",
            "PRESENCE_TABLE": f"serverless-websocket-presence-{STAGE}",
            "SWEEP_BUCKET_SECONDS": "60",
            "GHOST_CHECK_MINUTES": "60",
            "SWEEP_CALLS_PER_SECOND": "100",
            "PRESENCE_EVENTS_MAX_USERS": "100",
            # The parameter's name only: the secret is never in the template.
            "JWT_SECRET_PARAMETER": f"/serverless-websocket/{STAGE}/jwt-secret",
            "DELIVERY_QUEUE_NAME": f"serverless-websocket-delivery-{STAGE}",
            "FANOUT_THRESHOLD": "10",
            "POSTING_BUDGET_PER_SECOND": "2500",
            "DELIVERY_CONCURRENCY": "5",
            "ROUNDS_PER_SECOND": "4",
            "MESSAGE_RATE_PER_SECOND": "5",
            "MESSAGE_BURST": "10",
            "MAX_CONNECTIONS_PER_USER": "5",
            "CONNECT_RATE_PER_SECOND": "1",
            "CONNECT_BURST": "10",
            "TOKEN_ISSUERS": "[]",
            "WEBSOCKET_API_ENDPOINT": API_ENDPOINT,
            "EVENT_BUS_NAME": {"Ref": "EventBus"},
            "POWERTOOLS_SERVICE_NAME": f"serverless-websocket-{STAGE}",
            "POWERTOOLS_METRICS_NAMESPACE": "ServerlessWebsocket",
            "REVIEW_FUNCTION": "",
            "REVIEW_TIMEOUT_MS": "1000",
            "REVIEW_FALLBACK": "allow",
        }


# The API's own endpoint, right behind a custom domain and in every partition.
API_ENDPOINT = {
    "Fn::Join": [
        "",
        ["https://", {"Ref": "WebsocketsApi"}, ".execute-api.", {"Ref": "AWS::Region"}, ".", {"Ref": "AWS::URLSuffix"}, f"/{STAGE}"],
    ]
}


def test_memory_follows_the_work_small_paths_small_posting_paths_with_cpu(resources: dict[str, Any]) -> None:
    memory = {f["Properties"]["Handler"]: f["Properties"]["MemorySize"] for f in our_functions(resources)}
    assert memory["handler.deliver_messages"] == 1769  # one full vCPU: posting is CPU-bound
    assert memory["handler.send_message"] == 1024  # reads the room's ids, posts to small rooms
    for small in ("handler.authorize", "handler.connection_manager", "handler.default_message", "handler.ping"):
        assert memory[small] == 256


def test_every_function_has_the_powertools_layer_of_the_pipfiles_version(template: dict[str, Any], resources: dict[str, Any]) -> None:
    pinned = tomllib.loads((ROOT / "Pipfile").read_text())["packages"]["aws-lambda-powertools"].strip("=")
    # AWS's public parameter for that version, read through a template parameter of type
    # AWS::SSM::Parameter::Value<String>: CloudFormation's dynamic references ({{resolve:ssm:...}})
    # do not support public parameters.
    assert template["Parameters"]["PowertoolsLayerArn"]["Type"] == "AWS::SSM::Parameter::Value<String>"
    assert template["Parameters"]["PowertoolsLayerArn"]["Default"] == f"/aws/service/powertools/python/arm64/python3.13/{pinned}"
    assert "{{resolve:" not in json.dumps(template)
    for function in our_functions(resources):
        assert function["Properties"]["Layers"] == [{"Ref": "PowertoolsLayerArn"}]
        assert function["Properties"]["Architectures"] == ["arm64"] and function["Properties"]["Runtime"] == "python3.13"


def test_the_delivery_queue_has_a_dead_letter_queue_and_a_visibility_of_six_worker_timeouts(
    resources: dict[str, Any],
) -> None:
    queue = resources["DeliveryQueue"]["Properties"]
    dead_letters = resources["DeliveryDeadLetterQueue"]["Properties"]
    (worker,) = [f for f in of_type(resources, "AWS::Lambda::Function") if f["Properties"]["Handler"] == "handler.deliver_messages"]
    assert queue["QueueName"] == f"serverless-websocket-delivery-{STAGE}"
    assert queue["VisibilityTimeout"] >= 6 * worker["Properties"]["Timeout"]
    assert queue["RedrivePolicy"] == {"deadLetterTargetArn": {"Fn::GetAtt": ["DeliveryDeadLetterQueue", "Arn"]}, "maxReceiveCount": 5}
    assert dead_letters["QueueName"] == f"serverless-websocket-delivery-dlq-{STAGE}"
    assert dead_letters["MessageRetentionPeriod"] == 14 * 24 * 3600  # the longest SQS keeps a message
    assert queue["SqsManagedSseEnabled"] is True and dead_letters["SqsManagedSseEnabled"] is True


def test_the_worker_reads_the_queue_reporting_partial_failures_within_the_posting_budget(
    resources: dict[str, Any],
) -> None:
    (mapping,) = [m for m in of_type(resources, "AWS::Lambda::EventSourceMapping")
                  if m["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["DeliveryQueue", "Arn"]}]
    properties = mapping["Properties"]
    assert properties["FunctionName"] == {"Fn::GetAtt": ["DeliveryWorkerLambdaFunction", "Arn"]}
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["BatchSize"] == 5 and properties["MaximumBatchingWindowInSeconds"] == 0
    environment = resources["DeliveryWorkerLambdaFunction"]["Properties"]["Environment"]["Variables"]
    concurrency = properties["ScalingConfig"]["MaximumConcurrency"]
    assert concurrency == int(environment["DELIVERY_CONCURRENCY"]) and 2 <= concurrency <= 1000
    # The pace the worker's own code takes from this environment: at most `concurrency` of them
    # run at once, and together they stay within the budget, itself below the account's 10,000/s.
    budget = float(environment["POSTING_BUDGET_PER_SECOND"])
    assert concurrency * worker_posts_per_second(environment) <= budget * 1.000001 and budget < 10_000


def worker_posts_per_second(environment: dict[str, Any]) -> float:
    """The rate a delivery worker paces itself to, imported afresh with this environment."""
    script = "from chat import worker; print(1 / worker.worker_pacer().interval)"
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, **{name: value for name, value in environment.items() if isinstance(value, str)}},
    )
    assert result.returncode == 0, result.stderr
    return float(result.stdout)


def test_sqs_grants_are_on_the_delivery_queue_and_the_events_failure_queue_only(resources: dict[str, Any]) -> None:
    grants = {
        tuple(sorted(actions(s))): s["Resource"]
        for s in role_statements(resources)
        if any(a.startswith("sqs:") for a in actions(s))
    }
    queue = {"Fn::GetAtt": ["DeliveryQueue", "Arn"]}
    assert grants == {
        ("sqs:GetQueueUrl", "sqs:SendMessage"): queue,
        # a record that is not a job made visible again at once (to the DLQ in seconds)
        ("sqs:ChangeMessageVisibility",): queue,
        # added by the framework for the worker's sqs event
        ("sqs:DeleteMessage", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"): [queue],
        # added by the framework for the events function's on-failure destination
        ("sqs:ListQueues", "sqs:SendMessage"): [{"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}],
    }


def test_connections_table_is_on_demand_with_ttl(resources: dict[str, Any]) -> None:
    table = resources["ConnectionsTable"]["Properties"]
    assert table["TableName"] == f"serverless-websocket-connections-{STAGE}"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "connection_id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    users, due = table["GlobalSecondaryIndexes"]
    assert users["IndexName"] == "user_id-index"
    assert users["KeySchema"] == [{"AttributeName": "user_id", "KeyType": "HASH"}]
    # The sweeper's: a Query per time bucket finds the connections due, never a Scan.
    assert due["IndexName"] == "due-index"
    assert due["KeySchema"] == [{"AttributeName": "due_bucket", "KeyType": "HASH"}, {"AttributeName": "connection_id", "KeyType": "RANGE"}]
    assert set(due["Projection"]["NonKeyAttributes"]) == {"connected_at", "expires_at", "notified", "user_id"}


@pytest.mark.parametrize(
    ("logical_id", "name", "keys"),
    [
        ("HistoryTable", "history", [("conversation", "S", "HASH"), ("seq", "N", "RANGE")]),
        ("ConversationsTable", "conversations", [("pk", "S", "HASH"), ("sk", "S", "RANGE")]),
        ("MembersTable", "members", [("channel", "S", "HASH"), ("member", "S", "RANGE")]),
    ],
)
def test_the_channel_and_history_tables_are_on_demand_with_ttl(
    resources: dict[str, Any], logical_id: str, name: str, keys: list[tuple[str, str, str]]
) -> None:
    table = resources[logical_id]["Properties"]
    assert table["TableName"] == f"serverless-websocket-{name}-{STAGE}"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": attribute, "KeyType": kind} for attribute, _, kind in keys]
    defined = {d["AttributeName"]: d["AttributeType"] for d in table["AttributeDefinitions"]}
    assert {attribute: type_ for attribute, type_, _ in keys}.items() <= defined.items()
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    assert "MessagesTable" not in resources  # replaced by HistoryTable (docs/production.md: upgrading a stage)


def test_dynamodb_grants_are_only_what_the_code_calls_on_these_tables(resources: dict[str, Any]) -> None:
    grants = {
        json.dumps(s["Resource"], sort_keys=True): sorted(actions(s))
        for s in role_statements(resources)
        if any(a.startswith("dynamodb:") for a in actions(s))
    }
    connections = {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}
    indexes = [{"Fn::Join": ["/", [connections, "index", name]]} for name in ("user_id-index", "due-index")]
    table = lambda logical_id: json.dumps({"Fn::GetAtt": [logical_id, "Arn"]}, sort_keys=True)  # noqa: E731
    assert grants == {
        # connect, disconnect, the room's Scan, pruning (one conditional DeleteItem each), the rows
        # of gone connections (BatchGetItem), the channels a connection is in (UpdateItem, GetItem)
        table("ConnectionsTable"): [
            "dynamodb:BatchGetItem", "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Scan", "dynamodb:UpdateItem",
        ],
        json.dumps(indexes, sort_keys=True): ["dynamodb:Query"],  # a user's connections; the sweeper's due ones
        table("PresenceTable"): ["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        # the sweeper's overdue leaves
        json.dumps({"Fn::Join": ["/", [{"Fn::GetAtt": ["PresenceTable", "Arn"]}, "index", "leaving-index"]]}, sort_keys=True): [
            "dynamodb:Query"],
        table("MembersTable"): ["dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"],
        table("HistoryTable"): ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"],
        json.dumps({"Fn::Join": ["/", [{"Fn::GetAtt": ["ConversationsTable", "Arn"]}, "index", "inbox-index"]]}, sort_keys=True): ["dynamodb:Query"],
        table("ConversationsTable"): ["dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
        # one conditional write per frame or connect; a connection's slot claimed and given back
        table("LimitsTable"): ["dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
        # the events function reads the history's stream (the framework's grant, on that stream only)
        json.dumps([{"Fn::GetAtt": ["HistoryTable", "StreamArn"]}], sort_keys=True): [
            "dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:ListStreams"],
    }


def test_limits_table_is_on_demand_keyed_by_bucket_with_ttl(resources: dict[str, Any]) -> None:
    table = resources["LimitsTable"]["Properties"]
    assert table["TableName"] == f"serverless-websocket-limits-{STAGE}"
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "bucket", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}


def test_ssm_grant_is_get_parameter_on_the_secret_only(resources: dict[str, Any]) -> None:
    grants = [s for s in role_statements(resources) if any(a.startswith(("ssm:", "kms:")) for a in actions(s))]
    assert len(grants) == 1 and actions(grants[0]) == ["ssm:GetParameter"]
    parts = grants[0]["Resource"]["Fn::Join"][1]
    assert parts[-1] == f":parameter/serverless-websocket/{STAGE}/jwt-secret"


def test_manage_connections_is_scoped_to_this_api_and_stage(resources: dict[str, Any]) -> None:
    grants = [s for s in role_statements(resources) if "execute-api:ManageConnections" in actions(s)]
    assert len(grants) == 1, "the framework's account-wide grant must be removed"
    methods = set()
    for resource in grants[0]["Resource"]:
        parts = resource["Fn::Join"][1]
        assert {"Ref": "WebsocketsApi"} in parts
        assert parts[-1].startswith(f"/{STAGE}/") and parts[-1].endswith("/@connections/*")
        methods.add(parts[-1].split("/")[2])
    # Post to a connection; GetConnection (the sweeper's ghost check); DeleteConnection (expiry).
    assert methods == {"POST", "GET", "DELETE"}


def test_no_statement_grants_a_wildcard_resource(template: dict[str, Any], resources: dict[str, Any]) -> None:
    for statement in role_statements(resources):
        if any(a.startswith("logs:") for a in actions(statement)):
            continue  # the framework's own log-group grant, scoped to this service's log groups
        granted = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert granted, statement
        for resource in granted:  # "*" alone, or in a list: ["*"], [arn, "*"]
            assert resource != "*" and "*:*:*" not in json.dumps(resource), statement
        assert all(a != "*" and not a.endswith(":*") for a in actions(statement)), statement


@functools.cache
def cfn_lint_errors(package_dir: Path) -> list[str]:
    """cfn-lint's errors on the packaged template (warnings are not errors): once a package."""
    result = subprocess.run(
        [shutil.which("cfn-lint") or "cfn-lint", "--format", "parseable", str(package_dir / "cloudformation-template-update-stack.json")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # cfn-lint exits with a bit mask: 2 = errors, 4 = warnings, 8 = informational.
    assert result.returncode & 1 == 0, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if ":E" in line]
    assert bool(errors) == bool(result.returncode & 2), result.stdout + result.stderr
    return errors


def test_cfn_lint_reports_no_errors(package_dir: Path) -> None:
    assert cfn_lint_errors(package_dir) == []


def test_zip_holds_handler_the_chat_package_and_pyjwt_but_no_aws_sdk(package_dir: Path) -> None:
    archive = package_dir / "serverless-websocket.zip"
    names = zipfile.ZipFile(archive).namelist()
    assert "handler.py" in names
    modules = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "chat").glob("*.py"))
    assert "chat/__init__.py" in modules and sorted(n for n in names if n.startswith("chat/")) == modules
    assert "jwt/__init__.py" in names and "jwt/api_jwt.py" in names
    # The user-id rules: RFC 8265 (PRECIS) and Unicode's confusables and scripts (UTS #39).
    assert "precis_i18n/__init__.py" in names and "confusable_homoglyphs/confusables.json" in names
    assert not [n for n in names if n.split("/")[0] in {"boto3", "botocore", "s3transfer", "urllib3"}]
    # Powertools comes from its AWS layer (and typing_extensions with it).
    assert not [n for n in names if n.split("/")[0] in {"aws_lambda_powertools", "typing_extensions.py"}]
    assert not [n for n in names if n.startswith(("tests/", "node_modules/", "scripts/", ".venv/")) or "Pipfile" in n]
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    # Zipped: handler.py and chat/ about 40 KB, PyJWT (slim: no dist-info, no caches) under 30 KB,
    # precis-i18n about 19 KB, confusable-homoglyphs about 132 KB (Unicode's confusables.txt as
    # 900 KB of JSON), cryptography and cffi about 5 MB (its Rust part): far below Lambda's 50 MB.
    assert archive.stat().st_size < 8 * 1024 * 1024
    for name in ["handler.py", *modules]:
        assert zipfile.ZipFile(archive).read(name) == (ROOT / name).read_bytes(), name


def elf_machine(data: bytes) -> int | None:
    """The e_machine of an ELF shared object (62: x86-64, 183: AArch64), None if not ELF."""
    return int.from_bytes(data[18:20], "little") if data[:4] == b"\x7fELF" else None


def test_every_compiled_library_in_the_zip_is_for_arm64_and_python_3_13(package_dir: Path) -> None:
    # The functions run on arm64 (provider.architecture) with python3.13: an x86-64 wheel, or one
    # built for this machine's Python, would fail at the first RS256 token, not before.
    archive = zipfile.ZipFile(package_dir / "serverless-websocket.zip")
    shared = [name for name in archive.namelist() if re.search(r"\.so(\.|$)", name.rsplit("/", 1)[-1])]
    assert "cryptography/hazmat/bindings/_rust.abi3.so" in shared  # RS, PS, ES and EdDSA need it
    assert [name for name in shared if "cpython" in name] == ["_cffi_backend.cpython-313-aarch64-linux-gnu.so"]
    assert {name: elf_machine(archive.read(name)[:20]) for name in shared} == dict.fromkeys(shared, 183)


# What Lambda puts beside the zip: the Python runtime's boto3 (and its dependencies) and the
# Powertools layer (with its own).
RUNTIME_AND_LAYER = ["boto3", "botocore", "s3transfer", "jmespath", "dateutil", "six.py", "urllib3",
                     "aws_lambda_powertools", "typing_extensions.py"]


def test_the_zip_imports_in_a_clean_interpreter_with_only_the_runtime_and_layer_beside_it(
    package_dir: Path, tmp_path: Path
) -> None:
    import boto3

    unpacked, layer = tmp_path / "task", tmp_path / "layer"
    zipfile.ZipFile(package_dir / "serverless-websocket.zip").extractall(unpacked)
    layer.mkdir()
    site_packages = Path(boto3.__file__).parent.parent
    for name in RUNTIME_AND_LAYER:
        (layer / name).symlink_to(site_packages / name)
    # The zip's compiled libraries are arm64's (the test above): this machine takes its own builds
    # of the same versions (the lock's) in their place, and everything else is the zip's.
    for compiled in [*unpacked.glob("_cffi_backend*.so"), unpacked / "cryptography", unpacked / "cffi"]:
        shutil.rmtree(compiled) if compiled.is_dir() else compiled.unlink()
    for name in ["cryptography", "cffi", *[p.name for p in site_packages.glob("_cffi_backend*.so")]]:
        (unpacked / name).symlink_to(site_packages / name)
    # -I: no PYTHON* variables, no user site; -S: not even the virtualenv's site-packages.
    script = (
        "import sys; sys.path[:0] = sys.argv[1:3]\n"
        "import handler, jwt, json\n"
        "assert jwt.__file__.startswith(sys.argv[1]), jwt.__file__\n"
        "print(json.dumps({'ping': handler.ping({}, None)['body'],"
        " 'chat': sorted(m for m in sys.modules if m.startswith('chat.'))}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", script, str(unpacked), str(layer)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "AWS_DEFAULT_REGION": "ap-northeast-2"},
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert loaded["ping"] == "PONG!\n"
    assert loaded["chat"] == sorted(f"chat.{path.stem}" for path in (ROOT / "chat").glob("*.py") if path.stem != "__init__")


# --- production (issue 9) ---------------------------------------------------------------------


def test_every_permission_api_gateway_uses_is_scoped_to_this_api(resources: dict[str, Any]) -> None:
    permissions = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::Lambda::Permission"}
    # Every function API Gateway invokes: all but the SQS worker, the scheduled sweeper and the
    # stream's events function (the authorizer's included); EventBridge's permission to invoke
    # the sweeper is the framework's.
    invoked = [f for f in our_functions(resources)
               if f["Properties"]["Handler"] not in ("handler.deliver_messages", "handler.sweep", "handler.publish_events")]
    permissions = {k: p for k, p in permissions.items() if p["Principal"] != "events.amazonaws.com"}
    assert len(permissions) == len(invoked)
    for logical_id, properties in permissions.items():
        assert properties["Principal"] == "apigateway.amazonaws.com"
        parts = properties["SourceArn"]["Fn::Join"][1]  # checkov CKV_AWS_364
        api = {"Ref": "ApiGatewayRestApi"} if logical_id.startswith(("Ping", "Publish", "Moderate")) else {"Ref": "WebsocketsApi"}
        assert parts[:7] == ["arn:", {"Ref": "AWS::Partition"}, ":execute-api:", {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"}, ":"]
        assert parts[7] == api and parts[8] in ("/*", "/*/*"), logical_id
    assert "AuthorizerLambdaPermissionWebsockets" in permissions


def test_a_users_conversations_are_one_query_on_the_inbox_index(resources: dict[str, Any]) -> None:
    (index,) = resources["ConversationsTable"]["Properties"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "inbox-index"
    assert index["KeySchema"] == [{"AttributeName": "inbox", "KeyType": "HASH"}, {"AttributeName": "updated_at", "KeyType": "RANGE"}]


@pytest.mark.parametrize("logical_id", ["HistoryTable", "ConversationsTable"])
def test_the_history_survives_sls_remove_and_replacement(resources: dict[str, Any], logical_id: str) -> None:
    kept = resources[logical_id]
    # Kept on remove and on replacement, but not when the stack that created it rolls back: with
    # plain Retain and a fixed TableName, a failed first deploy leaves the table behind and
    # every retry fails with "already exists".
    assert kept["DeletionPolicy"] == "RetainExceptOnCreate" and kept["UpdateReplacePolicy"] == "Retain"
    assert kept["Properties"]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": False}
    # Connections and memberships are worth nothing after a remove.
    assert "DeletionPolicy" not in resources["ConnectionsTable"] and "DeletionPolicy" not in resources["MembersTable"]


def test_point_in_time_recovery_is_one_stage_parameter_away() -> None:
    from scripts.service_config import resolved_config, table_resources

    config = resolved_config(STAGE, params={"pointInTimeRecovery": "true"})
    for logical_id in ("HistoryTable", "ConversationsTable"):
        assert table_resources(config)[logical_id]["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": "true"}


def throttle_terms(resources: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """docs/production.md, "The route throttles": every frame the stage admits and every post or
    call it causes, all at once (requests a second), and the routes' bursts; from the template."""
    stage = resources["WebsocketsDeploymentStage"]["Properties"]
    routes, default = stage["RouteSettings"], stage["DefaultRouteSettings"]
    (function,) = [f for f in our_functions(resources) if f["Properties"]["Handler"] == "handler.send_message"]
    env = function["Properties"]["Environment"]["Variables"]
    route_keys = {r["Properties"]["RouteKey"] for r in of_type(resources, "AWS::ApiGatewayV2::Route")}
    others = route_keys - set(routes)
    assert set(routes) == {"sendMessage", "sendDirectMessage", "heartbeat", "editMessage", "deleteMessage", "ban", "unban",
                           "markRead", "typing"}
    assert len(others) == 9
    (rest_deployment,) = of_type(resources, "AWS::ApiGateway::Deployment")
    publish, moderate = rest_deployment["Properties"]["StageDescription"]["MethodSettings"]
    rate = {key: float(settings["ThrottlingRateLimit"]) for key, settings in routes.items()}
    dm_connections = 2 * int(env["MAX_CONNECTIONS_PER_USER"])
    rates = {
        "frames": sum(rate.values()) + float(default["ThrottlingRateLimit"]) * len(others) + publish["ThrottlingRateLimit"]
        + moderate["ThrottlingRateLimit"],
        # posted to inline only up to FANOUT_THRESHOLD connections; larger audiences by the workers
        "inline room and channel posts": rate["sendMessage"] * int(env["FANOUT_THRESHOLD"]),
        "direct message posts": rate["sendDirectMessage"] * dm_connections,
        # an edit or a delete is delivered like a message: inline up to the threshold, or a DM's connections
        "edit and delete posts": (rate["editMessage"] + rate["deleteMessage"]) * max(int(env["FANOUT_THRESHOLD"]), dm_connections),
        # a service-wide ban posts to and closes each of the user's connections
        "ban calls": (rate["ban"] + moderate["ThrottlingRateLimit"]) * dm_connections,
        # a read tells the reader's other connections and a DM's other user's
        "read posts": rate["markRead"] * dm_connections,
        # typing: inline up to the threshold (larger channels by the workers), or the DM's other user's connections
        "typing posts": rate["typing"] * max(int(env["FANOUT_THRESHOLD"]), int(env["MAX_CONNECTIONS_PER_USER"])),
        "worker posts": float(env["POSTING_BUDGET_PER_SECOND"]),
        "published direct message posts": publish["ThrottlingRateLimit"] * 100 * dm_connections,
        "sweeper calls": float(env["SWEEP_CALLS_PER_SECOND"]),
    }
    bursts = {key: float(settings["ThrottlingBurstLimit"]) for key, settings in routes.items()}
    bursts["others"] = float(default["ThrottlingBurstLimit"]) * len(others)
    bursts["publish"] = publish["ThrottlingBurstLimit"]
    bursts["moderate"] = moderate["ThrottlingBurstLimit"]
    return rates, bursts


def test_the_route_throttles_fit_the_accounts_10000_requests_a_second(resources: dict[str, Any]) -> None:
    rates, bursts = throttle_terms(resources)
    assert sum(rates.values()) == 9_942 <= 10_000  # docs/production.md's table, term by term
    assert rates == {"frames": 1_582, "inline room and channel posts": 2_500, "direct message posts": 1_500,
                     "edit and delete posts": 400, "ban calls": 60, "read posts": 200, "typing posts": 100,
                     "worker posts": 2_500, "published direct message posts": 1_000, "sweeper calls": 100}
    assert sum(bursts.values()) == 3_164 <= 5_000  # the account's burst


def test_the_small_channel_workload_is_admitted_whole(resources: dict[str, Any]) -> None:
    """1,000 channels of 10 members, one message per channel every 10 s: 100 frames/s, 1,000 posts/s."""
    stage = resources["WebsocketsDeploymentStage"]["Properties"]
    (function,) = [f for f in our_functions(resources) if f["Properties"]["Handler"] == "handler.send_message"]
    env = function["Properties"]["Environment"]["Variables"]
    assert stage["RouteSettings"]["sendMessage"]["ThrottlingRateLimit"] >= 1_000 / 10
    assert int(env["FANOUT_THRESHOLD"]) >= 10  # a channel of 10 is posted to at once, not queued behind others
    assert 1_000 / 10 * 10 <= throttle_terms(resources)[0]["inline room and channel posts"]


def test_a_deploy_that_could_exceed_the_accounts_quota_stops_naming_each_term(tmp_path: Path) -> None:
    result = package_with(tmp_path, "accountQuota=2500")

    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "could exceed the account's API Gateway quota (accountQuota 2500/s, burst 1250)" in out
    assert "posts: the delivery workers (postingBudget): 2500" in out and "= 9942 requests/s" in out


def test_a_smaller_quota_deploys_with_the_parameters_lowered_together(variant: Any) -> None:
    resources = variant("small")[1]["Resources"]
    rates, bursts = throttle_terms(resources)
    assert sum(rates.values()) <= 2_500 and sum(bursts.values()) <= 1_250


@pytest.mark.parametrize("rounds", ["0", "abc", "51"])
def test_rounds_per_second_refuses_what_it_cannot_mean(tmp_path: Path, rounds: str) -> None:
    result = package_with(tmp_path, f"roundsPerSecond={rounds}")

    assert result.returncode != 0
    assert f"roundsPerSecond must be a number from 0.1 to 50 (frames a second a member of a busy channel gets), not {rounds}" in (
        result.stdout + result.stderr
    )


def test_sweeper_runs_never_overlap(resources: dict[str, Any]) -> None:
    (sweeper,) = [f for f in our_functions(resources) if f["Properties"]["Handler"] == "handler.sweep"]
    assert sweeper["Properties"]["ReservedConcurrentExecutions"] == 1
    (config,) = of_type(resources, "AWS::Lambda::EventInvokeConfig")
    assert config["Properties"]["MaximumRetryAttempts"] == 0 and config["Properties"]["MaximumEventAgeInSeconds"] == 60
    assert config["Properties"]["FunctionName"] == {"Ref": "SweeperLambdaFunction"}


def test_the_websocket_stage_is_throttled_and_writes_access_logs_without_message_bodies(resources: dict[str, Any]) -> None:
    stage = resources["WebsocketsDeploymentStage"]["Properties"]
    assert stage["DefaultRouteSettings"] == {
        "DataTraceEnabled": False,
        "LoggingLevel": "ERROR",
        "ThrottlingRateLimit": 100,
        "ThrottlingBurstLimit": 200,
    }
    routes = stage["RouteSettings"]
    assert (routes["sendMessage"]["ThrottlingRateLimit"], routes["sendMessage"]["ThrottlingBurstLimit"]) == (250, 500)
    assert (routes["sendDirectMessage"]["ThrottlingRateLimit"], routes["sendDirectMessage"]["ThrottlingBurstLimit"]) == (150, 300)
    assert (routes["heartbeat"]["ThrottlingRateLimit"], routes["heartbeat"]["ThrottlingBurstLimit"]) == (200, 400)
    assert routes["sendMessage"]["DataTraceEnabled"] is False and routes["sendDirectMessage"]["DataTraceEnabled"] is False
    access = stage["AccessLogSettings"]  # checkov CKV_AWS_95
    fields = json.loads(access_log_line(access["Format"], {}))
    assert {"requestId", "eventType", "route", "connectionId", "status", "error", "authorizerError", "integrationError"} <= set(fields)
    assert "WebsocketsLogGroup" in json.dumps(access["DestinationArn"])
    assert resources["WebsocketsLogGroup"]["Properties"]["RetentionInDays"] == 14


def access_log_line(log_format: str, values: dict[str, str]) -> str:
    """The line API Gateway writes: each $context variable replaced by its value, as it is
    ("-" when it has none); $context.error.messageString is the message already quoted."""
    message = values.get("$context.error.message", "-")
    values = {"$context.error.messageString": json.dumps(message), **values}
    return re.sub(r"\$context\.[A-Za-z.]+", lambda variable: values.get(variable.group(0), "-"), log_format)


def test_an_error_message_with_quotes_leaves_the_access_log_line_valid_json(resources: dict[str, Any]) -> None:
    log_format = resources["WebsocketsDeploymentStage"]["Properties"]["AccessLogSettings"]["Format"]
    message = 'Invalid "token" \\ in\tthe header'

    line = json.loads(access_log_line(log_format, {"$context.error.message": message, "$context.status": "403"}))

    assert line["error"] == message and line["status"] == "403"


def test_the_stages_execution_log_group_is_the_stacks_with_the_same_retention(resources: dict[str, Any]) -> None:
    # API Gateway writes a stage's execution logs to API-Gateway-Execution-Logs_{api id}/{stage}
    # and would create that group itself, outside the stack and kept forever.
    group = resources["WebsocketsExecutionLogGroup"]["Properties"]
    assert group["LogGroupName"] == {"Fn::Join": ["", ["API-Gateway-Execution-Logs_", {"Ref": "WebsocketsApi"}, f"/{STAGE}"]]}
    assert {g["Properties"]["RetentionInDays"] for g in of_type(resources, "AWS::Logs::LogGroup")} == {14}
    # Created before the stage can log anything, so API Gateway never makes it first.
    assert "WebsocketsExecutionLogGroup" in resources["WebsocketsDeploymentStage"]["DependsOn"]


def test_alarms_cover_function_errors_throttles_failed_deliveries_aws_errors_and_the_dlq(resources: dict[str, Any]) -> None:
    alarms = {k: r["Properties"] for k, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    functions = {k for k, r in resources.items() if r["Type"] == "AWS::Lambda::Function" and r["Properties"]["Handler"].startswith("handler.")}
    groups = -(-len(functions) // 9)  # 9 functions and their SUM: CloudWatch's 10 metrics an alarm
    assert groups >= 2  # more functions than one alarm can watch: the split is exercised
    per_function = {f"Function{kind}Alarm{n if n > 1 else ''}" for kind in ("Errors", "Throttles") for n in range(1, groups + 1)}
    assert set(alarms) == per_function | {"FailedDeliveriesAlarm", "AwsErrorsAlarm", "DeadLetterAlarm", "EventsDeadLetterAlarm",
                                           "EventsIteratorAgeAlarm"}
    for kind, metric_name in (("FunctionErrorsAlarm", "Errors"), ("FunctionThrottlesAlarm", "Throttles")):
        watched: list[str] = []
        for name in (name for name in alarms if name.startswith(kind)):
            metrics = alarms[name]["Metrics"]
            assert len(metrics) <= 10, name
            watched += [m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"] for m in metrics if "MetricStat" in m]
            assert {m["MetricStat"]["Metric"]["MetricName"] for m in metrics if "MetricStat" in m} == {metric_name}
            assert metrics[-1]["Expression"].startswith("SUM([") and metrics[-1]["ReturnData"] is True
        assert sorted(watched) == sorted(functions), kind  # each function exactly once
    assert alarms["DeadLetterAlarm"]["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeliveryDeadLetterQueue", "QueueName"]}}]
    service = [{"Name": "service", "Value": f"serverless-websocket-{STAGE}"}]
    assert alarms["FailedDeliveriesAlarm"]["MetricName"] == "DeliveriesFailed" and alarms["FailedDeliveriesAlarm"]["Dimensions"] == service
    assert alarms["AwsErrorsAlarm"]["MetricName"] == "AwsErrors" and alarms["AwsErrorsAlarm"]["Namespace"] == "ServerlessWebsocket"
    for properties in alarms.values():
        assert properties["AlarmActions"] == [{"Ref": "AlarmTopic"}] and properties["TreatMissingData"] == "notBreaching"
    assert resources["AlarmTopic"]["Type"] == "AWS::SNS::Topic"
    assert "AlarmEmailSubscription" not in resources  # no e-mail given


def package_with(out: Path, *params: str) -> subprocess.CompletedProcess:
    """`sls package` with these stage parameters (name=value), no AWS credentials, into `out`."""
    return sls_package(out, service_copy(out.parent / f"{out.name}-service"), *params)


def packaged_template(out: Path, *params: str) -> dict[str, Any]:
    result = package_with(out, *params)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads((out / "cloudformation-template-update-stack.json").read_text())


WEBHOOK = ("webhookUrl=https://example.com/hooks/chat", "webhookSecretParameter=/chat/webhook-key")
REVIEW_ARN = "arn:aws:lambda:ap-northeast-2:123456789012:function:our-moderation:live"
SMALLER_QUOTA = (
    "accountQuota=2500", "sendMessageRate=60", "sendMessageBurst=120", "sendDirectMessageRate=40",
    "sendDirectMessageBurst=80", "heartbeatRate=100", "heartbeatBurst=200", "routeRate=25", "routeBurst=50",
    "postingBudget=600", "sweepCallsPerSecond=25", "publishRate=0.25", "publishBurst=1", "changeRate=5", "changeBurst=10",
    "moderationRate=1", "moderationBurst=2", "moderateRate=0.25", "moderateBurst=1", "markReadRate=4", "markReadBurst=8",
    "typingRate=2", "typingBurst=4",
)
# The stage parameters that change the template, tried together where they do not meet: a package
# costs about 10 s of CPU (most of it zipping the wheels), and ten of them, one a parameter, were a
# third of the build tier. Each test below asserts on its own parameter's part of one of these.
VARIANTS = {
    # A stage in an account that has its own things: an e-mail for the alarms, the account's
    # CloudWatch role and the stage's execution log group left alone, a bus and a review function
    # of its own, and the publish API throttled higher (the other terms lowered to fit the quota).
    "existing": ("alarmEmail=ops@example.com", "setApiGatewayAccountRole=false", "createExecutionLogGroup=false",
                 "eventBusName=orders-bus", f"reviewFunction={REVIEW_ARN}", "publishRate=5", "publishBurst=10",
                 "sendDirectMessageRate=30", "postingBudget=1000", "sendMessageRate=100"),
    # A small stage: no events out, the example review function (denying when it cannot answer),
    # a quarter of the account's quota with the throttles lowered together.
    "small": ("events=off", "reviewFunction=example", "reviewFallback=deny", "reviewTimeoutMs=300", *SMALLER_QUOTA),
    # Events out to a webhook.
    "webhook": WEBHOOK,
}


@pytest.fixture(scope="module")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, dict[str, Any]]]:
    """The package of one of VARIANTS, made once for the module when first asked for: (its
    folder, its template)."""
    made: dict[str, tuple[Path, dict[str, Any]]] = {}

    def get(name: str) -> tuple[Path, dict[str, Any]]:
        if name not in made:
            out = tmp_path_factory.mktemp(f"package-{name}")
            made[name] = (out, packaged_template(out, *VARIANTS[name]))
        return made[name]

    return get


def test_an_alarm_email_stage_parameter_subscribes_it(variant: Any) -> None:
    resources = variant("existing")[1]["Resources"]
    assert resources["AlarmEmailSubscription"]["Properties"] == {
        "TopicArn": {"Ref": "AlarmTopic"}, "Protocol": "email", "Endpoint": "ops@example.com",
    }


def test_the_deployment_bucket_blocks_public_access_and_keeps_versions(resources: dict[str, Any]) -> None:
    bucket = resources["ServerlessDeploymentBucket"]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}


# --- the first deploy (issue 16) ----------------------------------------------------------------

# The framework's custom resource that sets API Gateway's account-wide CloudWatch role.
ACCOUNT_ROLE = "CustomApiGatewayAccountCloudWatchRole"


def test_the_websocket_stage_waits_for_the_account_cloudwatch_role(resources: dict[str, Any]) -> None:
    # API Gateway refuses a stage that logs until the account has a CloudWatch role in that
    # region ("CloudWatch Logs role ARN must be set in account settings to enable logging"):
    # in a fresh account the stage must not be created before the custom resource has set it.
    assert resources[ACCOUNT_ROLE]["Type"] == "Custom::ApiGatewayAccountRole"
    assert ACCOUNT_ROLE in resources["WebsocketsDeploymentStage"]["DependsOn"]


def test_a_stage_parameter_leaves_the_accounts_cloudwatch_role_alone(variant: Any) -> None:
    out, template = variant("existing")
    resources = template["Resources"]

    # No custom resource, no function or role of its own, and nothing left that names them.
    assert ACCOUNT_ROLE not in resources
    assert [f["Properties"]["Handler"] for f in of_type(resources, "AWS::Lambda::Function") if f not in our_functions(resources)] == []
    assert "IamRoleCustomResourcesLambdaExecution" not in resources
    assert ACCOUNT_ROLE not in json.dumps(template) and "CustomDashresource" not in json.dumps(template)
    # The stage still logs (the role is the account owner's to set, once: docs/production.md).
    assert resources["WebsocketsDeploymentStage"]["Properties"]["AccessLogSettings"]["Format"]
    assert cfn_lint_errors(out) == []


def test_the_account_role_parameter_takes_only_true_or_false(tmp_path: Path) -> None:
    result = package_with(tmp_path, "setApiGatewayAccountRole=no")

    assert result.returncode != 0
    assert "setApiGatewayAccountRole must be true or false, not 'no'" in result.stdout + result.stderr


# --- what a deploy review found (issue 24) -------------------------------------------------------


def renamed_deployment(template: dict[str, Any]) -> dict[str, Any]:
    """The template after plugins/heartbeat.js names the deployment again (in Node, as sls does)."""
    script = ("const {renameDeployment} = require('./plugins/heartbeat.js');"
              "const t = JSON.parse(require('fs').readFileSync(0, 'utf8')); renameDeployment(t);"
              "process.stdout.write(JSON.stringify(t));")
    result = subprocess.run(["node", "-e", script], cwd=ROOT, input=json.dumps(template), capture_output=True,
                            text=True, timeout=60, check=True)
    return json.loads(result.stdout)


def deployment_id(template: dict[str, Any]) -> str:
    (found,) = [k for k, v in template["Resources"].items() if v["Type"] == "AWS::ApiGatewayV2::Deployment"]
    return found


def test_a_change_made_only_to_the_heartbeat_route_makes_a_new_deployment(template: dict[str, Any]) -> None:
    # A deployment snapshots the routes; CloudFormation makes a new one only under a new logical
    # id, which the framework hashed before the heartbeat route existed.
    assert deployment_id(renamed_deployment(template)) == deployment_id(template)  # already named from it all

    changed = json.loads(json.dumps(template))
    changed["Resources"]["HeartbeatIntegration"]["Properties"]["RequestTemplates"]["$default"] = '{"statusCode": 204}'
    renamed = renamed_deployment(changed)

    new_id = deployment_id(renamed)
    assert new_id != deployment_id(template) and re.fullmatch(r"WebsocketsDeployment[A-Za-z0-9]+", new_id)
    assert renamed["Resources"]["WebsocketsDeploymentStage"]["Properties"]["DeploymentId"] == {"Ref": new_id}
    assert "HeartbeatWebsocketsRoute" in renamed["Resources"][new_id]["DependsOn"]


def test_the_custom_resources_function_may_write_its_own_logs_and_nothing_more(resources: dict[str, Any]) -> None:
    statements = resources["IamRoleCustomResourcesLambdaExecution"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    logs = [s for s in statements if any(a.startswith("logs:") for a in actions(s))]
    groups = {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":logs:", {"Ref": "AWS::Region"}, ":",
                                {"Ref": "AWS::AccountId"}, f":log-group:/aws/lambda/serverless-websocket-{STAGE}-custom-resource-*"]]}
    assert logs == [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup"], "Resource": groups},
        {"Effect": "Allow", "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": {"Fn::Join": ["", [groups, ":*"]]}},
    ]
    function = resources["CustomDashresourceDashapigwDashcwDashroleLambdaFunction"]["Properties"]
    assert function["FunctionName"].startswith(f"serverless-websocket-{STAGE}-custom-resource-")


def test_a_stage_that_logged_before_keeps_its_execution_log_group(variant: Any) -> None:
    out, template = variant("existing")
    resources = template["Resources"]

    assert "WebsocketsExecutionLogGroup" not in resources and "WebsocketsExecutionLogGroup" not in json.dumps(template)
    assert resources["WebsocketsDeploymentStage"]["Properties"]["DefaultRouteSettings"]["LoggingLevel"] == "ERROR"
    assert cfn_lint_errors(out) == []


def test_the_execution_log_group_parameter_takes_only_true_or_false(tmp_path: Path) -> None:
    result = package_with(tmp_path, "createExecutionLogGroup=maybe")

    assert result.returncode != 0
    assert "createExecutionLogGroup must be true or false, not 'maybe'" in result.stdout + result.stderr


# --- the publish API (issue 25) -----------------------------------------------------------------


def test_publish_and_moderate_are_posts_signed_with_aws_iam_throttled_on_their_own(resources: dict[str, Any]) -> None:
    for name in ("Publish", "Moderate"):
        method = resources[f"ApiGatewayMethod{name}Post"]["Properties"]
        assert (method["HttpMethod"], method["AuthorizationType"]) == ("POST", "AWS_IAM")
        assert resources[f"ApiGatewayResource{name}"]["Properties"]["PathPart"] == name.lower()
    (deployment,) = of_type(resources, "AWS::ApiGateway::Deployment")
    assert deployment["Properties"]["StageDescription"]["MethodSettings"] == [
        {"HttpMethod": "POST", "ResourcePath": "/~1publish", "ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 2},
        {"HttpMethod": "POST", "ResourcePath": "/~1moderate", "ThrottlingRateLimit": 1, "ThrottlingBurstLimit": 2}]
    assert resources["ApiGatewayMethodPingGet"]["Properties"]["AuthorizationType"] == "NONE"  # the health check stays open


@pytest.mark.parametrize("name, path", [("Publish", "publish"), ("Moderate", "moderate")])
def test_each_policy_allows_invoking_exactly_its_method_and_is_an_output(template: dict[str, Any], name: str, path: str) -> None:
    policy = template["Resources"][f"{name}Policy"]
    assert policy["Type"] == "AWS::IAM::ManagedPolicy"
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Effect"] == "Allow" and statement["Action"] == "execute-api:Invoke"
    assert statement["Resource"] == {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":execute-api:", {"Ref": "AWS::Region"}, ":",
                                                       {"Ref": "AWS::AccountId"}, ":", {"Ref": "ApiGatewayRestApi"},
                                                       f"/{STAGE}/POST/{path}"]]}
    outputs = template["Outputs"]
    assert outputs[f"{name}PolicyArn"]["Value"] == {"Ref": f"{name}Policy"}
    assert outputs[f"{name}PolicyArn"]["Export"] == {"Name": f"serverless-websocket-{STAGE}-{name}PolicyArn"}


def test_the_publish_url_is_an_output(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    assert outputs["PublishUrl"]["Value"]["Fn::Join"][1][-1] == f"/{STAGE}/publish"


def test_the_publish_throttle_is_a_stage_parameter(variant: Any) -> None:
    # 5 requests/s x 100 messages x 10 posts: the direct messages' workers' share lowered to fit.
    resources = variant("existing")[1]["Resources"]
    (deployment,) = of_type(resources, "AWS::ApiGateway::Deployment")
    assert deployment["Properties"]["StageDescription"]["MethodSettings"][0]["ThrottlingRateLimit"] == 5
    assert deployment["Properties"]["StageDescription"]["MethodSettings"][0]["ThrottlingBurstLimit"] == 10


# --- events out (issue 27) -----------------------------------------------------------------------

EVENT_RESOURCES = {"EventBus", "EventsDeadLetterQueue", "EventsDeadLetterAlarm", "EventsIteratorAgeAlarm"}


def events_function(resources: dict[str, Any]) -> dict[str, Any]:
    (found,) = [f for f in our_functions(resources) if f["Properties"]["Handler"] == "handler.publish_events"]
    return found


def test_the_stack_has_a_bus_every_function_is_told_its_name_and_may_put_events_on_it_only(resources: dict[str, Any]) -> None:
    assert resources["EventBus"]["Properties"] == {"Name": f"serverless-websocket-{STAGE}"}
    for function in our_functions(resources):
        assert function["Properties"]["Environment"]["Variables"]["EVENT_BUS_NAME"] == {"Ref": "EventBus"}
    grants = [s for s in role_statements(resources) if any(a.startswith("events:") for a in actions(s))]
    assert grants == [{"Effect": "Allow", "Action": ["events:PutEvents"], "Resource": {"Fn::GetAtt": ["EventBus", "Arn"]}}]


def test_the_history_streams_new_images_to_the_events_function_with_retries_bisection_and_a_failure_queue(
    resources: dict[str, Any]
) -> None:
    assert resources["HistoryTable"]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    (mapping,) = [r["Properties"] for r in of_type(resources, "AWS::Lambda::EventSourceMapping")
                  if r["Properties"]["EventSourceArn"] == {"Fn::GetAtt": ["HistoryTable", "StreamArn"]}]
    assert mapping["FunctionName"] == {"Fn::GetAtt": ["PublishEventsLambdaFunction", "Arn"]}
    assert mapping["StartingPosition"] == "TRIM_HORIZON"  # what was stored before the mapping existed too
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    # Retried for as long as the stream keeps a record (24 hours), then its place goes to the queue.
    assert mapping["MaximumRetryAttempts"] == -1 and mapping["MaximumRecordAgeInSeconds"] == 86400
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}}
    # The stream is read on this table's stream only (the framework's grant).
    reads = [s for s in role_statements(resources) if "dynamodb:GetRecords" in actions(s)]
    assert reads == [{"Effect": "Allow", "Resource": [{"Fn::GetAtt": ["HistoryTable", "StreamArn"]}],
                      "Action": ["dynamodb:GetRecords", "dynamodb:GetShardIterator", "dynamodb:DescribeStream",
                                 "dynamodb:ListStreams"]}]
    assert events_function(resources)["Properties"]["Timeout"] == 60
    lag = resources["EventsIteratorAgeAlarm"]["Properties"]
    assert (lag["MetricName"], lag["Threshold"]) == ("IteratorAge", 300000)
    assert lag["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "PublishEventsLambdaFunction"}}]
    alarm = resources["EventsDeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["EventsDeadLetterQueue", "QueueName"]}}]
    assert alarm["Threshold"] == 1 and alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_events_off_removes_the_bus_the_stream_the_function_and_the_grant(variant: Any) -> None:
    out, template = variant("small")
    resources = template["Resources"]

    assert not EVENT_RESOURCES & set(resources)
    assert "StreamSpecification" not in resources["HistoryTable"]["Properties"]
    assert [f for f in our_functions(resources) if f["Properties"]["Handler"] == "handler.publish_events"] == []
    assert "events:PutEvents" not in json.dumps(template) and "StreamArn" not in json.dumps(template)
    for function in our_functions(resources):
        assert function["Properties"]["Environment"]["Variables"]["EVENT_BUS_NAME"] == ""
    assert cfn_lint_errors(out) == []


def test_an_existing_bus_is_used_by_name_and_none_is_created(variant: Any) -> None:
    out, template = variant("existing")
    resources = template["Resources"]

    assert "EventBus" not in resources
    for function in our_functions(resources):
        assert function["Properties"]["Environment"]["Variables"]["EVENT_BUS_NAME"] == "orders-bus"
    (grant,) = [s for s in role_statements(resources) if "events:PutEvents" in actions(s)]
    assert grant["Resource"]["Fn::Join"][1][-1] == ":event-bus/orders-bus"
    assert cfn_lint_errors(out) == []


@pytest.mark.parametrize(("param", "complaint"), [
    ("events=maybe", '--param events must be on or off, not "maybe"'),
    ("eventBusName=no spaces please", '--param eventBusName is not a bus name: "no spaces please"'),
])
def test_the_events_parameters_refuse_what_they_cannot_mean(tmp_path: Path, param: str, complaint: str) -> None:
    result = package_with(tmp_path, param)

    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


WEBHOOK_RESOURCES = {"WebhookConnectionRole", "WebhookConnectionLogGroup", "WebhookConnectionFunction", "WebhookConnection",
                     "WebhookDestination", "WebhookTargetRole", "WebhookRule", "WebhookDeadLetterQueue",
                     "WebhookDeadLetterQueuePolicy", "WebhookDeadLetterAlarm"}


def test_without_a_webhook_url_there_is_no_webhook(resources: dict[str, Any]) -> None:
    assert not WEBHOOK_RESOURCES & set(resources)


def test_a_webhook_url_gets_every_event_retried_for_24_hours_then_a_dead_letter_queue_and_an_alarm(variant: Any) -> None:
    out, template = variant("webhook")
    resources = template["Resources"]
    assert WEBHOOK_RESOURCES <= set(resources)

    rule = resources["WebhookRule"]["Properties"]
    assert rule["EventBusName"] == {"Ref": "EventBus"} and rule["EventPattern"] == {"source": ["serverless-websocket"]}
    (target,) = rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["WebhookDestination", "Arn"]}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}}
    destination = resources["WebhookDestination"]["Properties"]
    assert destination["InvocationEndpoint"] == "https://example.com/hooks/chat" and destination["HttpMethod"] == "POST"
    assert destination["ConnectionArn"] == {"Fn::GetAtt": ["WebhookConnection", "Arn"]}
    # The key: read from the SecureString by the connection's function, never in the template.
    connection = resources["WebhookConnection"]["Properties"]
    assert (connection["ParameterName"], connection["HeaderName"]) == ("/chat/webhook-key", "x-api-key")
    assert connection["KeyVersion"] == "1"  # --param webhookKeyVersion: a new value reads the key again
    code = resources["WebhookConnectionFunction"]["Properties"]["Code"]["ZipFile"]
    assert code == (ROOT / "plugins" / "webhook_connection.py").read_text()
    # EventBridge may invoke the destination and fill the queue for this rule, nothing more.
    (invoke,) = resources["WebhookTargetRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert invoke["Action"] == "events:InvokeApiDestination" and invoke["Resource"] == {"Fn::GetAtt": ["WebhookDestination", "Arn"]}
    (queue_grant,) = resources["WebhookDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert queue_grant["Principal"] == {"Service": "events.amazonaws.com"} and queue_grant["Action"] == "sqs:SendMessage"
    assert queue_grant["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["WebhookRule", "Arn"]}}}
    statements = resources["WebhookConnectionRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    (ssm,) = [s for s in statements if s["Action"] == "ssm:GetParameter"]
    assert ssm["Resource"]["Fn::Join"][1][-1] == ":parameter/chat/webhook-key"
    assert all("*" != s["Resource"] for s in statements)
    alarm = resources["WebhookDeadLetterAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["WebhookDeadLetterQueue", "QueueName"]}}]
    assert cfn_lint_errors(out) == []


@pytest.mark.parametrize(("params", "complaint"), [
    (("webhookUrl=http://example.com/hook", WEBHOOK[1]), '--param webhookUrl must be an https:// URL, not "http://example.com/hook"'),
    ((WEBHOOK[0],), "--param webhookUrl needs --param webhookSecretParameter=/name/of/a/SecureString"),
    ((WEBHOOK[1],), "--param webhookSecretParameter needs --param webhookUrl"),
    ((*WEBHOOK, "events=off"), "--param webhookUrl needs events on, not events=off"),
])
def test_the_webhook_parameters_refuse_what_they_cannot_mean(tmp_path: Path, params: tuple[str, ...], complaint: str) -> None:
    result = package_with(tmp_path, *params)

    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr


# --- the review hook (issue 29, docs/moderation.md) ------------------------------------------------

def review_settings(resources: dict[str, Any]) -> set[tuple[str, str, str]]:
    """What every function is told about the review hook: (REVIEW_FUNCTION, its timeout, its fallback)."""
    return {
        tuple(f["Properties"]["Environment"]["Variables"][name] for name in ("REVIEW_FUNCTION", "REVIEW_TIMEOUT_MS", "REVIEW_FALLBACK"))
        for f in our_functions(resources)
    }


def test_without_a_review_function_there_is_no_review_nor_its_grant_alarm_or_example(resources: dict[str, Any]) -> None:
    assert review_settings(resources) == {("", "1000", "allow")}
    assert [s for s in role_statements(resources) if "lambda:InvokeFunction" in actions(s)] == []
    assert "ReviewFallbacksAlarm" not in resources
    assert [f for f in our_functions(resources) if f["Properties"]["Handler"] == "handler.review_example"] == []


def test_the_example_review_function_is_deployed_and_alone_may_be_invoked(variant: Any) -> None:
    out, template = variant("small")
    resources = template["Resources"]

    (example,) = [f for f in our_functions(resources) if f["Properties"]["Handler"] == "handler.review_example"]
    name = f"serverless-websocket-{STAGE}-reviewExample"
    assert example["Properties"]["FunctionName"] == name and example["Properties"]["Timeout"] == 3
    assert review_settings(resources) == {(name, "300", "deny")}
    (grant,) = [s for s in role_statements(resources) if "lambda:InvokeFunction" in actions(s)]
    assert actions(grant) == ["lambda:InvokeFunction"] and grant["Resource"]["Fn::Join"][1][-1] == f":function:{name}"
    alarm = resources["ReviewFallbacksAlarm"]["Properties"]
    assert (alarm["MetricName"], alarm["Threshold"], alarm["AlarmActions"]) == ("ReviewFallbacks", 1, [{"Ref": "AlarmTopic"}])
    assert cfn_lint_errors(out) == []


def test_a_review_function_arn_is_called_and_alone_may_be_invoked(variant: Any) -> None:
    out, template = variant("existing")
    resources = template["Resources"]

    assert review_settings(resources) == {(REVIEW_ARN, "1000", "allow")}
    (grant,) = [s for s in role_statements(resources) if "lambda:InvokeFunction" in actions(s)]
    assert grant["Resource"] == REVIEW_ARN
    assert "ReviewFallbacksAlarm" in resources
    assert [f for f in our_functions(resources) if f["Properties"]["Handler"] == "handler.review_example"] == []
    assert cfn_lint_errors(out) == []


@pytest.mark.parametrize(("param", "complaint"), [
    ("reviewFunction=our-moderation", "--param reviewFunction must be a Lambda function's ARN"),
    ("reviewTimeoutMs=20000", '--param reviewTimeoutMs must be a whole number of milliseconds from 50 to 10000, not "20000"'),
    ("reviewFallback=maybe", '--param reviewFallback must be allow or deny, not "maybe"'),
])
def test_the_review_parameters_refuse_what_they_cannot_mean(tmp_path: Path, param: str, complaint: str) -> None:
    result = package_with(tmp_path, param)

    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr
