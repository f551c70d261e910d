"""`make offline` as a user runs it: the banner, Ctrl-C at any moment, ports taken, no real AWS."""

from __future__ import annotations

import asyncio
import http.server
import json
import os
import re
import signal
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3
import pytest
import websockets

from scripts import offline
from scripts.local_stack import LocalStack, Ports, StackError, offline_env, port_in_use
from scripts.offline import READY
from tests.support.helpers import make_token
from tests.support.make_offline import (
    kill_groups_of,
    make_offline,
    offline_ports_env,
    processes_of,
    read_until,
    read_until_ready,
    stop_and_check_nothing_is_left,
)


async def signed_in_users(connections: list[tuple[str, dict[str, str]]]) -> int:
    """How many of these URL + header pairs the local authorizer lets in."""
    accepted = 0
    for url, headers in connections:
        async with websockets.connect(url, additional_headers=headers, open_timeout=30):
            accepted += 1
    return accepted


def typed_lines(banner: str, heading: str) -> list[str]:
    """The "  > ..." lines that follow a heading of the banner."""
    lines = banner[banner.index(heading) + len(heading):].splitlines()[1:]
    typed = []
    for line in lines:
        if not line.startswith("  > "):
            break
        typed.append(line[4:])
    return typed


async def type_in_windows(
    alice: tuple[str, dict[str, str]], alice_lines: list[str], bob: tuple[str, dict[str, str]], bob_lines: list[str]
) -> dict[str, Any]:
    """Alice's lines in her window, then bob's in his; the history reply bob gets."""
    async with websockets.connect(alice[0], additional_headers=alice[1], open_timeout=30) as alice_ws, \
            websockets.connect(bob[0], additional_headers=bob[1], open_timeout=30) as bob_ws:
        for line in alice_lines:
            await alice_ws.send(line)
        replies = [await asyncio.wait_for(alice_ws.recv(), 30) for _ in range(3)]  # broadcast + 2 answers
        assert "Message sent to all connections." in replies and "Direct message delivered to bob." in replies
        for line in bob_lines:
            await bob_ws.send(line)
        while True:
            frame = json.loads(await asyncio.wait_for(bob_ws.recv(), 30))
            if "history" in frame:
                return frame["history"]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_make_offline_prints_what_to_type_last_and_stops_everything(ports: Ports, stop_signal: signal.Signals) -> None:
    process = make_offline(ports)
    try:
        startup = read_until(process, READY)
        banner = READY + read_until_ready(process)
        # serverless-offline's startup output went to its log, not between the steps and the banner.
        assert "listening on" not in startup and "listening on" in offline.stack_startup_log(ports).read_text()
        assert '{"action": "sendMessage", "content": "서버리스 웹소켓 API 테스트"}' in banner
        assert f"curl http://localhost:{ports.http}/dev/ping" in banner
        # Which window types which line, and bob's history request names alice.
        assert banner.index("In alice's window, type:") < banner.index('"sendDirectMessage", "to": "bob"')
        assert banner.index("Then in bob's window:") < banner.index('"getRecentMessages", "with": "alice"')
        # The printed wscat commands and page links carry working tokens.
        alice_url = re.search(rf'alice\'s window: +npx wscat -c "(ws://localhost:{ports.websocket}\?token=[\w.-]+)"', banner)
        bob_token = re.search(rf'bob\'s window: +npx wscat -c ws://localhost:{ports.websocket} -H "Authorization: Bearer ([\w.-]+)"', banner)
        page_token = re.search(rf"http://localhost:{ports.page}/#url=ws://localhost:{ports.websocket}&token=([\w.-]+)", banner)
        assert alice_url and bob_token and page_token, banner
        carol_token = make_token(offline_ports_env(ports), "FOR=carol").stdout.strip()
        assert asyncio.run(signed_in_users(
            [(alice_url.group(1), {}),
             (f"ws://localhost:{ports.websocket}", {"Authorization": f"Bearer {bob_token.group(1)}"}),
             (f"ws://localhost:{ports.websocket}?token={page_token.group(1)}", {}),
             (f"ws://localhost:{ports.websocket}?token={carol_token}", {})],
        )) == 4

        # The lines the banner says to type, typed where it says, do what the README shows.
        alice_lines = typed_lines(banner, "In alice's window, type:")
        bob_lines = typed_lines(banner, "Then in bob's window:")
        history = asyncio.run(type_in_windows(
            (alice_url.group(1), {}), alice_lines,
            (f"ws://localhost:{ports.websocket}", {"Authorization": f"Bearer {bob_token.group(1)}"}), bob_lines,
        ))
        assert [(m["sender"], m["to"], m["content"]) for m in history["messages"]] == [("alice", "bob", "안녕 bob")]

        with urllib.request.urlopen(f"http://localhost:{ports.http}/dev/ping", timeout=30) as response:
            assert response.read() == b"PONG!\n"
        with urllib.request.urlopen(f"http://localhost:{ports.page}/", timeout=30) as response:
            assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        # After the banner come the function logs: the ping's own, for one.
        assert "(λ: ping)" in read_until(process, "(λ: ping)", timeout=30)
        # moto, node, and at least one Python worker (the ping just ran in one).
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in processes_of(ports)]
        assert any(b"scripts.moto_server" in c for c in commands)
        assert any(b"invoke.py" in c for c in commands)
        assert any(b"offline" in c and b"start" in c for c in commands)
        assert offline.state_file(ports.websocket).exists()
    finally:
        rest = stop_and_check_nothing_is_left(process, ports, stop_signal)

    assert "Stopped: nothing left running." in rest


