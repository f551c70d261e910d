"""The Makefile as a newcomer meets it: `make` alone says what every target does, and
`make screenshot` says which fonts it lacks."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

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


def test_make_screenshot_names_the_font_packages_it_lacks(monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts import screenshot

    def fonts(korean: bool, emoji: bool) -> Any:
        return lambda pattern: ["a font"] if (korean if pattern == ":lang=ko" else emoji) else []

    monkeypatch.setattr(screenshot, "fonts_for", fonts(korean=True, emoji=False))
    assert screenshot.missing_fonts() == (
        "no font for emoji text: install it first (Debian: sudo apt-get install fonts-noto-color-emoji)"
    )
    monkeypatch.setattr(screenshot, "fonts_for", fonts(korean=False, emoji=False))
    assert screenshot.missing_fonts() == (
        "no font for Korean and emoji text: install it first (Debian: sudo apt-get install fonts-nanum fonts-noto-color-emoji)"
    )
    monkeypatch.setattr(screenshot, "fonts_for", fonts(korean=True, emoji=True))
    assert screenshot.missing_fonts() is None


def test_fontconfig_finds_a_korean_font_by_the_pattern_make_screenshot_asks_for() -> None:
    # The patterns are fontconfig's own: the Nanum fonts answer ":lang=ko" where installed.
    from scripts import screenshot

    nanum = Path("/usr/share/fonts/truetype/nanum")
    korean = screenshot.fonts_for(":lang=ko")
    assert any("Nanum" in family for family in korean) == nanum.is_dir(), korean


def test_make_screenshot_installs_what_it_lacks_with_apt_get(monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts import browser, screenshot

    ran: list[list[str]] = []
    monkeypatch.setattr(screenshot, "fonts_for", lambda pattern: [] if pattern != ":lang=ko" else ["NanumGothic"])
    monkeypatch.setattr(browser, "missing", lambda: "no chromium")
    monkeypatch.setattr(screenshot.os, "geteuid", lambda: 0)
    monkeypatch.setattr(screenshot.subprocess, "run", lambda command, **_: ran.append(command) or subprocess.CompletedProcess(command, 0))

    assert screenshot.missing_packages() == ["chromium", "chromium-driver", "fonts-noto-color-emoji"]
    assert screenshot.install(screenshot.missing_packages())
    assert ran[-1][-3:] == ["chromium", "chromium-driver", "fonts-noto-color-emoji"]
    assert ran[-1][:3] == ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"] and "install" in ran[-1]


def test_make_screenshot_stops_naming_the_packages_when_it_cannot_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts import browser, screenshot

    monkeypatch.setattr(screenshot, "fonts_for", lambda pattern: [])
    monkeypatch.setattr(browser, "missing", lambda: None)
    monkeypatch.setattr(screenshot.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(screenshot.shutil, "which", lambda name: None)  # no sudo, no apt-get
    monkeypatch.setattr(screenshot, "LocalStack", None)  # never reached

    assert screenshot.main() == 1
    assert "fonts-nanum fonts-noto-color-emoji" in capsys.readouterr().err


def test_make_help_shows_the_ports_in_use() -> None:
    defaults = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, capture_output=True, text=True, timeout=60).stdout
    moved = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, capture_output=True, text=True, timeout=60,
                           env={**__import__("os").environ, "OFFLINE_WEBSOCKET_PORT": "4101", "OFFLINE_PAGE_PORT": "4103"}).stdout

    assert "ws://localhost:3001" in defaults and "http://localhost:3003/" in defaults and "moto :5000" in defaults
    assert "ws://localhost:4101" in moved and "http://localhost:4103/" in moved and "HTTP :3000" in moved
