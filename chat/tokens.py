"""The $connect authorizer: where a client's token is (a subprotocol, the query string, a header),
verified by chat/verifier.py, and the policy and context API Gateway passes to every route."""

from __future__ import annotations

from typing import Any

from chat import aws, issuers, verifier
from chat.telemetry import count, logger
from chat.verifier import InvalidToken

# A browser cannot set headers on a WebSocket, and a token in the URL ends up in logs and in the
# browser's console: it may offer it as a subprotocol instead, beside SUBPROTOCOL, which $connect
# then selects (a browser refuses a handshake that selects none of the offered subprotocols; API
# Gateway's "Set up a $connect route that requires a WebSocket subprotocol").
SUBPROTOCOL = "serverless-websocket"
TOKEN_SUBPROTOCOL_PREFIX = "bearer."


def authorize(event: dict[str, Any]) -> dict[str, Any]:
    """An Allow policy carrying the user id for a valid token, a Deny policy for anything else.

    A Deny (API Gateway answers 403) rather than raising "Unauthorized", because
    serverless-offline turns a raised error into a 500 but honours a Deny the same way AWS does.
    """
    method_arn = event.get("methodArn", "*")
    try:
        issuers.configured()  # a malformed TOKEN_ISSUERS refuses every connect, loudly
        identity = verifier.verify(request_token(event))
    except issuers.IssuerConfigError:
        logger.exception("TOKEN_ISSUERS is malformed: every connect is refused until it is fixed")
        count("IssuerConfigErrors")
        return _refused(method_arn)
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
    # the channels and moderates claims (API Gateway passes only strings and numbers on: each list
    # as JSON), and the issuer (renewToken takes a token of the same one).
    context: dict[str, Any] = {"userId": identity.user, "exp": identity.expires_at}
    for name, claim in (("channels", identity.channels), ("moderates", identity.moderates)):
        if claim is not None:
            context[name] = verifier.compact(claim)
    if identity.issuer is not None:
        context["issuer"] = identity.issuer
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
