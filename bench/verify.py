"""How many tokens a warm $connect authorizer verifies a second, by algorithm: the service's own
HS256, and an identity provider's RS256 and ES256, with the secret and the keys already cached
(no network: the SSM secret from moto, read once; the JWKS from a loopback server, fetched once).
Each is handler.authorize on a token event, in one process, alternating in rounds; printed: the
verifications a second of each and their ratio to HS256's.

Usage: python bench/verify.py [--tokens 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_aws import use_fake_aws  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    use_fake_aws(JWT_SECRET_PARAMETER="/bench/jwt-secret")

    import boto3
    import jwt
    from moto import mock_aws

    from tests.support.events import authorizer_event
    from tests.support.identity_providers import JwksServer

    server = JwksServer()
    rs, es = server.add("rs", "RS256"), server.add("es", "ES256")
    os.environ["TOKEN_ISSUERS"] = json.dumps([{"issuer": rs.issuer, "jwksUri": server.jwks_uri("rs")},
                                              {"issuer": es.issuer, "jwksUri": server.jwks_uri("es"), "algorithms": ["ES256"]}])
    secret = "bench-secret-" + "x" * 60
    events = {
        "HS256": authorizer_event(query_token=jwt.encode({"sub": "alice", "exp": int(time.time()) + 3600}, secret, "HS256")),
        "RS256": authorizer_event(query_token=rs.token()),
        "ES256": authorizer_event(query_token=es.token()),
    }
    rates: dict[str, list[float]] = {name: [] for name in events}
    with mock_aws(), contextlib.redirect_stdout(open(os.devnull, "w")):
        boto3.client("ssm").put_parameter(Name="/bench/jwt-secret", Value=secret, Type="SecureString")
        import handler

        for event in events.values():  # warm: the secret read, the keys fetched
            assert handler.authorize(event, None)["policyDocument"]["Statement"][0]["Effect"] == "Allow"
        for _ in range(args.rounds):
            for name, event in events.items():
                started = time.perf_counter()
                for _ in range(args.tokens // args.rounds):
                    handler.authorize(event, None)
                rates[name].append((args.tokens // args.rounds) / (time.perf_counter() - started))
    server.close()
    assert server.fetches("rs") == server.fetches("es") == 1  # the keys were fetched once, then cached

    best = {name: max(found) for name, found in rates.items()}
    print(f"A warm authorizer in one process, {args.tokens} tokens each, {args.rounds} alternating rounds (best round):")
    for name, rate in best.items():
        print(f"  {name}: {rate:,.0f} verifications a second ({rate / best['HS256']:.2f}x HS256)")
    print("  the JWKS of each issuer was fetched once (then cached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
