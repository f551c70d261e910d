"""Structured JSON logs and CloudWatch metrics in Embedded Metric Format, from Powertools for
AWS Lambda: metrics are written into the logs, so publishing them costs no API call."""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "serverless-websocket")
logger = Logger(service=SERVICE, level=os.environ.get("LOG_LEVEL", "INFO"))
metrics = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "ServerlessWebsocket"), service=SERVICE)


def count(name: str, value: int = 1) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def milliseconds(name: str, value: float) -> None:
    metrics.add_metric(name=name, unit=MetricUnit.Milliseconds, value=value)


def flush_metrics() -> None:
    if metrics.metric_set:
        metrics.flush_metrics()
