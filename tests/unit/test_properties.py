"""Properties that hold for any input a client can send (Hypothesis): every entry point answers,
and anything accepted can be read back exactly."""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from chat import tokens, users, verifier
from tests.support.actions import history
from tests.support.events import authorizer_event, message_event, token
from tests.support.actions import entry_point

# The fixtures (moto, tables, clock) are set up once per test and shared by its examples:
# state accumulating across examples is part of what is tested.
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)  # surrogates included
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


@st.composite
def json_texts(draw: Any) -> str:
    """JSON text as a client may write it: any value (lone surrogates as \\u escapes or raw),
    deep nesting, numbers too large or too long, and the non-JSON NaN/Infinity."""
    return draw(
        st.one_of(
            st.builds(lambda value, ascii_only: json.dumps(value, ensure_ascii=ascii_only), json_values, st.booleans()),
            st.integers(1, 3000).map(lambda depth: "[" * depth + "0" + "]" * depth),
            st.integers(1, 3000).map(lambda depth: '{"a":' * depth + "0" + "}" * depth),
            st.integers(1, 6000).map(lambda digits: "9" * digits),
            st.sampled_from(["1e400", "-1e400", "1e-400", "NaN", "Infinity", "-Infinity", "[1, NaN]", "1.5e308"]),
        )
    )


user_ids = st.one_of(
    st.sampled_from(["bob", "가나", "\u1100\u1161", "bob\u3164", " ", "a#b", "", "\u0430lice", "\uff41lice", "ユーザー"]),
    any_text,
)


@st.composite
def bodies(draw: Any) -> str | None:
    """Any frame body: no body, any text, any JSON value, or a request of any action whose
    fields hold anything."""
    kind = draw(st.sampled_from(["none", "text", "json", "request"]))
    if kind == "none":
        return None
    if kind == "text":
        return draw(any_text)
    if kind == "json":
        return draw(json_texts())
    fields = {"action": json.dumps(draw(st.sampled_from(["sendMessage", "sendDirectMessage", "getRecentMessages"])))}
    if draw(st.booleans()):
        fields["content"] = draw(json_texts())
    for name, strategy in (("to", user_ids), ("with", user_ids), ("limit", st.integers(-5, 200)), ("before", any_text)):
        if draw(st.booleans()):
            fields[name] = json.dumps(draw(strategy) if draw(st.booleans()) else draw(json_values))
    return "{" + ", ".join(f'"{name}": {value}' for name, value in fields.items()) + "}"


# Ids the authorizer accepts (NFC or not: the handler normalizes them), other than alice's.
valid_user_ids = st.one_of(
    st.sampled_from(["bob", "가나", "\u1100\u1161", "carol.2", "😀", "x" * 128]),
    st.text(st.characters(categories=["L", "M", "N", "P", "S"], exclude_characters="#"), min_size=1, max_size=24),
).filter(lambda value: users.normalize_user_id(value) not in (None, "alice"))


def content_of(body: str) -> Any:
    return json.loads(body)["content"]


def same(a: Any, b: Any) -> bool:
    """Equal as values and as JSON text (so 0 and 0.0, or -0.0 and 0.0, are different)."""
    return a == b and json.dumps(a) == json.dumps(b)


@PROPERTY
@given(body=bodies(), signed_in=st.booleans())
def test_every_entry_point_answers_any_body_and_accepted_messages_come_back_exactly(
    handler: Any, management: Any, connect: Any, clock: Any, body: str | None, signed_in: bool
) -> None:
    user = "alice" if signed_in else None
    responses = {}
    for route in ("sendMessage", "sendDirectMessage", "getRecentMessages", "$default"):
        response = entry_point(handler, route)(message_event("alice-1", body, route, user), None)
        assert set(response) == {"statusCode", "body"} and isinstance(response["body"], str)
        assert response["statusCode"] in (200, 400, 403), response
        responses[route] = response

    if responses["sendMessage"]["statusCode"] == 200:
        (newest,) = history(handler, "bob", limit=1)["messages"]
        assert same(newest["content"], content_of(body))
    if responses["sendDirectMessage"]["statusCode"] == 200:
        recipient = unicodedata.normalize("NFC", json.loads(body)["to"])
        (newest,) = history(handler, "alice", limit=1, **{"with": recipient})["messages"]
        assert same(newest["content"], content_of(body)) and newest["to"] == recipient
    if responses["getRecentMessages"]["statusCode"] == 200:
        reply = responses["getRecentMessages"]["body"]
        assert len(reply.encode("utf-8")) <= 128 * 1024
        json.loads(reply, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))  # strict JSON


