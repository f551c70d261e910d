"""`make offline` as a user runs it: ready message, Ctrl-C, ports taken, no real AWS."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import websockets

from scripts.local_stack import Ports, offline_env, port_in_use
from scripts.offline import READY
from scripts.service_config import ROOT


def offline_ports_env(ports: Ports) -> dict[str, str]:
    return dict(
        os.environ,
        OFFLINE_HTTP_PORT=str(ports.http),
        OFFLINE_WEBSOCKET_PORT=str(ports.websocket),
        OFFLINE_LAMBDA_PORT=str(ports.lambda_),
        OFFLINE_DYNAMODB_PORT=str(ports.dynamodb),
    )


async def signed_in_users(connections: list[tuple[str, dict[str, str]]]) -> int:
    """How many of these URL + header pairs the local authorizer lets in."""
    accepted = 0
    for url, headers in connections:
        async with websockets.connect(url, additional_headers=headers, open_timeout=30):
            accepted += 1
    return accepted


def make_offline(ports: Ports) -> subprocess.Popen:
    """`make offline` in its own process group, as a terminal would run it."""
    return subprocess.Popen(
        ["make", "--no-print-directory", "offline"],
        cwd=ROOT,
        env=offline_ports_env(ports),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def processes_of(ports: Ports) -> list[int]:
    """Every process of a stack: all of them inherit OFFLINE_WEBSOCKET_PORT=<its port>."""
    marker = f"OFFLINE_WEBSOCKET_PORT={ports.websocket}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def read_until_ready(process: subprocess.Popen, timeout: float = 120) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops everything." in line:
            return "".join(lines)
    raise AssertionError("make offline did not become ready:\n" + "".join(lines))


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_make_offline_prints_what_to_type_and_stops_everything(stop_signal: signal.Signals) -> None:
    ports = Ports.free()
    process = make_offline(ports)
    try:
        output = read_until_ready(process)
        assert READY in output
        assert '{"action": "sendMessage", "content": "서버리스 웹소켓 API 테스트"}' in output
        assert f"curl http://localhost:{ports.http}/dev/ping" in output
        # The printed wscat commands carry working tokens for alice and bob.
        alice_url = re.search(rf'npx wscat -c "(ws://localhost:{ports.websocket}\?token=[\w.-]+)"', output)
        bob_token = re.search(rf'npx wscat -c ws://localhost:{ports.websocket} -H "Authorization: Bearer ([\w.-]+)"', output)
        assert alice_url and bob_token, output
        carol_token = subprocess.run(
            ["make", "--no-print-directory", "token", "USER=carol"], cwd=ROOT, env=offline_ports_env(ports),
            capture_output=True, text=True, timeout=120, check=True,
        ).stdout.strip()
        assert asyncio.run(signed_in_users(
            [(alice_url.group(1), {}),
             (f"ws://localhost:{ports.websocket}", {"Authorization": f"Bearer {bob_token.group(1)}"}),
             (f"ws://localhost:{ports.websocket}?token={carol_token}", {})],
        )) == 3

        with urllib.request.urlopen(f"http://localhost:{ports.http}/dev/ping", timeout=30) as response:
            assert response.read() == b"PONG!"
        # moto, node, and at least one Python worker (the ping just ran in one).
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in processes_of(ports)]
        assert any(b"moto.server" in c for c in commands)
        assert any(b"invoke.py" in c for c in commands)
        assert any(b"offline" in c and b"start" in c for c in commands)

        os.killpg(process.pid, stop_signal)  # the terminal signals the whole foreground group
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    assert "Stopped: nothing left running." in rest
    assert processes_of(ports) == []
    assert not any(port_in_use(port) for port in ports.named().values())


def test_first_stop_signal_ignores_the_next_ones() -> None:
    # make passes SIGTERM on to its child, so `make offline` gets it twice at once: a second
    # Stop raised inside the shutdown would abort it and leave moto and node running.
    from scripts import offline

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(offline.Stop):
            offline._raise_stop(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def test_make_offline_fails_fast_naming_a_taken_port() -> None:
    ports = Ports.free()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports.websocket))
        squatter.listen()
        started = time.monotonic()
        process = make_offline(ports)
        output, _ = process.communicate(timeout=60)
        elapsed = time.monotonic() - started

    assert process.returncode != 0
    assert f"Port {ports.websocket} (WebSocket (serverless-offline)) is already in use" in output
    assert "Traceback" not in output
    assert elapsed < 20
    assert processes_of(ports) == []


def test_make_offline_started_twice_fails_fast(local_stack: Any) -> None:
    process = make_offline(local_stack.ports)
    output, _ = process.communicate(timeout=60)

    assert process.returncode != 0
    assert f"Port {local_stack.ports.http} (HTTP (serverless-offline)) is already in use" in output
    assert "Is `make offline` already running?" in output
    assert "Traceback" not in output
    # The running stack is untouched.
    with urllib.request.urlopen(f"{local_stack.http_url}/ping", timeout=30) as response:
        assert response.read() == b"PONG!"


def test_offline_environment_cannot_reach_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-session")
    ports = Ports(dynamodb=5999)

    env = offline_env(ports, "ap-northeast-2")

    assert env["AWS_ACCESS_KEY_ID"] != "AKIAREALKEY"
    assert "AWS_PROFILE" not in env and "AWS_SESSION_TOKEN" not in env
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    # Every service, not only DynamoDB, resolves to the local moto.
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = boto3.Session()
    for service in ("dynamodb", "sts", "s3", "ssm", "lambda"):
        assert session.client(service).meta.endpoint_url == "http://127.0.0.1:5999"
