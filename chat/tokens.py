"""The $connect authorizer's side: the JWT a client connects with, and the secret it is
checked against, read from SSM Parameter Store and cached per container."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
from botocore.config import Config

from chat import aws
from chat.telemetry import count, logger
from chat.users import checked_user_id

# Tokens: HS256 only (so "none" and RS/HS confusion are refused), "exp" and "sub" required.
TOKEN_ALGORITHMS = ["HS256"]
TOKEN_LEEWAY_SECONDS = 30
# The latest `exp` accepted: a year from now. Identity providers issue tokens for minutes or
# hours, and a connection lives at most 2 hours whatever its token says.
MAX_TOKEN_LIFETIME_SECONDS = 366 * 24 * 60 * 60
# The `channels` claim: channel names (chat/requests.py's rule) or prefixes of them before "*".
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,100}|[A-Za-z0-9_.:-]{0,99}\*")
MAX_CHANNEL_PATTERNS = 100
# The secret is re-read from SSM this often, so a rotated secret takes effect without a deploy;
# when a re-read fails (SSM throttled or down), the known secret is used for up to an hour.
SECRET_CACHE_SECONDS = 300
SECRET_MAX_STALENESS_SECONDS = 3600
# Parameter Store allows 40 GetParameter a second by default: after a deploy or a network blip,
# thousands of reconnecting clients start cold authorizers at once. Four attempts with
# botocore's jittered backoff (up to 2, 4, 8 s for throttling) spread them out instead of
# refusing valid users, and still end inside the 29 s API Gateway waits.
SSM_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 4})


# A browser cannot set headers on a WebSocket, and a token in the URL ends up in logs and in the
# browser's console: it may offer it as a subprotocol instead, beside SUBPROTOCOL, which $connect
# then selects (a browser refuses a handshake that selects none of the offered subprotocols; API
# Gateway's "Set up a $connect route that requires a WebSocket subprotocol").
SUBPROTOCOL = "serverless-websocket"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."


class InvalidToken(ValueError):
    """The $connect request carries no usable token; the text goes to the log only."""


def authorize(event: dict[str, Any]) -> dict[str, Any]:
    """An Allow policy carrying the user id for a valid token, a Deny policy for anything else.

    A Deny (API Gateway answers 403) rather than raising "Unauthorized", because
    serverless-offline turns a raised error into a 500 but honours a Deny the same way AWS does.
    """
    method_arn = event.get("methodArn", "*")
    try:
        identity = verify_token(request_token(event), jwt_secret())
    except InvalidToken as error:
        logger.info("Refused connection: %s", error)
        return _refused(method_arn)
    except aws.AWS_ERRORS:
        logger.exception("Could not read the token secret; refusing the connection")
        count("AwsErrors")
        return _refused(method_arn)
    logger.append_keys(user=identity.user)
    logger.info("Handled", outcome="allowed")
    # On every route of the connection: who, until when (token expiry is enforced on each frame),
    # and the channels claim (API Gateway passes only strings and numbers on: the list as JSON).
    context: dict[str, Any] = {"userId": identity.user, "exp": identity.expires_at}
    if identity.channels is not None:
        context["channels"] = json.dumps(identity.channels, separators=(",", ":"))
    return policy(identity.user, "Allow", method_arn, context)


def _refused(method_arn: str) -> dict[str, Any]:
    count("ConnectionsRefused")
    logger.info("Handled", outcome="denied")
    return policy("anonymous", "Deny", method_arn)


def request_token(event: dict[str, Any]) -> str:
    """The token a client connects with: offered as a WebSocket subprotocol "bearer.<JWT>" (what
    a browser can send without putting the token in the URL), in ?token=..., or in an
    Authorization: Bearer header (wscat -H, servers)."""
    headers = {str(name).lower(): value for name, value in (event.get("headers") or {}).items()}
    for offered in subprotocols(headers.get("sec-websocket-protocol")):
        if offered.startswith(TOKEN_SUBPROTOCOL_PREFIX) and len(offered) > len(TOKEN_SUBPROTOCOL_PREFIX):
            return offered[len(TOKEN_SUBPROTOCOL_PREFIX) :]
    token = (event.get("queryStringParameters") or {}).get("token")
    if isinstance(token, str) and token:
        return token
    authorization = headers.get("authorization")
    scheme, _, credentials = (authorization if isinstance(authorization, str) else "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    raise InvalidToken("no token in a bearer.<JWT> subprotocol, the query string or an Authorization: Bearer header")


def subprotocols(header: Any) -> list[str]:
    """The subprotocols a client offered: Sec-WebSocket-Protocol is a comma-separated list."""
    return [part.strip() for part in header.split(",") if part.strip()] if isinstance(header, str) else []


@dataclass(frozen=True)
class Identity:
    """What a valid token says: the user (`sub`), when it expires (`exp`, epoch seconds), and the
    channels it allows (None without a `channels` claim)."""

    user: str
    expires_at: int
    channels: list[str] | None = None


def verify_token(token: str, secret: str) -> Identity:
    """The identity in a valid token, or InvalidToken saying why not."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=TOKEN_ALGORITHMS,
            leeway=TOKEN_LEEWAY_SECONDS,
            options={"require": ["exp", "sub"]},
        )
    except (jwt.InvalidTokenError, UnicodeError) as error:  # a lone surrogate cannot even be encoded
        raise InvalidToken(f"{type(error).__name__}: {error}") from None
    user_id = checked_user_id(claims["sub"])
    if user_id is None:
        raise InvalidToken("the token's sub is not a valid user id")
    return Identity(user_id, expiry(claims["exp"]), channel_claim(claims.get("channels")))


