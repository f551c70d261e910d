"""The signing keys of the configured issuers (chat/issuers.py), fetched from their JWKS endpoints
and cached per issuer in the warm container: a key is looked up by (issuer, `kid`), never by `kid`
alone, so one issuer's token is never checked with another issuer's key (Centrifugo's
CVE-2026-49998 did that).

PyJWT's PyJWKClient does the fetching and caching: a key set is kept KEYS_LIFESPAN_SECONDS (so a
key the issuer removed stops working within an hour); an unknown `kid` refetches at most once per
REFETCH_COOLDOWN_SECONDS (a new key works once it is published and the cooldown since the last
fetch has passed; a flood of random `kid`s costs one fetch); HTTPS only (plain HTTP to this
machine only), FETCH_TIMEOUT_SECONDS, no redirects. Added here: when a refetch fails while keys
are known, the known keys keep working for up to KEYS_MAX_STALENESS_SECONDS more, as the token
secret does when SSM fails; with none known, the token is refused.
"""

from __future__ import annotations

import json
import time
import urllib.request
from functools import cache
from typing import Any

import jwt
from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError

from chat.issuers import Issuer, secure_url
from chat.telemetry import count, logger

KEYS_LIFESPAN_SECONDS = 3600
REFETCH_COOLDOWN_SECONDS = 30
FETCH_TIMEOUT_SECONDS = 2
KEYS_MAX_STALENESS_SECONDS = 3600


class KeysUnavailable(Exception):
    """No key to check this token with: the issuer's keys could not be fetched, or have no such kid."""


def signing_key(issuer: Issuer, kid: str | None) -> Any:
    """The public key of `issuer` with this `kid` (a token without one: the issuer's only key)."""
    client = _client(issuer.jwks_uri or discovered_jwks_uri(issuer.issuer))
    try:
        if kid is None:
            keys = client.get_signing_keys()
            if len(keys) != 1:
                raise KeysUnavailable(f"{issuer.issuer} has {len(keys)} keys and the token names none (no kid)")
            return keys[0].key
        found: PyJWK = client.get_signing_key(kid)
        return found.key
    except (PyJWKClientError, jwt.exceptions.PyJWKSetError) as error:
        raise KeysUnavailable(f"{issuer.issuer}: {error}") from None


@cache
def _client(jwks_uri: str) -> StaleTolerantClient:
    return StaleTolerantClient(jwks_uri)


class StaleTolerantClient(PyJWKClient):
    """PyJWKClient with this module's settings, whose refetch falls back on the last key set it
    fetched (for KEYS_MAX_STALENESS_SECONDS past its lifespan) when the endpoint fails."""

    def __init__(self, uri: str) -> None:
        super().__init__(
            uri,
            cache_keys=False,
            cache_jwk_set=True,
            lifespan=KEYS_LIFESPAN_SECONDS,
            timeout=FETCH_TIMEOUT_SECONDS,
            cooldown_duration=REFETCH_COOLDOWN_SECONDS,
        )
        self._last_good: tuple[dict[str, Any], float] | None = None

    def fetch_data(self) -> Any:
        try:
            data = super().fetch_data()
        except PyJWKClientConnectionError:
            count("TokenKeysUnavailable")
            known = self._last_good
            if known is None or time.monotonic() - known[1] > KEYS_LIFESPAN_SECONDS + KEYS_MAX_STALENESS_SECONDS:
                raise
            logger.warning(
                "Could not refresh the keys at %s; using the ones fetched %d s ago",
                self.uri,
                time.monotonic() - known[1],
                exc_info=True,
            )
            self._last_successful_fetch = time.monotonic()  # the cooldown holds during an outage too
            return known[0]
        self._last_good = (data, time.monotonic())
        return data


@cache
def discovered_jwks_uri(issuer: str) -> str:
    """The issuer's `jwks_uri`, from its OpenID Connect discovery document, once per container."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        opener = urllib.request.build_opener(_NoRedirects())
        with opener.open(urllib.request.Request(url), timeout=FETCH_TIMEOUT_SECONDS) as answer:
            document = json.load(answer)
    except (OSError, ValueError) as error:
        count("TokenKeysUnavailable")
        raise KeysUnavailable(f"{issuer}: no discovery document at {url}: {error}") from None
    jwks_uri = document.get("jwks_uri") if isinstance(document, dict) else None
    if not isinstance(jwks_uri, str) or not secure_url(jwks_uri):
        raise KeysUnavailable(f"{issuer}: the discovery document names no https:// jwks_uri: {jwks_uri!r}")
    return jwks_uri


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None
