"""What CI runs (.ci/run): the browser tests run there, or CI fails; it never goes green without
them."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from scripts.service_config import ROOT


def test_ci_fails_before_the_tests_when_chromium_cannot_be_installed(tmp_path: Path) -> None:
    # No chromium at the paths given, and an apt-get, sudo and make that only record they ran:
    # nothing is installed, and the test suite is not started from inside itself.
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool, status in (("apt-get", 100), ("sudo", 1), ("make", 0)):
        (fake / tool).write_text(f"#!/bin/sh\necho {tool} >> {tmp_path / 'ran'}\nexit {status}\n")
        (fake / tool).chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
        "CHROMIUM": str(tmp_path / "no-chromium"),
        "CHROMEDRIVER": str(tmp_path / "no-chromedriver"),
    }

    result = subprocess.run([str(ROOT / ".ci" / "run")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)

    ran = (tmp_path / "ran").read_text().split() if (tmp_path / "ran").exists() else []
    assert result.returncode != 0, result.stdout + result.stderr
    assert "the browser tests cannot run" in result.stderr
    assert "make" not in ran  # `make test` never started
    assert "apt-get" in ran or "sudo" in ran  # it did try to install (as root: apt-get; else: sudo)
