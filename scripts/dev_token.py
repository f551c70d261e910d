"""Print a token for a user: `make token FOR=alice`, or `.venv/bin/python scripts/dev_token.py alice`.

`make token FOR=alice HOURS=0.05 CHANNELS='team-*,lobby' MODERATES=lobby`: a token valid 3
minutes (to try expiry and renewal), allowing only the channels team-* and lobby (the `channels`
claim), moderating lobby (the `moderates` claim, same syntax).

By default the secret is read from the `make offline` running in this folder (moto's SSM): it
is found through the .offline/stack-<port>.json file it writes while it runs. With several
running, OFFLINE_WEBSOCKET_PORT picks one. With --aws the secret is read from the deployed
stage's SSM parameter with your own AWS credentials, for trying the deployed API with wscat.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from botocore.exceptions import BotoCoreError, ClientError  # noqa: E402

from chat import users, verifier  # noqa: E402  (the authorizer's own rules)
from scripts.local_stack import DEV_TOKEN_HOURS, StackError, local_session, mint_token, port_from_env  # noqa: E402
from scripts.offline import STATE_DIR, state_file  # noqa: E402


class TokenError(RuntimeError):
    """Why no token can be printed, for a person to read."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("user", nargs="?", default=os.environ.get("DEV_TOKEN_USER", ""), help="the user id (the token's sub)")
    parser.add_argument("--hours", default=os.environ.get("DEV_TOKEN_HOURS") or str(DEV_TOKEN_HOURS),
                        help="validity in hours (default %(default)s)")
    parser.add_argument("--channels", default=os.environ.get("DEV_TOKEN_CHANNELS", ""),
                        help="the channels claim: names or prefixes* separated by commas (default: no claim, every channel)")
    parser.add_argument("--moderates", default=os.environ.get("DEV_TOKEN_MODERATES", ""),
                        help="the moderates claim: the same syntax (default: none)")
    parser.add_argument("--issuer", default=os.environ.get("DEV_TOKEN_ISSUER", ""),
                        help="cognito: sign in to the local Cognito user pool and print its ID token")
    parser.add_argument("--aws", action="store_true", help="read the secret from real AWS, not the local stack")
    parser.add_argument("--stage", default="dev", help="with --aws: the deployed stage (default %(default)s)")
    parser.add_argument("--region", help="with --aws: the stage's region (default: serverless.yml's)")
    args = parser.parse_args()
    try:
        user = user_id(args.user)
        if args.issuer:
            print(cognito_token(user, args.issuer))
            return 0
        hours = validity(args.hours)
        claims = {name: patterns(name, text) for name, text in (("channels", args.channels), ("moderates", args.moderates)) if text}
        secret = aws_secret(args.stage, args.region) if args.aws else local_secret()
    except TokenError as error:
        # Named as the user called it: `make token` sets DEV_TOKEN_CALLER; --aws is run directly.
        print(f"{os.environ.get('DEV_TOKEN_CALLER') or 'scripts/dev_token.py'}: {error}", file=sys.stderr)
        return 1
    print(mint_token(secret, user, hours, **claims))
    return 0


def cognito_token(user: str, issuer: str) -> str:
    """The ID token the running stack's Cognito user pool gives `user` for their password."""
    from scripts.local_stack import COGNITO_USERS

    if issuer != "cognito":
        raise TokenError(f"ISSUER may be cognito (the local user pool), not {issuer!r}.")
    if user not in COGNITO_USERS:
        raise TokenError(f"the local Cognito user pool has {' and '.join(COGNITO_USERS)}, not {user!r}.")
    stack = running_stack()
    cognito = local_session(stack["region"]).client("cognito-idp", endpoint_url=stack["ssm_endpoint"])
    try:
        answer = cognito.initiate_auth(ClientId=stack["user_pool_client_id"], AuthFlow="USER_PASSWORD_AUTH",
                                       AuthParameters={"USERNAME": user, "PASSWORD": COGNITO_USERS[user]})
    except (BotoCoreError, ClientError, KeyError) as error:
        raise TokenError(f"could not sign {user} in to the local Cognito user pool: {error}") from None
    return str(answer["AuthenticationResult"]["IdToken"])


def validity(text: str) -> float:
    """HOURS: a positive number, at most a year (the authorizer refuses an exp further away)."""
    try:
        hours = float(text)
    except ValueError:
        hours = -1.0
    if not 0 < hours <= verifier.MAX_TOKEN_LIFETIME_SECONDS / 3600 - 1:
        raise TokenError(f"HOURS must be a number of hours above 0 and below a year (8783), not {text!r}.")
    return hours


def patterns(claim: str, text: str) -> list[str]:
    """CHANNELS or MODERATES: channel names or prefixes ending in "*", separated by commas, as the
    authorizer reads the claim (chat/verifier.py)."""
    found = [part.strip() for part in text.split(",") if part.strip()]
    bad = [part for part in found if not verifier.CHANNEL_PATTERN.fullmatch(part)]
    if bad or not found or len(found) > verifier.MAX_CHANNEL_PATTERNS:
        raise TokenError(f"{claim.upper()} must be up to {verifier.MAX_CHANNEL_PATTERNS} channel names or prefixes "
                         f"ending in \"*\", separated by commas; not {', '.join(map(repr, bad)) or repr(text)}.")
    return found


def user_id(text: str) -> str:
    """The id exactly as given, if the authorizer accepts it, or TokenError saying the rule
    (and the canonical spelling, when the text has one: it is not silently used instead)."""
    if not text:
        raise TokenError("say which user the token is for: make token FOR=alice")
    user = users.checked_user_id(text)
    if user is None:
        canonical = users.canonical_form(text)
        hint = f" Did you mean {canonical!r}?" if canonical and users.is_valid_user_id(canonical) else ""
        raise TokenError(f"{text!r} is not a user id the authorizer accepts: {users.USER_ID_RULE}.{hint}")
    return user


def running_stack() -> dict[str, Any]:
    """The state of the `make offline` running in this folder (the one on
    OFFLINE_WEBSOCKET_PORT if that is set), or TokenError."""
    try:
        port = port_from_env(os.environ, "OFFLINE_WEBSOCKET_PORT", 0)
    except StackError as error:
        raise TokenError(str(error)) from None
    paths = [state_file(port)] if port else sorted(STATE_DIR.glob("stack-*.json"))
    stacks = [state for state in map(_read_state, paths) if state is not None]
    if not stacks:
        where = f" on WebSocket port {port}" if port else ""
        raise TokenError(f"no `make offline` is running in this folder{where}: start it first (make offline).")
    if len(stacks) > 1:
        ports = ", ".join(state["ports"]["OFFLINE_WEBSOCKET_PORT"] for state in stacks)
        raise TokenError(f"several `make offline` are running (WebSocket ports {ports}): choose one with OFFLINE_WEBSOCKET_PORT=...")
    return stacks[0]


def _read_state(path: Path) -> dict[str, Any] | None:
    """A state file whose process still runs; a stale one (the stack was killed) is removed."""
    try:
        state = json.loads(path.read_text())
        os.kill(int(state["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        if path.exists():
            path.unlink(missing_ok=True)
        return None
    return state


def local_secret() -> str:
    stack = running_stack()
    ssm = local_session(stack["region"]).client("ssm", endpoint_url=stack["ssm_endpoint"])
    try:
        return ssm.get_parameter(Name=stack["secret_parameter"], WithDecryption=True)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as error:
        raise TokenError(f"could not read the secret from the local stack at {stack['ssm_endpoint']}: {error}") from None


def aws_secret(stage: str, region: str | None) -> str:
    import boto3

    from scripts.service_config import resolved_config

    config = resolved_config(stage)
    parameter = config["provider"]["environment"]["JWT_SECRET_PARAMETER"]
    region = region or config["provider"]["region"]
    try:
        return boto3.client("ssm", region_name=region).get_parameter(Name=parameter, WithDecryption=True)["Parameter"]["Value"]
    except (BotoCoreError, ClientError) as error:
        raise TokenError(f"could not read the secret from SSM parameter {parameter} in {region}: {error}") from None


if __name__ == "__main__":
    sys.exit(main())
