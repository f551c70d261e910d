"""Publish from the app's backend: POST /publish signed with SigV4, as a backend holding IAM
credentials does it. The example to copy is `publish()`: botocore's signer and the default
credential chain (environment, profile, container or instance role), standard library HTTP.

`make publish CHANNEL=deploys SENDER=ci-bot CONTENT='build 812 is green'` (or TO=alice, or ROOM=1)
posts one message to the `make offline` running in this folder; with --url it posts anywhere:

    .venv/bin/python scripts/publish.py --url https://<rest api>.execute-api.<region>.amazonaws.com/dev/publish \\
        --channel deploys --sender ci-bot --content 'build 812 is green'

The stack's output PublishUrl is that URL; the caller's role needs the managed policy in the
output PublishPolicyArn (docs/production.md: "The publish API").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def publish(url: str, messages: list[dict[str, Any]], region: str) -> tuple[int, dict[str, Any]]:
    """POST the messages to `url`, signed for API Gateway (service "execute-api") with the default
    credential chain; the status and the JSON reply."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    body = json.dumps({"messages": messages}, ensure_ascii=False).encode("utf-8")
    request = AWSRequest(method="POST", url=url, data=body, headers={"Content-Type": "application/json"})
    credentials = botocore.session.get_session().get_credentials()
    if credentials is None:
        raise SystemExit("No AWS credentials found (environment, profile or role): POST /publish must be signed.")
    SigV4Auth(credentials, "execute-api", region).add_auth(request)
    prepared = urllib.request.Request(url, data=body, headers=dict(request.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(prepared, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def local_url() -> tuple[str, str]:
    """The running `make offline`'s POST /publish and its region (its state file), with the fake
    credentials only moto accepts (the local stack checks no signature)."""
    from scripts.dev_token import TokenError, running_stack
    from scripts.local_stack import FAKE_ACCESS_KEY, FAKE_SECRET_KEY

    try:
        stack = running_stack()
    except TokenError as error:
        raise SystemExit(f"make publish: {error}") from None
    os.environ.update(AWS_ACCESS_KEY_ID=FAKE_ACCESS_KEY, AWS_SECRET_ACCESS_KEY=FAKE_SECRET_KEY)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    port = stack["ports"]["OFFLINE_HTTP_PORT"]
    return f"http://localhost:{port}/{stack['stage']}/publish", stack["region"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--channel", default=os.environ.get("PUBLISH_CHANNEL") or None)
    where.add_argument("--to", default=os.environ.get("PUBLISH_TO") or None)
    where.add_argument("--room", action="store_true", default=bool(os.environ.get("PUBLISH_ROOM")))
    parser.add_argument("--sender", default=os.environ.get("PUBLISH_SENDER") or None)
    parser.add_argument("--content", default=os.environ.get("PUBLISH_CONTENT"))
    parser.add_argument("--client-message-id", default=None)
    parser.add_argument("--url", help="POST /publish of a deployed stage (default: the running make offline)")
    parser.add_argument("--region", default=os.environ.get("AWS_REGION", ""))
    args = parser.parse_args()
    if not args.sender or args.content is None or not (args.channel or args.to or args.room):
        print("make publish: say SENDER=..., CONTENT=... and one of CHANNEL=..., TO=... or ROOM=1", file=sys.stderr)
        return 1
    message: dict[str, Any] = {"sender": args.sender, "content": args.content}
    message.update({"channel": args.channel} if args.channel else {"to": args.to} if args.to else {"room": True})
    if args.client_message_id:
        message["clientMessageId"] = args.client_message_id
    url, region = (args.url, args.region or "us-east-1") if args.url else local_url()
    status, reply = publish(url, [message], region)
    print(json.dumps(reply, ensure_ascii=False))
    return 0 if status == 200 and not reply.get("failed") else 1


if __name__ == "__main__":
    sys.exit(main())
