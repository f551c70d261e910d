"""Refusals: the one error type for "this request is not done", raised by any layer (a parser, a
route, an adapter) and answered by the gateway. Each carries a stable `code` that clients decide
on (retry or not, renew the token, reconnect), never the text, which is for people and may be
reworded (centrifuge-js' codes, Powertools' ServiceError).

docs/protocol.md lists every code with its texts; tests/build/test_docs.py holds the two together.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Code:
    """A refusal's kind: its HTTP-like status, and whether the same request sent again later can
    succeed (`retry`: it changed nothing and was refused for a passing reason)."""

    name: str
    status: int
    retry: bool
    meaning: str


CODES: dict[str, Code] = {
    code.name: code
    for code in (
        Code("bad_request", 400, False, "the request is malformed or breaks a rule: fix it, do not resend it as it is"),
        Code("unknown_action", 400, False, "no route has this action (or the frame is not a JSON object)"),
        Code("too_large", 400, False, "the message would not fit API Gateway's 128 KB once stored"),
        Code("payload_too_large", 413, False, "the HTTP request's body is over 1 MiB (POST /publish)"),
        Code("too_many_channels", 400, False, "the connection is in as many channels as it may be: leave one first"),
        Code("forbidden", 403, False, "the token does not allow it, or it needs a signed-in connection"),
        Code("not_member", 403, False, "join the channel first"),
        Code("banned", 403, False, "a moderator banned the user from this channel or the service, for now"),
        Code("denied", 403, False, "the operator's review function refused the message: nothing was stored"),
        Code("not_found", 404, False, "there is no such message in the conversation (or it was deleted)"),
        Code(
            "token_expired",
            401,
            False,
            "the connection's token has expired: it is being closed; reconnect with a new token",
        ),
        Code(
            "not_registered",
            410,
            True,
            "the service has no row for this connection (it is closing): reconnect, then send again",
        ),
        Code(
            "rate_limited",
            429,
            True,
            "over a budget (the user's, or the service's delivery backlog): wait a moment and send it again",
        ),
        Code("conversation_busy", 429, True, "the conversation was too busy to take a seq: send it again"),
        Code(
            "too_many_connections", 429, False, "the user has as many connections open as one user may ($connect only)"
        ),
        Code("unavailable", 500, True, "AWS failed before anything was done: send it again"),
        Code("internal", 500, False, "the service failed unexpectedly (logged); nothing was done"),
    )
}


class Refusal(Exception):
    """A request refused: `code` (one of CODES) for programs, `text` for people, `status` from the
    code. Whatever raised it, nothing was stored, sent, joined or left."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = CODES[code]
        self.text = text

    @property
    def status(self) -> int:
        return self.code.status

    @property
    def retry(self) -> bool:
        return self.code.retry
