"""`make token`: it signs for the `make offline` running in this folder, with the authorizer's own
user id rule, and says clearly when it cannot."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jwt
import pytest
import websockets

from scripts import dev_token, offline
from scripts.local_stack import Ports
from scripts.service_config import ROOT
from tests.support.helpers import make_token


def terminal_env(**variables: str) -> dict[str, str]:
    """A new terminal: no OFFLINE_* variable, the login name in USER."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OFFLINE_")}
    return {**env, "USER": "root", **variables}


def here(stack: Any) -> dict[str, str]:
    return terminal_env(OFFLINE_WEBSOCKET_PORT=str(stack.ports.websocket))


def sub_of(result: subprocess.CompletedProcess, stack: Any) -> str:
    assert result.returncode == 0, result.stderr
    return jwt.decode(result.stdout.strip(), stack.jwt_secret, algorithms=["HS256"])["sub"]


@pytest.mark.parametrize("assignment", ["FOR=carol", "USER=carol"])
def test_token_for_a_user_named_on_the_command_line(running: Any, assignment: str) -> None:
    result = make_token(here(running), assignment)

    assert sub_of(result, running) == "carol"

    async def connect() -> None:
        async with websockets.connect(f"{running.websocket_url}?token={result.stdout.strip()}", open_timeout=30):
            pass

    asyncio.run(connect())  # the running stack accepts it


def test_the_login_name_in_user_is_not_taken_for_the_token_user(running: Any) -> None:
    result = make_token(here(running))

    assert result.returncode != 0 and result.stdout == ""
    assert "say which user the token is for: make token FOR=alice" in result.stderr


@pytest.mark.parametrize(
    "user",
    ["", "a#b", " ", "bob\u3164", "b\u200bob", "x" * 129, "\u0430lice", "\uff41\uff4c\uff49\uff43\uff45"],
    ids=["empty", "hash", "space", "hangul-filler", "zero-width", "too-long", "cyrillic-a", "fullwidth"],
)
def test_a_user_id_the_authorizer_refuses_gets_no_token(running: Any, user: str) -> None:
    result = make_token(here(running), f"FOR={user}")

    assert result.returncode != 0 and result.stdout == ""
    assert "Traceback" not in result.stderr
    assert ("not a user id the authorizer accepts: 1 to 128 characters, already in the form of an RFC 8265" in result.stderr) or (
        user.strip() == "" and "say which user" in result.stderr  # make strips a value's leading blanks
    )


def test_an_id_in_another_spelling_than_its_own_gets_no_token_but_the_canonical_one_named(running: Any) -> None:
    """RFC 8265: the decomposed "가" (two jamo) would be mapped to "가"; it is refused instead."""
    result = make_token(here(running), "FOR=\u1100\u1161")

    assert result.returncode != 0 and result.stdout == ""
    assert "Did you mean '\uac00'?" in result.stderr
    assert sub_of(make_token(here(running), "FOR=\uac00"), running) == "\uac00"


def test_no_running_stack_is_an_error_not_a_token() -> None:
    result = make_token(terminal_env(OFFLINE_WEBSOCKET_PORT=str(Ports.free().websocket)), "FOR=carol")

    # The script exits 1, so make exits 2 (what docs/local.md says).
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("make token: no `make offline` is running in this folder on WebSocket port")


def test_errors_of_the_aws_secret_name_the_script_not_make_token() -> None:
    # --aws is typed as `scripts/dev_token.py alice --aws`, never through make. Every AWS endpoint
    # here is a closed loopback port and the keys are fake: nothing can reach real AWS.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DEV_TOKEN_", "MAKE"))}
    env.update(
        AWS_ACCESS_KEY_ID="fake", AWS_SECRET_ACCESS_KEY="fake", AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull, AWS_EC2_METADATA_DISABLED="true", AWS_MAX_ATTEMPTS="1",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{Ports.free().websocket}",
    )
    result = subprocess.run(
        [sys.executable, "scripts/dev_token.py", "alice", "--aws"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )

    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.startswith(
        "scripts/dev_token.py: could not read the secret from SSM parameter /serverless-websocket/dev/jwt-secret in ap-northeast-2"
    ), result.stderr
    assert "make token" not in result.stderr


def test_a_stale_state_file_of_a_killed_stack_is_ignored_and_removed() -> None:
    port = Ports.free().websocket
    process = subprocess.Popen(["true"])  # its pid is gone once it has been waited for
    process.wait()
    path: Path = offline.state_file(port)
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"pid": process.pid, "ports": {"OFFLINE_WEBSOCKET_PORT": str(port)}}))

    result = make_token(terminal_env(OFFLINE_WEBSOCKET_PORT=str(port)), "FOR=carol")

    assert result.returncode != 0 and "no `make offline` is running" in result.stderr
    assert not path.exists()


