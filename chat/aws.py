"""What every AWS adapter here shares: client settings that keep each call inside API
Gateway's 29 s, the errors a failed call raises, and DynamoDB tables made once per container.

A table's `meta.client` is the low-level client for the calls the table resource lacks
(TransactWriteItems, BatchGetItem); boto3 converts Python values to DynamoDB's typed form and
back on it, as it does on the table itself."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

# Every AWS call gives up well inside API Gateway's 29 s integration limit, so the client
# gets a clear 5xx from us instead of a timeout (botocore's defaults are 60 s per read).
AWS_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 3})
# What a failed AWS call raises: service errors (ClientError) and everything botocore raises
# before an answer arrives (BotoCoreError: no connection, timeouts, no credentials).
AWS_ERRORS = (BotoCoreError, ClientError)


@lru_cache(maxsize=None)
def dynamodb_table(variable: str, default: str, config: Config = AWS_CLIENT_CONFIG) -> Any:
    """The table named by an environment variable, created once per container (and settings)
    and reused on warm starts."""
    return boto3.resource("dynamodb", config=config).Table(os.environ.get(variable, default))


@lru_cache(maxsize=None)
def client(service: str, config: Config = AWS_CLIENT_CONFIG) -> Any:
    """One boto3 client per service (and settings) per container."""
    return boto3.client(service, config=config)

