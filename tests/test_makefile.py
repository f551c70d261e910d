"""The Makefile as a newcomer meets it: `make` alone says what every target does."""

from __future__ import annotations

import re
import subprocess

from scripts.service_config import ROOT


def makefile_targets() -> set[str]:
    """Every target a person can type: the rules of the Makefile that are not files."""
    text = (ROOT / "Makefile").read_text()
    rules = set(re.findall(r"^([a-z][a-z-]*):(?!=)", text, flags=re.MULTILINE))
    (phony,) = re.findall(r"^\.PHONY:(.*)$", text, flags=re.MULTILINE)
    assert rules == set(phony.split()), "every target is .PHONY, and every .PHONY name a target"
    return rules


def test_make_alone_lists_every_target() -> None:
    result = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60)

    assert result.returncode == 0, result.stderr
    listed = set(re.findall(r"^make ([a-z][a-z-]*)", result.stdout, flags=re.MULTILINE))
    assert listed == makefile_targets(), result.stdout

