"""The identity providers whose tokens the service takes (Cognito, Auth0, Okta, Google, Keycloak...),
as configured: the environment variable TOKEN_ISSUERS (`--param tokenIssuers='<JSON>'`), a list of

    {"issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC123",
     "jwksUri": "(optional: else the issuer's /.well-known/openid-configuration says)",
     "audience": ["(optional) app client ids"], "algorithms": ["RS256"],
     "userClaim": "sub", "userPrefix": "", "channelsClaim": "channels", "moderatesClaim": "moderates"}

A malformed value is never read as something it does not say: it raises IssuerConfigError, which
refuses every connect (and is logged) until it is fixed.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import urlparse

# The asymmetric algorithms an issuer may sign with (HS256 is the service's own secret, never an
# issuer's: a public key is no secret).
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA")
FIELDS = frozenset(
    {"issuer", "jwksUri", "audience", "algorithms", "userClaim", "userPrefix", "channelsClaim", "moderatesClaim"}
)
MAX_ISSUER_LENGTH = 256
MAX_ISSUERS = 20
LOOPBACK = ("localhost", "127.0.0.1", "::1")


class IssuerConfigError(ValueError):
    """TOKEN_ISSUERS says something that cannot be taken for what it says."""


@dataclass(frozen=True)
class Issuer:
    """One identity provider: its `iss`, where its keys are (None: discovered), which `aud` or
    `client_id` its tokens must name (empty: any), how it signs, and which claims say who the
    user is and what they may do."""

    issuer: str
    jwks_uri: str | None = None
    audience: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ("RS256",)
    user_claim: str = "sub"
    user_prefix: str = ""
    channels_claim: str = "channels"
    moderates_claim: str = "moderates"


def configured() -> dict[str, Issuer]:
    """The configured issuers by their `iss`, read once per container."""
    return _parse(os.environ.get("TOKEN_ISSUERS", "[]"))


@cache
def _parse(text: str) -> dict[str, Issuer]:
    try:
        document = json.loads(text or "[]")
    except ValueError as error:
        raise IssuerConfigError(f"TOKEN_ISSUERS is not JSON: {error}") from None
    if not isinstance(document, list) or len(document) > MAX_ISSUERS:
        raise IssuerConfigError(f"TOKEN_ISSUERS must be a JSON list of at most {MAX_ISSUERS} issuers")
    found: dict[str, Issuer] = {}
    for entry in document:
        issuer = parse_issuer(entry)
        if issuer.issuer in found:
            raise IssuerConfigError(f"TOKEN_ISSUERS names {issuer.issuer} twice")
        found[issuer.issuer] = issuer
    return found


def parse_issuer(entry: Any) -> Issuer:
    if not isinstance(entry, dict) or set(entry) - FIELDS:
        unknown = sorted(set(entry) - FIELDS) if isinstance(entry, dict) else entry
        raise IssuerConfigError(f"an issuer is an object with the fields {sorted(FIELDS)}, not {unknown!r}")
    issuer = entry.get("issuer")
    if not isinstance(issuer, str) or not 0 < len(issuer) <= MAX_ISSUER_LENGTH or not secure_url(issuer):
        raise IssuerConfigError(f"an issuer's \"issuer\" is its https:// URL, as its tokens' iss says: {issuer!r}")
    jwks_uri = entry.get("jwksUri")
    if jwks_uri is not None and (not isinstance(jwks_uri, str) or not secure_url(jwks_uri)):
        raise IssuerConfigError(
            f"{issuer}: jwksUri must be an https:// URL (http:// only on this machine): {jwks_uri!r}"
        )
    audience = entry.get("audience", [])
    if isinstance(audience, str):
        audience = [audience]
    if not isinstance(audience, list) or not all(isinstance(a, str) and a for a in audience):
        raise IssuerConfigError(f"{issuer}: audience must be a list of client ids")
    algorithms = entry.get("algorithms", ["RS256"])
    if not isinstance(algorithms, list) or not algorithms or not set(algorithms) <= set(ASYMMETRIC):
        raise IssuerConfigError(f"{issuer}: algorithms must be a non-empty list of {', '.join(ASYMMETRIC)}")
    claims = {
        name: entry.get(name, default)
        for name, default in (("userClaim", "sub"), ("channelsClaim", "channels"), ("moderatesClaim", "moderates"))
    }
    if not all(isinstance(value, str) and value for value in claims.values()):
        raise IssuerConfigError(f"{issuer}: userClaim, channelsClaim and moderatesClaim are claim names")
    prefix = entry.get("userPrefix", "")
    if not isinstance(prefix, str) or "#" in prefix or len(prefix) > 64:
        raise IssuerConfigError(f'{issuer}: userPrefix is text of at most 64 characters, without "#"')
    return Issuer(
        issuer,
        jwks_uri,
        tuple(audience),
        tuple(algorithms),
        claims["userClaim"],
        prefix,
        claims["channelsClaim"],
        claims["moderatesClaim"],
    )


def secure_url(url: str) -> bool:
    """https://, or http:// to this machine only (the local stack and tests): keys fetched over
    plain HTTP from anywhere else could be anyone's."""
    parsed = urlparse(url)
    if parsed.scheme == "https" and parsed.hostname:
        return True
    return parsed.scheme == "http" and parsed.hostname is not None and is_loopback(parsed.hostname)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
