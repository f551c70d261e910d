"""The benchmarks that start a stack of their own run to the end (`make bench` runs them all)."""

from __future__ import annotations

import re
import subprocess
import sys

from scripts.service_config import ROOT


def test_the_offline_broadcast_bench_runs_to_the_end_within_the_per_connection_limit() -> None:
    # 2 warm-up + 11 broadcasts from the baseline's one client: more than the burst of 10 that
    # the per-connection rate limit allows, so sending them back to back gets the 11th refused.
    result = subprocess.run(
        [sys.executable, "bench/offline_broadcast.py", "--clients", "3", "--broadcasts", "11"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "deliveries: 33/33" in result.stdout, result.stdout
    assert re.search(r"1 client \(baseline\) +median +[\d.]+ ms", result.stdout), result.stdout
    # It says how it stays within the limit.
    assert "per-connection rate limit" in result.stdout, result.stdout
