"""`make preflight` (scripts/preflight.py): what a deploy needs from the account and cannot create
itself, checked with the caller's credentials against moto, each failure saying what to do."""

from __future__ import annotations

from typing import Any

import boto3

from scripts.preflight import run_checks

REGION = "ap-northeast-2"
POWERTOOLS = "/aws/service/powertools/python/arm64/python3.13/3.37.0"
SECRET = "/serverless-websocket/dev/jwt-secret"


def texts(checks: list[Any]) -> list[tuple[bool, str]]:
    return [(check.ok, check.text.split(":")[0]) for check in checks]


def test_a_missing_powertools_parameter_and_secret_are_named_with_what_to_do(aws: None) -> None:
    # moto, like AWS, holds no /aws/service parameter a test could put there: it is missing.
    checks = run_checks(boto3.Session(), REGION, POWERTOOLS, SECRET)

    assert texts(checks) == [(True, "AWS credentials"), (False, "Powertools layer"), (False, "Token secret"),
                             (True, "API Gateway's CloudWatch role in ap-northeast-2")]
    assert POWERTOOLS in checks[1].text and "--param powertoolsLayerParameter=" in checks[1].text
    assert f"aws ssm put-parameter --region {REGION} --type SecureString --name {SECRET}" in checks[2].text
    assert checks[3].blocking is False


def test_a_layer_parameter_of_your_own_and_a_secret_pass(aws: None) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    ssm.put_parameter(Name="/my/powertools-layer", Value="arn:aws:lambda:ap-northeast-2:017000801446:layer:X:1", Type="String")
    ssm.put_parameter(Name=SECRET, Value="s" * 48, Type="SecureString")

    checks = run_checks(boto3.Session(), REGION, "/my/powertools-layer", SECRET)

    assert all(check.ok for check in checks)
    assert "arn:aws:lambda:ap-northeast-2:017000801446:layer:X:1" in checks[1].text


def test_a_secret_that_is_not_secure_is_refused(aws: None) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(Name=SECRET, Value="plain", Type="String")

    secret = run_checks(boto3.Session(), REGION, POWERTOOLS, SECRET)[2]

    assert not secret.ok and "make it a SecureString" in secret.text
