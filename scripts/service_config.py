"""The service definition as the Serverless Framework resolves it, and tables and queues
created from it.

serverless.yml is the one source of truth for the DynamoDB tables and the SQS queues: the tests
and the local stack create them from `sls print`, the same resolved definition that `sls deploy`
sends to CloudFormation, instead of keeping a second hand-written schema.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SLS = ROOT / "node_modules" / ".bin" / "sls"

# The CreateTable parameters that mean the same in CloudFormation and in the DynamoDB API.
_CREATE_TABLE_KEYS = (
    "TableName",
    "AttributeDefinitions",
    "KeySchema",
    "BillingMode",
    "GlobalSecondaryIndexes",
    "LocalSecondaryIndexes",
)


# The queue attributes that mean the same in CloudFormation and in the SQS API.
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
    "SqsManagedSseEnabled",
)


def resolved_config(stage: str, env: dict[str, str] | None = None, params: dict[str, str] | None = None) -> dict[str, Any]:
    """serverless.yml with every variable resolved, as the framework itself resolves it."""
    result = subprocess.run(
        [str(SLS), "print", "--format", "json", "--stage", stage, *param_options(params)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(result.stdout)


def param_options(params: dict[str, str] | None) -> list[str]:
    """`--param key=value` options: the values of `${param:key}` in serverless.yml."""
    return [option for key, value in (params or {}).items() for option in ("--param", f"{key}={value}")]


def resources_of_type(config: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    """Logical id -> Properties of every resource of this type declared under `resources:`."""
    resources = config.get("resources", {}).get("Resources", {})
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource.get("Type") == resource_type
    }


def table_resources(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id -> Properties of every DynamoDB table declared under `resources:`."""
    return resources_of_type(config, "AWS::DynamoDB::Table")


def create_queues(sqs_client: Any, config: dict[str, Any]) -> dict[str, str]:
    """Create every SQS queue declared under `resources:`, dead-letter queues first (a
    RedrivePolicy names its DLQ by Fn::GetAtt Arn); logical id -> queue URL."""
    queues = resources_of_type(config, "AWS::SQS::Queue")
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    for logical_id in sorted(queues, key=lambda name: "RedrivePolicy" in queues[name]):
        properties = queues[logical_id]
        attributes = {key: _attribute(properties[key]) for key in _QUEUE_ATTRIBUTES if key in properties}
        if "RedrivePolicy" in properties:
            policy = dict(properties["RedrivePolicy"])
            target = policy["deadLetterTargetArn"]
            if isinstance(target, dict):
                policy["deadLetterTargetArn"] = arns[target["Fn::GetAtt"][0]]
            attributes["RedrivePolicy"] = json.dumps(policy)
        urls[logical_id] = sqs_client.create_queue(QueueName=properties["QueueName"], Attributes=attributes)["QueueUrl"]
        arns[logical_id] = sqs_client.get_queue_attributes(QueueUrl=urls[logical_id], AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
    return urls


def _attribute(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def create_table(dynamodb_client: Any, properties: dict[str, Any], table_name: str | None = None) -> str:
    """Create one table from its CloudFormation properties; return its name."""
    params = {key: properties[key] for key in _CREATE_TABLE_KEYS if key in properties}
    if table_name:
        params["TableName"] = table_name
    if "StreamSpecification" in properties:  # CloudFormation's has only the view type
        params["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    dynamodb_client.create_table(**params)
    dynamodb_client.get_waiter("table_exists").wait(TableName=params["TableName"])
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb_client.update_time_to_live(
            TableName=params["TableName"],
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    return params["TableName"]
