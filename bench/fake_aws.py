"""The environment of the in-process benchmarks: fake credentials, moto's tables, no real AWS."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def use_fake_aws(**settings: str) -> None:
    """Fake credentials and bench table names for the handler (and `settings`), before it is
    imported; nothing that could reach a real account or the local stack."""
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        CONNECTIONS_TABLE="bench-connections",
        MEMBERS_TABLE="bench-members",
        HISTORY_TABLE="bench-history",
        CONVERSATIONS_TABLE="bench-conversations",
        LIMITS_TABLE="bench-limits",
        LOG_LEVEL="WARNING",
        **settings,
    )
    for name in ("IS_OFFLINE", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"):
        os.environ.pop(name, None)


def create_tables(dynamodb_client: Any) -> None:
    """The service's tables, from serverless.yml, under the bench names (inside mock_aws, made
    atomic as DynamoDB is: scripts/moto_fixes.py)."""
    from scripts import moto_fixes, service_config

    moto_fixes.apply()
    tables = service_config.table_resources(service_config.resolved_config("bench"))
    for logical_id, variable in TABLES.items():
        service_config.create_table(dynamodb_client, tables[logical_id], os.environ[variable])


TABLES = {
    "ConnectionsTable": "CONNECTIONS_TABLE",
    "MembersTable": "MEMBERS_TABLE",
    "HistoryTable": "HISTORY_TABLE",
    "ConversationsTable": "CONVERSATIONS_TABLE",
    "LimitsTable": "LIMITS_TABLE",
}