@pytest.mark.parametrize("value", ["70000", "0", "abc"])
def test_a_port_that_is_not_a_port_is_a_clear_error(value: str) -> None:
    result = make_token(terminal_env(OFFLINE_WEBSOCKET_PORT=value), "FOR=carol")

    assert result.returncode != 0 and result.stdout == ""
    assert f"OFFLINE_WEBSOCKET_PORT must be a port number from 1 to 65535, not '{value}'." in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A .offline/ of the test's own, so a developer's `make offline` running beside the tests
    cannot change what is checked: only the stacks a test announces there are running."""
    monkeypatch.setattr(offline, "STATE_DIR", tmp_path)
    monkeypatch.setattr(dev_token, "STATE_DIR", tmp_path)
    monkeypatch.delenv("OFFLINE_WEBSOCKET_PORT", raising=False)
    monkeypatch.delenv("DEV_TOKEN_CALLER", raising=False)
    return tmp_path


def dev_token_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["dev_token.py", *args])
    return dev_token.main()


def test_with_no_port_given_it_finds_the_stack_running_in_this_folder(
    local_stack: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    offline.write_state(local_stack)

    assert dev_token_main(monkeypatch, "carol") == 0

    token = capsys.readouterr().out.strip()
    assert jwt.decode(token, local_stack.jwt_secret, algorithms=["HS256"])["sub"] == "carol"


def test_with_no_port_given_and_two_stacks_running_it_asks_which(
    local_stack: Any, state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any
) -> None:
    ours = offline.write_state(local_stack)
    other = json.loads(ours.read_text())
    other["ports"]["OFFLINE_WEBSOCKET_PORT"] = "4999"
    offline.state_file(4999).write_text(json.dumps(other))  # another stack, alive (this pid)

    assert dev_token_main(monkeypatch, "carol") == 1

    captured = capsys.readouterr()
    assert captured.out == ""
    ports = sorted([str(local_stack.ports.websocket), "4999"])
    assert f"several `make offline` are running (WebSocket ports {ports[0]}, {ports[1]})" in captured.err


def claims_of(result: subprocess.CompletedProcess, stack: Any) -> dict[str, Any]:
    assert result.returncode == 0, result.stderr
    return dict(jwt.decode(result.stdout.strip(), stack.jwt_secret, algorithms=["HS256"]))


def test_hours_channels_and_moderates_make_the_claims(running: Any) -> None:
    import time

    before = time.time()
    claims = claims_of(make_token(here(running), "FOR=erin", "HOURS=0.05", "CHANNELS=team-*, lobby", "MODERATES=lobby"), running)

    assert claims["sub"] == "erin" and before + 170 <= claims["exp"] <= time.time() + 181  # 3 minutes
    assert claims["channels"] == ["team-*", "lobby"] and claims["moderates"] == ["lobby"]

    async def joins() -> list[int]:
        token = make_token(here(running), "FOR=erin", "CHANNELS=team-*").stdout.strip()
        async with websockets.connect(f"{running.websocket_url}?token={token}", open_timeout=30) as client:
            statuses = []
            for channel in ("team-a", "general"):
                await client.send(json.dumps({"action": "join", "channel": channel, "ref": channel}))
                while "reply" not in (frame := json.loads(await asyncio.wait_for(client.recv(), 30))):
                    continue  # a presenceChange may come first
                statuses.append(frame["reply"]["status"])
            return statuses

    assert asyncio.run(joins()) == [200, 403]  # the stack enforces the claim it signed


@pytest.mark.parametrize("assignment, message", [
    ("HOURS=0", "HOURS must be a number of hours above 0 and below a year (8783), not '0'."),
    ("HOURS=ten", "HOURS must be a number of hours above 0 and below a year (8783), not 'ten'."),
    ("HOURS=9000", "HOURS must be a number of hours above 0 and below a year (8783), not '9000'."),
    ("CHANNELS=no spaces", "CHANNELS must be up to 100 channel names or prefixes ending in \"*\", separated by commas; not 'no spaces'."),
    ("MODERATES=a*b", "MODERATES must be up to 100 channel names or prefixes ending in \"*\", separated by commas; not 'a*b'."),
], ids=["zero-hours", "hours-not-a-number", "hours-beyond-a-year", "channel-with-space", "star-inside"])
def test_a_validity_or_claim_the_authorizer_would_refuse_gets_no_token(running: Any, assignment: str, message: str) -> None:
    result = make_token(here(running), "FOR=erin", assignment)

    assert result.returncode == 2 and result.stdout == ""
    assert f"make token: {message}" in result.stderr