# The steps make offline announces, in order; a Ctrl-C during any of them stops everything.
STARTUP_STEPS = [
    "Reading serverless.yml",
    "Starting moto",
    "Creating the tables and queues",
    "Seeding the development token secret",  # a boto3 call: botocore retried a Stop(Exception)
    "Starting serverless-offline",
    "Running the sweeper on its schedule",
]


@pytest.mark.parametrize("step", STARTUP_STEPS)
def test_ctrl_c_at_any_step_of_startup_stops_everything(ports: Ports, step: str) -> None:
    process = make_offline(ports)
    try:
        read_until(process, step)
    finally:
        rest = stop_and_check_nothing_is_left(process, ports, signal.SIGINT)

    assert "Stopping ..." in rest and "Stopped: nothing left running." in rest, rest
    assert READY not in rest and "Traceback" not in rest


def test_make_offline_killed_outright_takes_its_stack_with_it(ports: Ports) -> None:
    """SIGKILL leaves make offline no time to stop anything: moto and serverless-offline, each
    in a session of its own, end with it all the same (scripts/local_stack.py: die_with_parent),
    and with serverless-offline its Python workers. The state file stays: `make token` and the
    next `make offline` find it stale."""
    process = make_offline(ports)
    try:
        read_until_ready(process)
        assert len(processes_of(ports)) >= 3  # moto, node, a Python worker (the sweeper's)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while processes_of(ports) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = processes_of(ports)
    finally:
        kill_groups_of(processes_of(ports))  # a failing test must not leave a stack running either
        offline.state_file(ports.websocket).unlink(missing_ok=True)
    assert left == []
    assert not any(port_in_use(port) for port in ports.named().values())


class InstalledStopSignals:
    """offline.StopSignals installed in this process for one test, the old handlers restored."""

    def __enter__(self) -> offline.StopSignals:
        self.saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        signals = offline.StopSignals()
        signals.install()
        return signals

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


class SlowAws(http.server.BaseHTTPRequestHandler):
    """An AWS endpoint on loopback that, once a request has arrived, interrupts the main thread
    with SIGINT and answers only when released (or after 10 s): the signal lands while botocore
    waits for the answer however slow the machine is, not at a time guessed in advance."""

    requests = 0
    released = threading.Event()

    def do_POST(self) -> None:
        type(self).requests += 1
        self.rfile.read(int(self.headers["Content-Length"]))
        signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
        type(self).released.wait(10)
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.end_headers()
            self.wfile.write(b'{"Version": 1, "Tier": "Standard"}')
        except (BrokenPipeError, ConnectionResetError):
            pass  # the interrupted caller has gone, as it should

    def log_message(self, *args: Any) -> None:
        pass


