"""`make offline` run as a terminal runs it, for the tests that start it (tests/e2e/test_make_offline.py,
tests/e2e/test_offline_review.py): free ports, its output read up to a line, its process group
stopped and nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from scripts import offline
from scripts.local_stack import Ports, port_in_use
from scripts.service_config import ROOT


def offline_ports_env(ports: Ports, **extra: str) -> dict[str, str]:
    return {**os.environ, **ports.as_env(), **extra}


def make_offline(ports: Ports, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`make offline` in its own process group, as a terminal would run it."""
    return subprocess.Popen(
        ["make", "--no-print-directory", "offline"],
        cwd=ROOT,
        env=env or offline_ports_env(ports),
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


def kill_groups_of(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def read_until(process: subprocess.Popen, text: str, timeout: float = 120) -> str:
    """Its output up to and including the first line that contains `text`."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            return "".join(lines)
    raise AssertionError(f"make offline never printed {text!r}:\n" + "".join(lines))


def read_until_ready(process: subprocess.Popen, timeout: float = 120) -> str:
    return read_until(process, "Ctrl-C stops everything.", timeout)


def stop_and_check_nothing_is_left(process: subprocess.Popen, ports: Ports, stop_signal: signal.Signals) -> str:
    """Signal the whole foreground group, as a terminal does; the rest of the output."""
    try:
        os.killpg(process.pid, stop_signal)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        left = processes_of(ports)
        kill_groups_of(left)  # a failing test must not leave a stack running either
    assert left == [], rest
    assert not any(port_in_use(port) for port in ports.named().values()), rest
    assert not offline.state_file(ports.websocket).exists()
    return rest

