"""`make preflight`: before `sls deploy`, check with your AWS credentials what the deploy needs from
the account and cannot create itself, and say what is missing in words a person acts on:

1. credentials that work (STS GetCallerIdentity);
2. the Powertools layer's public SSM parameter in the target Region (CloudFormation resolves it at
   deploy time; versioned parameters have gone missing before: powertools-lambda-python#7689);
3. the token secret, a SecureString you create once per stage;
4. whether the account has API Gateway's CloudWatch role in that Region (information: the stack
   sets it unless deployed with --param setApiGatewayAccountRole=false).

Usage: make preflight [STAGE=dev] [REGION=ap-northeast-2] [POWERTOOLS_PARAMETER=<name>]
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402


@dataclass(frozen=True)
class Check:
    ok: bool
    text: str
    blocking: bool = True


def run_checks(session: Any, region: str, powertools_parameter: str, secret_parameter: str) -> list[Check]:
    """Each check's outcome, in order; the later ones are skipped when the credentials fail."""
    try:
        account = session.client("sts", region_name=region).get_caller_identity()["Account"]
    except (BotoCoreError, ClientError) as error:
        return [Check(False, f"AWS credentials: {error} (set AWS_PROFILE or the AWS_* variables)")]
    checks = [Check(True, f"AWS credentials: account {account}, region {region}")]
    ssm = session.client("ssm", region_name=region)
    try:
        arn = ssm.get_parameter(Name=powertools_parameter)["Parameter"]["Value"]
        checks.append(Check(True, f"Powertools layer: {arn}"))
    except (BotoCoreError, ClientError) as error:
        checks.append(Check(False, f"Powertools layer: the SSM parameter {powertools_parameter} cannot be read in {region} "
                                   f"({_reason(error)}). Put the layer's ARN in a String parameter of your own and "
                                   "deploy with --param powertoolsLayerParameter=<its name> (docs/production.md)."))
    try:
        kind = ssm.get_parameter(Name=secret_parameter)["Parameter"]["Type"]
        checks.append(Check(kind == "SecureString", f"Token secret: {secret_parameter} is a {kind}"
                            + ("" if kind == "SecureString" else "; make it a SecureString (docs/production.md)")))
    except (BotoCoreError, ClientError) as error:
        checks.append(Check(False, f"Token secret: {secret_parameter} cannot be read in {region} ({_reason(error)}). Create "
                                   f"it once: aws ssm put-parameter --region {region} --type SecureString --name "
                                   f'{secret_parameter} --value "$(openssl rand -base64 48)"'))
    try:
        role = session.client("apigateway", region_name=region).get_account().get("cloudwatchRoleArn")
        checks.append(Check(True, f"API Gateway's CloudWatch role in {region}: "
                                  + (f"{role} (deploy with --param setApiGatewayAccountRole=false to keep it)" if role
                                     else "not set (the stack sets it)"), blocking=False))
    except (BotoCoreError, ClientError) as error:
        checks.append(Check(False, f"API Gateway's CloudWatch role: {_reason(error)}", blocking=False))
    return checks


def _reason(error: Exception) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", error))
    return str(error)


def main(argv: list[str] | None = None) -> int:
    import boto3

    from scripts.service_config import resolved_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--region", default="", help="default: serverless.yml's")
    parser.add_argument("--powertools-parameter", default="", help="default: the one serverless.yml names")
    args = parser.parse_args(argv)
    config = resolved_config(args.stage)
    region = args.region or config["provider"]["region"]
    powertools = args.powertools_parameter or config["resources"]["Parameters"]["PowertoolsLayerArn"]["Default"]
    secret = config["provider"]["environment"]["JWT_SECRET_PARAMETER"]
    checks = run_checks(boto3.Session(), region, powertools, secret)
    for check in checks:
        print(("ok    " if check.ok else "FAIL  " if check.blocking else "note  ") + check.text)
    failed = [check for check in checks if check.blocking and not check.ok]
    print("Ready to deploy." if not failed else f"Not ready: {len(failed)} check(s) failed.")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
