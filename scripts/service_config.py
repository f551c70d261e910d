"""The service definition as the Serverless Framework resolves it, and tables created from it.

serverless.yml is the one source of truth for the DynamoDB tables: the tests and the local
stack create them from `sls print`, the same resolved definition that `sls deploy` sends to
CloudFormation, instead of keeping a second hand-written schema.
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


def resolved_config(stage: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """serverless.yml with every variable resolved, as the framework itself resolves it."""
    result = subprocess.run(
        [str(SLS), "print", "--format", "json", "--stage", stage],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return json.loads(result.stdout)


def table_resources(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Logical id -> Properties of every DynamoDB table declared under `resources:`."""
    resources = config.get("resources", {}).get("Resources", {})
    return {
        logical_id: resource["Properties"]
        for logical_id, resource in resources.items()
        if resource.get("Type") == "AWS::DynamoDB::Table"
    }


def create_table(dynamodb_client: Any, properties: dict[str, Any], table_name: str | None = None) -> str:
    """Create one table from its CloudFormation properties; return its name."""
    params = {key: properties[key] for key in _CREATE_TABLE_KEYS if key in properties}
    if table_name:
        params["TableName"] = table_name
    dynamodb_client.create_table(**params)
    dynamodb_client.get_waiter("table_exists").wait(TableName=params["TableName"])
    ttl = properties.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled"):
        dynamodb_client.update_time_to_live(
            TableName=params["TableName"],
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
        )
    return params["TableName"]
