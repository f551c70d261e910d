"""The one verifier of tokens, behind the $connect authorizer and renewToken alike, with two key
sources (Centrifugo's jwtverify beside its jwks): the service's own secret for HS256 tokens (an
SSM SecureString, cached per container), and the configured identity providers' public keys for
asymmetric ones (chat/issuers.py, chat/jwks.py).

The rules, whoever signed:
- HS256 is checked only against the service's own secret, HS384/512 never; an asymmetric token
  only against a key of the configured issuer whose `issuer` equals its `iss` exactly, with an
  algorithm that issuer allows. No `iss`, an unknown one, `alg: none`, or an HS256 token signed
  with an issuer's public key as its secret: refused.
- `exp` required (a JSON number, at most a year away); `nbf` and `iat` honoured; 30 s leeway.
- With an audience configured, `aud` (string or list) must name one of them; a token without
  `aud` passes only if its `client_id` is one (Cognito's access tokens); a `token_use` other than
  `id` or `access` is refused.
- The user is `userPrefix` + the `userClaim`, and must be a valid user id. The channels and
  moderates claims follow one syntax, within caps that keep the authorizer's answer under API
  Gateway's 8 KB.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
from botocore.config import Config

from chat import aws, issuers, jwks
from chat.telemetry import count, logger
from chat.users import checked_user_id

# The service's own tokens: HS256 only ("none" and RS/HS confusion refused), "exp" and "sub" required.
OWN_ALGORITHM = "HS256"
TOKEN_LEEWAY_SECONDS = 30
# The latest `exp` accepted: a year from now. Identity providers issue tokens for minutes or
# hours, and a connection lives at most 2 hours whatever its token says.
MAX_TOKEN_LIFETIME_SECONDS = 366 * 24 * 60 * 60
# The `channels` and `moderates` claims: channel names (chat/requests.py's rule) or prefixes of
# them before "*"; at most MAX_CHANNEL_PATTERNS of them, and at most CLAIM_BYTES of JSON each
# (both pass to every route in the authorizer's context, all of which API Gateway caps at 8 KB).
CHANNEL_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,100}|[A-Za-z0-9_.:-]{0,99}\*")
MAX_CHANNEL_PATTERNS = 100
CLAIM_BYTES = {"channels": 2500, "moderates": 1000}
TOKEN_USES = ("id", "access")
# The secret is re-read from SSM this often, so a rotated secret takes effect without a deploy;
# when a re-read fails (SSM throttled or down), the known secret is used for up to an hour.
SECRET_CACHE_SECONDS = 300
SECRET_MAX_STALENESS_SECONDS = 3600
# Parameter Store allows 40 GetParameter a second by default: after a deploy or a network blip,
# thousands of reconnecting clients start cold authorizers at once. Four attempts with
# botocore's jittered backoff (up to 2, 4, 8 s for throttling) spread them out instead of
# refusing valid users, and still end inside the 29 s API Gateway waits.
SSM_CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 4})


class InvalidToken(ValueError):
    """The token cannot be taken; the text goes to the log only."""


@dataclass(frozen=True)
class Identity:
    """What a valid token says: the user, when it expires (`exp`, epoch seconds), the channels it
    allows and moderates (None without the claim), and who issued it (None: the service itself)."""

    user: str
    expires_at: int
    channels: list[str] | None = None
    moderates: list[str] | None = None
    issuer: str | None = None


def verify(token: str) -> Identity:
    """The identity in a valid token, or InvalidToken saying why not."""
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.InvalidTokenError, UnicodeError) as error:  # a lone surrogate cannot even be encoded
        raise InvalidToken(f"{type(error).__name__}: {error}") from None
    algorithm = header.get("alg")
    if algorithm == OWN_ALGORITHM:
        return _own(token)
    if algorithm in issuers.ASYMMETRIC:
        return _issued(token, algorithm, header.get("kid"))
    raise InvalidToken(f"the token's algorithm is not taken: {algorithm!r}")


def _own(token: str) -> Identity:
    claims = _decode(token, jwt_secret(), [OWN_ALGORITHM], ["exp", "sub"])
    user = checked_user_id(claims["sub"])
    if user is None:
        raise InvalidToken("the token's sub is not a valid user id")
    return Identity(
        user,
        expiry(claims["exp"]),
        pattern_claim(claims, "channels", "channels"),
        pattern_claim(claims, "moderates", "moderates"),
    )


def _issued(token: str, algorithm: str, kid: Any) -> Identity:
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
        configured = issuers.configured()
    except jwt.InvalidTokenError as error:
        raise InvalidToken(f"{type(error).__name__}: {error}") from None
    except issuers.IssuerConfigError:
        logger.exception("TOKEN_ISSUERS is malformed: every token of an issuer is refused until it is fixed")
        count("IssuerConfigErrors")
        raise InvalidToken("TOKEN_ISSUERS is malformed") from None
    iss = unverified.get("iss")
    issuer = configured.get(iss) if isinstance(iss, str) else None
    if issuer is None:
        raise InvalidToken(f"the token's iss is not a configured issuer: {iss!r}")
    if algorithm not in issuer.algorithms:
        raise InvalidToken(f"{issuer.issuer} does not sign with {algorithm}")
    if kid is not None and not isinstance(kid, str):
        raise InvalidToken("the token's kid is not text")
    try:
        key = jwks.signing_key(issuer, kid)
    except jwks.KeysUnavailable as error:
        raise InvalidToken(str(error)) from None
    claims = _decode(token, key, [algorithm], ["exp", "iss"], issuer=issuer.issuer)
    _check_audience(claims, issuer)
    value = claims.get(issuer.user_claim)
    user = checked_user_id(issuer.user_prefix + value) if isinstance(value, str) else None
    if user is None:
        raise InvalidToken(f"the token's {issuer.user_claim} does not make a valid user id")
    return Identity(
        user,
        expiry(claims["exp"]),
        pattern_claim(claims, issuer.channels_claim, "channels"),
        pattern_claim(claims, issuer.moderates_claim, "moderates"),
        issuer.issuer,
    )


def _decode(
    token: str, key: Any, algorithms: list[str], required: list[str], issuer: str | None = None
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            leeway=TOKEN_LEEWAY_SECONDS,
            issuer=issuer,
            options={"require": required, "verify_aud": False},
        )
    except (jwt.InvalidTokenError, UnicodeError, TypeError, ValueError) as error:
        raise InvalidToken(f"{type(error).__name__}: {error}") from None
    return claims


def _check_audience(claims: dict[str, Any], issuer: issuers.Issuer) -> None:
    token_use = claims.get("token_use")
    if token_use is not None and token_use not in TOKEN_USES:
        raise InvalidToken(f"the token's token_use is {token_use!r}, not id or access")
    if not issuer.audience:
        return
    audience = claims.get("aud")
    named = [audience] if isinstance(audience, str) else audience if isinstance(audience, list) else None
    if named is None and "aud" not in claims:
        named = [claims.get("client_id")]  # Cognito access tokens name their app client so
    if not named or not set(issuer.audience) & {a for a in named if isinstance(a, str)}:
        raise InvalidToken(f"the token is not for this service's audience: aud {audience!r}")


def expiry(exp: Any) -> int:
    """`exp` as whole epoch seconds: RFC 7519's NumericDate is a JSON number (a fraction allowed),
    never a string (PyJWT accepts "1900000000": it checks int(exp)), and no later than
    MAX_TOKEN_LIFETIME_SECONDS from now (a year past 9999 could be stored, then never shown)."""
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise InvalidToken(f"the token's exp is not a number: {exp!r}")
    if exp > time.time() + MAX_TOKEN_LIFETIME_SECONDS:
        raise InvalidToken(f"the token's exp is more than {MAX_TOKEN_LIFETIME_SECONDS // 86400} days away: {exp!r}")
    return int(exp)


def pattern_claim(claims: dict[str, Any], claim: str, kind: str) -> list[str] | None:
    """A `channels` or `moderates` claim (under the name `claim`): at most MAX_CHANNEL_PATTERNS
    channel names, each possibly ending in "*" (a prefix: "team-*", or "*" for all), in at most
    CLAIM_BYTES[kind] of JSON. A malformed claim refuses the token rather than guessing what it
    was meant to allow."""
    value = claims.get(claim)
    if value is None:
        return None
    if (
        not isinstance(value, list)
        or len(value) > MAX_CHANNEL_PATTERNS
        or not all(isinstance(pattern, str) and CHANNEL_PATTERN.fullmatch(pattern) for pattern in value)
    ):
        raise InvalidToken(
            f"the token's {claim} claim is not a list of at most {MAX_CHANNEL_PATTERNS} channel names or prefixes*"
        )
    if len(compact(value)) > CLAIM_BYTES[kind]:
        raise InvalidToken(f"the token's {claim} claim is over {CLAIM_BYTES[kind]} bytes of JSON")
    return value


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


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
