"""Tokens from the app's identity providers (chat/issuers.py, chat/jwks.py, chat/verifier.py), with
keys generated here and JWKS documents served by a real HTTP server that counts its requests:
every verification rule, from the attacker's side too (forged, confused and replayed tokens),
keys cached safely, renewal within one issuer, the 8 KB authorizer answer."""

from __future__ import annotations

import json
import random
import time
from typing import Any, Iterator

import jwt
import pytest

from chat import issuers, jwks, verifier
from tests.support.actions import renew
from tests.support.events import authorizer_event, connect_event, token
from tests.support.identity_providers import JwksServer, Provider, new_key


@pytest.fixture
def server() -> Iterator[JwksServer]:
    found = JwksServer()
    yield found
    found.close()


@pytest.fixture
def monotonic(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """How far the key caches' clock (time.monotonic) is moved ahead of the real one."""
    offset = [0.0]
    real = time.monotonic
    monkeypatch.setattr(time, "monotonic", lambda: real() + offset[0])
    return offset


def configure(monkeypatch: pytest.MonkeyPatch, *entries: dict[str, Any]) -> None:
    monkeypatch.setenv("TOKEN_ISSUERS", json.dumps(list(entries)))


@pytest.fixture
def two(handler: Any, jwt_secret: str, server: JwksServer, monkeypatch: pytest.MonkeyPatch) -> tuple[Provider, Provider]:
    """Issuer A signs RS256, issuer B ES256; both publish a key with the same kid, "k1"."""
    a, b = server.add("a", "RS256", kid="k1"), server.add("b", "ES256", kid="k1")
    configure(monkeypatch,
              {"issuer": a.issuer, "jwksUri": server.jwks_uri("a"), "audience": ["app-a"]},
              {"issuer": b.issuer, "jwksUri": server.jwks_uri("b"), "algorithms": ["ES256"]})
    return a, b


def context(handler: Any, raw: str) -> dict[str, Any] | None:
    """The authorizer's context for this token, None if it denies it."""
    policy = handler.authorize(authorizer_event(query_token=raw), None)
    return policy.get("context") if policy["policyDocument"]["Statement"][0]["Effect"] == "Allow" else None


def test_tokens_of_two_issuers_are_taken_each_with_its_own_keys(handler: Any, two: tuple[Provider, Provider]) -> None:
    a, b = two

    assert context(handler, a.token(aud="app-a")) == {"userId": "alice", "exp": pytest.approx(time.time() + 3600, abs=5),
                                                      "issuer": a.issuer}
    assert context(handler, b.token(sub="bob"))["userId"] == "bob"  # type: ignore[index]


def test_a_kid_of_issuer_b_presented_as_issuer_a_is_refused(handler: Any, two: tuple[Provider, Provider], server: JwksServer) -> None:
    # Both publish "k1": a cache keyed by kid alone would check B's token, claiming A, with B's key.
    a, b = two
    assert context(handler, b.token(sub="bob")) is not None  # B's k1 is cached now
    forged = jwt.encode({"iss": a.issuer, "sub": "alice", "aud": "app-a", "exp": int(time.time()) + 600},
                        b.keys[0].private, algorithm="ES256", headers={"kid": "k1"})

    assert context(handler, forged) is None  # A does not sign ES256, and A's k1 is an RSA key
    # Looked up by (issuer, kid): A's k1 and B's k1 are two keys.
    a_key = jwks.signing_key(issuers.configured()[a.issuer], "k1")
    b_key = jwks.signing_key(issuers.configured()[b.issuer], "k1")
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    assert isinstance(a_key, rsa.RSAPublicKey) and isinstance(b_key, ec.EllipticCurvePublicKey)


@pytest.mark.parametrize("forge", [
    lambda a: jwt.encode({"sub": "alice", "aud": "app-a", "exp": int(time.time()) + 600}, a.keys[0].private, "RS256",
                         headers={"kid": "k1"}),
    lambda a: a.token(aud="app-a", iss="https://unknown.example.com/"),
    lambda a: a.token(aud="app-a", iss=a.issuer.rstrip("/")),  # iss must equal the issuer exactly
    lambda a: jwt.encode({"iss": a.issuer, "sub": "alice", "aud": "app-a", "exp": int(time.time()) + 600}, None, "none"),
    lambda a: jwt.encode({"iss": a.issuer, "sub": "alice", "aud": "app-a", "exp": int(time.time()) + 600},
                         a.keys[0].public_jwk()["n"], "HS256"),
    lambda a: a.token(aud="another-app"),
    lambda a: a.token(aud=["x", "y"]),
    lambda a: a.token(),  # no aud, no client_id
    lambda a: a.token(aud="app-a", expires_in=-120),
    lambda a: a.token(aud="app-a", nbf=int(time.time()) + 600),
    lambda a: a.token(aud="app-a", iat=int(time.time()) + 600),
    lambda a: a.token(aud="app-a", token_use="refresh"),
    lambda a: a.token(aud="app-a", sub="evil#dm"),
    lambda a: a.token(aud="app-a", expires_in=None),
    lambda a: a.token(key=new_key("RS256", kid="k1"), aud="app-a"),  # the right kid, another key
], ids=["no-iss", "unknown-iss", "iss-not-exact", "alg-none", "hs256-with-the-public-key", "wrong-aud", "aud-list-without-ours",
        "no-aud", "expired", "not-yet-valid", "issued-in-the-future", "refresh-token", "bad-user-id", "no-exp", "forged-signature"])
def test_a_forged_confused_or_unfit_token_is_refused(handler: Any, two: tuple[Provider, Provider], forge: Any) -> None:
    a, _ = two
    assert context(handler, a.token(aud="app-a")) is not None  # the issuer works

    assert context(handler, forge(a)) is None


def test_an_access_token_without_aud_is_taken_by_its_client_id(handler: Any, two: tuple[Provider, Provider]) -> None:
    a, _ = two

    assert context(handler, a.token(client_id="app-a", token_use="access")) is not None
    assert context(handler, a.token(client_id="app-b", token_use="access")) is None
    assert context(handler, a.token(aud=["other", "app-a"], token_use="id")) is not None


def test_the_user_is_the_prefix_and_the_claim_the_issuer_names(
    handler: Any, jwt_secret: str, server: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = server.add("pool")
    configure(monkeypatch, {"issuer": p.issuer, "jwksUri": server.jwks_uri("pool"), "userClaim": "cognito:username",
                            "userPrefix": "pool.", "channelsClaim": "custom:channels"})

    taken = context(handler, p.token(**{"cognito:username": "alice", "custom:channels": ["team-*"]}))

    assert taken is not None and taken["userId"] == "pool.alice" and taken["channels"] == '["team-*"]'
    assert context(handler, p.token(**{"cognito:username": "a#b"})) is None
    assert context(handler, p.token()) is None  # no cognito:username


def test_a_new_key_is_taken_after_one_fetch_once_the_cooldown_since_the_last_has_passed(
    handler: Any, two: tuple[Provider, Provider], server: JwksServer, monotonic: list[float]
) -> None:
    a, _ = two
    assert context(handler, a.token(aud="app-a")) is not None and server.fetches("a") == 1
    rotated = new_key("RS256", kid="k2")
    a.keys.append(rotated)

    monotonic[0] += jwks.REFETCH_COOLDOWN_SECONDS + 1
    assert context(handler, a.token(key=rotated, aud="app-a")) is not None

    assert server.fetches("a") == 2


def test_two_hundred_tokens_with_random_kids_cost_at_most_two_fetches(
    handler: Any, two: tuple[Provider, Provider], server: JwksServer
) -> None:
    a, _ = two
    stranger = new_key("RS256")
    for _ in range(200):
        stranger.kid = f"{random.getrandbits(64):x}"
        assert context(handler, a.token(key=stranger, aud="app-a")) is None

    assert server.fetches("a") <= 2
    assert context(handler, a.token(aud="app-a")) is not None


def test_a_removed_key_stops_working_within_the_hour(
    handler: Any, two: tuple[Provider, Provider], server: JwksServer, monotonic: list[float]
) -> None:
    a, _ = two
    old = a.keys[0]
    assert context(handler, a.token(aud="app-a")) is not None
    a.keys = [new_key("RS256", kid="k2")]

    monotonic[0] += jwks.KEYS_LIFESPAN_SECONDS - 60
    assert context(handler, a.token(key=old, aud="app-a")) is not None  # still cached
    monotonic[0] += 120

    assert context(handler, a.token(key=old, aud="app-a")) is None


def test_with_the_endpoint_down_the_cached_keys_keep_working_for_a_while(
    handler: Any, two: tuple[Provider, Provider], server: JwksServer, monotonic: list[float]
) -> None:
    a, _ = two
    assert context(handler, a.token(aud="app-a")) is not None
    server.down = True

    monotonic[0] += jwks.KEYS_LIFESPAN_SECONDS + 60  # the set is due for a refresh, which fails
    assert context(handler, a.token(aud="app-a")) is not None
    monotonic[0] += jwks.KEYS_MAX_STALENESS_SECONDS

    assert context(handler, a.token(aud="app-a")) is None  # too stale to trust


def test_with_the_endpoint_down_and_no_keys_known_the_connect_is_refused_not_failed(
    handler: Any, two: tuple[Provider, Provider], server: JwksServer
) -> None:
    a, _ = two
    server.down = True

    policy = handler.authorize(authorizer_event(query_token=a.token(aud="app-a")), None)

    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"  # API Gateway answers 403, not 500


def test_the_keys_come_from_the_issuers_discovery_document_when_no_jwks_uri_is_given(
    handler: Any, jwt_secret: str, server: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = server.add("disc")
    monkeypatch.setattr(jwks, "discovered_jwks_uri", lambda issuer: server.jwks_uri("disc") if issuer == p.issuer else "")
    configure(monkeypatch, {"issuer": p.issuer})

    assert context(handler, p.token()) is not None


@pytest.mark.parametrize("value, why", [
    ("not json", "not JSON"),
    ('{"issuer": "https://a.example.com/"}', "a JSON list"),
    ('[{"issuer": "http://a.example.com/"}]', "https:// URL"),
    ('[{"issuer": "https://a.example.com/", "jwksUri": "http://keys.example.com/jwks.json"}]', "http:// only on this machine"),
    ('[{"issuer": "https://a.example.com/", "algorithms": ["HS256"]}]', "algorithms"),
    ('[{"issuer": "https://a.example.com/", "algorithms": []}]', "algorithms"),
    ('[{"issuer": "https://a.example.com/", "audience": [7]}]', "audience"),
    ('[{"issuer": "https://a.example.com/", "userPrefix": "a#"}]', "userPrefix"),
    ('[{"issuer": "https://a.example.com/", "jwks": "typo"}]', "fields"),
    ('[{"issuer": "https://a.example.com/"}, {"issuer": "https://a.example.com/"}]', "twice"),
], ids=["not-json", "not-a-list", "http-issuer", "http-keys-elsewhere", "hs256", "no-algorithm", "bad-audience",
        "hash-in-prefix", "unknown-field", "twice"])
def test_a_malformed_issuer_list_refuses_every_connect_loudly(
    handler: Any, jwt_secret: str, monkeypatch: pytest.MonkeyPatch, caplog: Any, value: str, why: str
) -> None:
    monkeypatch.setenv("TOKEN_ISSUERS", value)

    with pytest.raises(issuers.IssuerConfigError, match=why):
        issuers.configured()
    assert context(handler, token(jwt_secret, "alice")) is None  # the service's own tokens too: never a silent accept


def test_the_local_stack_and_tests_may_fetch_keys_over_plain_http_from_this_machine_only() -> None:
    for url in ("http://127.0.0.1:5000/x", "http://localhost:5000/x", "http://[::1]:5000/x", "https://keys.example.com/x"):
        assert issuers.secure_url(url), url
    for url in ("http://keys.example.com/x", "http://10.0.0.1/x", "file:///etc/passwd", "ftp://a/x", "https:///x"):
        assert not issuers.secure_url(url), url


# --- renewal within one issuer -------------------------------------------------------------------


def connected(handler: Any, raw: str, connection_id: str = "c1") -> dict[str, Any]:
    """The connection opened with this token, as API Gateway runs $connect with its context."""
    found = context(handler, raw)
    assert found is not None
    event = connect_event(connection_id, found["userId"], found["exp"])
    event["requestContext"]["authorizer"].update(found)
    assert handler.connection_manager(event, None)["statusCode"] == 200
    return found


def renewal(handler: Any, opened: dict[str, Any], new_token: str) -> dict[str, Any]:
    from tests.support.events import action_body, message_event

    event = message_event("c1", action_body("renewToken", token=new_token), "renewToken", opened["userId"], opened["exp"])
    event["requestContext"]["authorizer"].update(opened)
    return handler.renew_token(event, None)


def test_a_renewal_takes_a_later_token_of_the_same_issuer_only(
    handler: Any, management: Any, jwt_secret: str, two: tuple[Provider, Provider], server: JwksServer
) -> None:
    a, b = two
    opened = connected(handler, a.token(aud="app-a", expires_in=600))
    b_alice = b.token(sub="alice", expires_in=3600)
    own_alice = token(jwt_secret, "alice", expires_in=3600)

    assert renewal(handler, opened, b_alice)["body"] == ("The token is from another issuer: a connection keeps its issuer. "
                                                           "Nothing was renewed.")
    assert renewal(handler, opened, own_alice)["statusCode"] == 403
    assert renewal(handler, opened, a.token(aud="app-a", expires_in=3600))["statusCode"] == 200


def test_a_connection_with_the_services_own_token_renews_with_its_own_only(
    handler: Any, management: Any, jwt_secret: str, two: tuple[Provider, Provider]
) -> None:
    a, _ = two
    opened = connected(handler, token(jwt_secret, "alice", expires_in=600))

    assert renewal(handler, opened, a.token(aud="app-a", expires_in=3600))["statusCode"] == 403
    assert renew(handler, "c1", "alice", opened["exp"], token(jwt_secret, "alice", expires_in=3600))["statusCode"] == 200


# --- the 8 KB authorizer answer ------------------------------------------------------------------


def largest_claim(budget: int) -> list[str]:
    """Channel patterns of 100 characters, as many as fit the claim's budget of JSON."""
    patterns: list[str] = []
    while True:
        candidate = patterns + [f"{len(patterns):03d}" + "x" * 96 + "*"]
        if len(verifier.compact(candidate)) > budget or len(candidate) > verifier.MAX_CHANNEL_PATTERNS:
            return patterns
        patterns = candidate


def test_the_largest_accepted_token_fits_api_gateways_8_kb_authorizer_answer(
    handler: Any, jwt_secret: str, server: JwksServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 100 patterns of 100 characters made 11,038 bytes: such a user could never connect.
    longest_issuer = "https://" + "i" * (issuers.MAX_ISSUER_LENGTH - len("https://.example.com/")) + ".example.com/"
    p = server.add("big")
    p.issuer = longest_issuer
    configure(monkeypatch, {"issuer": longest_issuer, "jwksUri": server.jwks_uri("big")})
    user = "가" * 128  # 6 bytes each as the Lambda runtime writes it (json.dumps: \\uac00)
    channels, moderates = largest_claim(verifier.CLAIM_BYTES["channels"]), largest_claim(verifier.CLAIM_BYTES["moderates"])

    for raw in (token(jwt_secret, user, channels=channels, moderates=moderates),
                p.token(sub=user, channels=channels, moderates=moderates)):
        policy = handler.authorize(authorizer_event(query_token=raw), None)
        assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
        assert len(json.dumps(policy).encode()) <= 8192, len(json.dumps(policy))

    one_more = channels + ["z" * 100]
    assert context(handler, token(jwt_secret, user, channels=one_more)) is None  # over the cap: refused, with the reason logged