def expiry(exp: Any) -> int:
    """`exp` as whole epoch seconds: RFC 7519's NumericDate is a JSON number (a fraction allowed),
    never a string (PyJWT accepts "1900000000": it checks int(exp)), and no later than
    MAX_TOKEN_LIFETIME_SECONDS from now (a year past 9999 could be stored, then never shown)."""
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise InvalidToken(f"the token's exp is not a number: {exp!r}")
    if exp > time.time() + MAX_TOKEN_LIFETIME_SECONDS:
        raise InvalidToken(f"the token's exp is more than {MAX_TOKEN_LIFETIME_SECONDS // 86400} days away: {exp!r}")
    return int(exp)


def channel_claim(value: Any) -> list[str] | None:
    """The `channels` claim: at most MAX_CHANNEL_PATTERNS channel names, each possibly ending in
    "*" (a prefix: "team-*", or "*" for all). A malformed claim refuses the token rather than
    guessing what it was meant to allow."""
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_CHANNEL_PATTERNS
        or not all(isinstance(pattern, str) and CHANNEL_PATTERN.fullmatch(pattern) for pattern in value)
    ):
        raise InvalidToken(
            f"the token's channels claim is not a list of at most {MAX_CHANNEL_PATTERNS} channel names or prefixes*"
        )
    return value


# Parameter name -> (secret, when it was read): one entry per container.
_secrets: dict[str, tuple[str, float]] = {}


def jwt_secret() -> str:
    """The signing secret from SSM, cached per container for SECRET_CACHE_SECONDS; a secret
    already known is kept (for SECRET_MAX_STALENESS_SECONDS) when a re-read fails, so an SSM
    outage or throttling does not lock out users."""
    name = os.environ.get("JWT_SECRET_PARAMETER", "")
    if not name:
        raise InvalidToken("JWT_SECRET_PARAMETER is not set: no secret to verify tokens with")
    now = _now()
    known = _secrets.get(name)
    if known and now - known[1] < SECRET_CACHE_SECONDS:
        return known[0]
    try:
        secret = ssm_client().get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except aws.AWS_ERRORS:
        if known and now - known[1] < SECRET_MAX_STALENESS_SECONDS:
            logger.warning(
                "Could not refresh the token secret; using the one read %d s ago", now - known[1], exc_info=True
            )
            return known[0]
        raise
    _secrets[name] = (str(secret), now)
    return str(secret)


def _now() -> float:
    return time.time()


def ssm_client() -> Any:
    return aws.client("ssm", SSM_CLIENT_CONFIG)


def policy(principal_id: str, effect: str, resource: str, context: dict[str, str] | None = None) -> dict[str, Any]:
    document: dict[str, Any] = {
        "principalId": principal_id,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
    }
    if context:
        document["context"] = context
    return document