# Why a message may be refused for its content alone (docs/protocol.md: "Errors").
CONTENT_REFUSALS = (
    'Message has no "content"',
    "Message is nested too deeply",
    "Message has a number that is not finite",
    "Message has a number with more than 4300 digits",
    'Message "content" is not valid Unicode',
    "Message too large",
    "Message body is not valid JSON.",  # NaN, Infinity: not JSON at all
)


def test_a_direct_message_of_any_content_to_any_valid_user_comes_back_exactly_to_both(
    handler: Any, management: Any, clock: Any
) -> None:
    outcomes: Counter[str] = Counter()

    @PROPERTY
    @given(to=valid_user_ids, content=st.one_of(json_values.map(json.dumps), json_values.map(lambda v: json.dumps(v, ensure_ascii=False)), json_texts()))
    def round_trip(to: str, content: str) -> None:
        body = '{"action": "sendDirectMessage", "to": ' + json.dumps(to) + ', "content": ' + content + "}"
        response = handler.send_direct_message(message_event("alice-1", body, "sendDirectMessage", "alice"), None)

        if response["statusCode"] != 200:
            # A valid `to`: only the content can be why.
            assert response["statusCode"] == 400 and response["body"].startswith(CONTENT_REFUSALS), response
            outcomes["refused"] += 1
            event("refused: " + response["body"][:40])
            return
        recipient = unicodedata.normalize("NFC", to)
        for reader, other in (("alice", recipient), (recipient, "alice")):
            (newest,) = history(handler, reader, limit=1, **{"with": other})["messages"]
            assert same(newest["content"], content_of(body)) and (newest["sender"], newest["to"]) == ("alice", recipient)
        outcomes["delivered"] += 1
        event("delivered and read back by both")

    round_trip()
    # The property is about delivered messages: most examples must get that far (81-87% in
    # four runs; the old property, a random body, reached it in 0 to 3 of 150).
    assert outcomes["delivered"] >= 0.5 * sum(outcomes.values()), outcomes


@PROPERTY
@given(content=json_values)
def test_any_finite_json_content_that_fits_is_accepted_and_read_back_alone(
    handler: Any, management: Any, clock: Any, content: Any
) -> None:
    assume(content is not None)
    body = json.dumps({"action": "sendMessage", "content": content})
    response = handler.send_message(message_event("alice-1", body, "sendMessage", "alice"), None)

    if "\\ud" in body and response["statusCode"] == 400:
        assert "lone surrogate" in response["body"]  # the only reason such content may be refused
        return
    assert response["statusCode"] == 200, response
    page = history(handler, "bob", limit=1)
    (newest,) = page["messages"]
    assert same(newest["content"], content)


@PROPERTY
@given(sub=st.one_of(user_ids, json_values), where=st.sampled_from(["query", "header"]))
def test_the_authorizer_allows_exactly_the_valid_user_ids_normalized(
    handler: Any, jwt_secret: str, sub: Any, where: str
) -> None:
    signed = token(jwt_secret, sub=sub) if sub is not None else token(jwt_secret, sub=None)
    event = authorizer_event(query_token=signed) if where == "query" else authorizer_event(header=f"Bearer {signed}")

    policy = handler.authorize(event, None)

    (statement,) = policy["policyDocument"]["Statement"]
    expected = users.normalize_user_id(sub)
    if expected is None:
        assert statement["Effect"] == "Deny" and "context" not in policy
    else:
        assert statement["Effect"] == "Allow" and policy["context"]["userId"] == expected and set(policy["context"]) == {"userId", "exp"}


BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def base64url(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# Three dot-separated parts, with a header PyJWT can read, a payload of any JSON and a signature
# that is not the secret's: garbage that gets deep into PyJWT.
jwt_shaped = st.builds(
    lambda header, payload, signature: ".".join([base64url(json.dumps(header).encode()), base64url(json.dumps(payload).encode()), signature]),
    st.sampled_from([{"alg": "HS256", "typ": "JWT"}, {"alg": "none"}, {"alg": "HS512"}, {"alg": "RS256"}, {}]),
    json_values,
    st.text(BASE64URL, max_size=64),
)
garbage_tokens = st.one_of(any_text, st.binary(max_size=64).map(lambda b: b.decode("latin-1")), jwt_shaped)


def test_the_authorizer_denies_any_garbage_token_and_never_raises(
    handler: Any, jwt_secret: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    verified: Counter[str] = Counter()  # calls of verify, where PyJWT decodes
    original = verifier.verify
    monkeypatch.setattr(verifier, "verify", lambda token: verified.update(["now"]) or original(token))
    reached: Counter[str] = Counter()

    @PROPERTY
    @given(raw=garbage_tokens, where=st.sampled_from(["query", "header"]), scheme=st.sampled_from(["Bearer", "bearer", "BEARER"]))
    def denied(raw: str, where: str, scheme: str) -> None:
        request = authorizer_event(query_token=raw) if where == "query" else authorizer_event(header=f"{scheme} {raw}")
        before = verified["now"]

        policy = handler.authorize(request, None)

        assert policy["policyDocument"]["Statement"][0]["Effect"] == "Deny"
        got_there = "PyJWT" if verified["now"] > before else "no token found"
        reached[f"{where}: {got_there}"] += 1
        event(f"{where}: {got_there}")

    denied()
    # Header tokens are sent as "Bearer <token>": most must reach PyJWT (a blank token cannot,
    # and Hypothesis tries blanks often). Raw text as the header reached it in 0 of 150 examples,
    # three runs out of three; "Bearer <token>" in 89-94% of the header examples, six runs.
    header = reached["header: PyJWT"] + reached["header: no token found"]
    assert reached["header: PyJWT"] >= 0.75 * header, reached


@settings(max_examples=500)
@given(value=st.one_of(any_text, json_values))
def test_user_ids_are_canonical_single_script_and_one_spelling_each(value: Any) -> None:
    """Whatever is accepted is already what RFC 8265 would make of it (so no other spelling of
    it is accepted too: not its NFD, not its fullwidth form), and mixes no confusable scripts."""
    from precis_i18n import get_profile

    user_id = users.checked_user_id(value)
    if user_id is None:
        return
    assert user_id == value and users.is_valid_user_id(user_id)
    assert get_profile("UsernameCasePreserved").enforce(user_id) == user_id
    assert unicodedata.is_normalized("NFC", user_id)
    for other_spelling in (unicodedata.normalize("NFD", user_id), user_id.translate(FULLWIDTH)):
        assert other_spelling == user_id or users.checked_user_id(other_spelling) is None
    assert not any(unicodedata.category(c)[0] in "ZC" for c in user_id)
    assert "#" not in user_id and 1 <= len(user_id) <= 128


# ASCII letters and digits to their fullwidth forms (U+FF01 + offset).
FULLWIDTH = {code: code - 0x21 + 0xFF01 for code in range(0x21, 0x7F)}


@settings(max_examples=300)
@given(name=st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), min_size=1, max_size=12), at=st.integers(0, 11), lookalike=st.sampled_from("аеорсху"))
def test_a_latin_id_with_one_cyrillic_lookalike_is_refused(name: str, at: int, lookalike: str) -> None:
    """UTS #39: Latin mixed with a Cyrillic letter that looks Latin is never a user id."""
    spoof = name[: at % len(name)] + lookalike + name[at % len(name) + 1 :]
    assume(any("a" <= c <= "z" for c in spoof))
    assert users.checked_user_id(name) == name
    assert users.checked_user_id(spoof) is None
