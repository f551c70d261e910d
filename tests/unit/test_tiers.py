"""`make test` runs every tier: pytest's default norecursedirs holds "build", so `pytest tests`
once collected the unit and end-to-end tiers and silently left tests/build out (the template,
the zip, cfn-lint, the docs held to the code). pyproject.toml sets the list; this holds it."""

from __future__ import annotations

import subprocess
import sys

from scripts.service_config import ROOT


def test_collecting_tests_finds_every_tier() -> None:
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    ).stdout.splitlines()
    tiers = {tier: sum(1 for line in collected if line.startswith(f"tests/{tier}/")) for tier in ("unit", "e2e", "build")}
    assert all(count > 0 for count in tiers.values()), tiers
    assert tiers["build"] >= 100  # the template's checks, the docs', the layout's