def test_a_stop_signal_inside_a_boto3_call_is_not_swallowed() -> None:
    # botocore's HTTP layer turns any Exception raised while it waits into a retryable
    # HTTPClientError: a Stop(Exception) was retried away and startup went on.
    SlowAws.requests = 0
    SlowAws.released.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowAws)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ssm = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1").client(
        "ssm", endpoint_url=f"http://127.0.0.1:{server.server_address[1]}"
    )
    try:
        with InstalledStopSignals(), pytest.raises(offline.Stop):
            ssm.put_parameter(Name="/x", Value="y", Type="SecureString")
    finally:
        SlowAws.released.set()
        server.shutdown()
        server.server_close()
    assert SlowAws.requests == 1  # not retried


def test_a_stop_signal_while_a_child_starts_waits_until_it_is_recorded() -> None:
    recorded = []
    with InstalledStopSignals() as signals, pytest.raises(offline.Stop):
        with signals.deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            recorded.append("child")  # runs: the Stop waits for the end of the block
    assert recorded == ["child"]


def test_first_stop_signal_ignores_the_next_ones() -> None:
    # make passes SIGTERM on to its child, so `make offline` gets it twice at once: a second
    # Stop raised inside the shutdown would abort it and leave moto and node running.
    with InstalledStopSignals() as signals:
        with pytest.raises(offline.Stop):
            signals._handle(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_make_offline_fails_fast_naming_a_taken_port(ports: Ports) -> None:
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


@pytest.mark.parametrize("field", list(Ports.VARIABLES))
def test_a_taken_port_is_named_with_the_variable_that_moves_it(field: str) -> None:
    ports = Ports.free()
    variable, name = Ports.VARIABLES[field]
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", getattr(ports, field)))
        squatter.listen()
        with pytest.raises(StackError) as refused:
            LocalStack(ports).check_ports()

    message = str(refused.value)
    assert f"Port {getattr(ports, field)} ({name}) is already in use" in message
    assert f"choose another port with {variable}=..." in message
    assert all(other in message for other, _ in Ports.VARIABLES.values()), message


@pytest.mark.parametrize("value", ["70000", "0", "-1", "abc", "3001.5"])
def test_make_offline_refuses_a_port_that_is_not_a_port(ports: Ports, value: str) -> None:
    process = make_offline(ports, offline_ports_env(ports, OFFLINE_HTTP_PORT=value))
    output, _ = process.communicate(timeout=60)

    assert process.returncode != 0
    assert f"OFFLINE_HTTP_PORT must be a port number from 1 to 65535, not '{value}'." in output
    assert "Traceback" not in output
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
        assert response.read() == b"PONG!\n"


def test_offline_environment_cannot_reach_real_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_PROFILE", "production")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAREALKEY")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "real-session")
    ports = Ports(dynamodb=5999)

    env = offline_env(ports, "ap-northeast-2")

    assert env["AWS_ACCESS_KEY_ID"] != "AKIAREALKEY"
    assert "AWS_PROFILE" not in env and "AWS_SESSION_TOKEN" not in env
    assert env["AWS_CONFIG_FILE"] == env["AWS_SHARED_CREDENTIALS_FILE"] == os.devnull
    # Every service, not only DynamoDB, resolves to the local moto; Lambda to serverless-offline's
    # own Lambda endpoint (the review hook's example function runs there).
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    session = boto3.Session()
    for service in ("dynamodb", "sts", "s3", "ssm", "sqs", "events"):
        assert session.client(service).meta.endpoint_url == "http://127.0.0.1:5999"
    assert session.client("lambda").meta.endpoint_url == f"http://localhost:{ports.lambda_}"
