"""Print a token for a user: `make token USER=alice`, or `python scripts/dev_token.py alice`.

By default the secret is read from the local stack that `make offline` runs (moto's SSM).
With --aws it is read from the deployed stage's SSM parameter with your own AWS credentials,
for trying the deployed API with wscat.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

from scripts.local_stack import DEV_TOKEN_HOURS, Ports, local_session, mint_token  # noqa: E402
from scripts.service_config import resolved_config  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user", help="the user id to put in the token's sub")
    parser.add_argument("--hours", type=float, default=DEV_TOKEN_HOURS, help="validity (default %(default)s)")
    parser.add_argument("--aws", action="store_true", help="read the secret from real AWS, not the local stack")
    parser.add_argument("--stage", default="dev")
    parser.add_argument("--region", help="with --aws: the stage's region (default: serverless.yml's)")
    args = parser.parse_args()

    config = resolved_config(args.stage)
    parameter = config["provider"]["environment"]["JWT_SECRET_PARAMETER"]
    region = args.region or config["provider"]["region"]
    try:
        if args.aws:
            import boto3

            ssm = boto3.client("ssm", region_name=region)
            where = f"SSM parameter {parameter} in {region}"
        else:
            endpoint = f"http://127.0.0.1:{Ports.from_env().dynamodb}"
            ssm = local_session(region).client("ssm", endpoint_url=endpoint)
            where = f"the local stack at {endpoint} (is `make offline` running?)"
        secret = ssm.get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as error:
        print(f"make token: could not read the secret from {where}: {error}", file=sys.stderr)
        return 1
    print(mint_token(secret, args.user, args.hours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
