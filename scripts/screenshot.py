"""`make screenshot`: web/chat-page.png for the README, taken by headless Chromium against a
local stack on `make offline`'s ports (the defaults, or the same OFFLINE_*_PORT variables), so
the picture shows the addresses a reader will see: alice and bob talk in a channel, alice sends
bob a direct message, and bob's page shows the channel, with the new conversation marked unread.

Chromium draws with the system's fonts: without a Korean font the Korean text comes out as
empty boxes, without an emoji font so do emoji. What is missing of Chromium, chromedriver and
the fonts (Debian: chromium, chromium-driver, fonts-nanum, fonts-noto-color-emoji) is installed
first with apt-get, as root or through passwordless sudo, as .ci/run installs Chromium; where
that cannot be done the script stops, naming the packages, rather than write such a picture.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import browser  # noqa: E402
from scripts.local_stack import LocalStack, Ports  # noqa: E402
from scripts.service_config import ROOT  # noqa: E402

OUTPUT = ROOT / "web" / "chat-page.png"
# What the page shows, the fontconfig pattern of a font that draws it, and Debian's package.
FONTS = [
    ("Korean", ":lang=ko", "fonts-nanum"),
    ("emoji", ":charset=1f44b", "fonts-noto-color-emoji"),  # U+1F44B WAVING HAND SIGN
]


def fonts_for(pattern: str) -> list[str]:
    """The font families fontconfig has for a pattern (none if fc-list itself is missing)."""
    if not shutil.which("fc-list"):
        return []
    result = subprocess.run(["fc-list", pattern, "family"], capture_output=True, text=True, timeout=60)
    return [line for line in result.stdout.splitlines() if line.strip()]


def missing_fonts() -> str | None:
    """What to install for the fonts the page needs, or None."""
    missing = [(what, package) for what, pattern, package in FONTS if not fonts_for(pattern)]
    if not missing:
        return None
    packages = " ".join(package for _, package in missing)
    what = " and ".join(what for what, _ in missing)
    return f"no font for {what} text: install it first (Debian: sudo apt-get install {packages})"


def missing_packages() -> list[str]:
    """The Debian packages the picture needs that are not installed."""
    packages = [] if browser.missing() is None else ["chromium", "chromium-driver"]
    return packages + [package for _, pattern, package in FONTS if not fonts_for(pattern)]


def install(packages: list[str]) -> bool:
    """apt-get install them, as root or with passwordless sudo; False if that cannot be done."""
    if os.geteuid() == 0:
        prefix = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        return False
    print(f"make screenshot: installing {' '.join(packages)} (apt-get) ...", flush=True)
    apt = [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get"]
    return (subprocess.run([*apt, "update", "-qq"]).returncode == 0
            and subprocess.run([*apt, "install", "-y", "-qq", *packages], stdout=subprocess.DEVNULL).returncode == 0)


def main() -> int:
    packages = missing_packages()
    if packages and shutil.which("apt-get"):
        install(packages)
    reason = browser.missing() or missing_fonts()
    if reason:
        print(f"make screenshot: {reason}", file=sys.stderr)
        return 1
    logs = Path(tempfile.mkdtemp(prefix="screenshot-"))
    with (logs / "serverless-offline.log").open("w") as log, LocalStack(Ports.from_env(), output=log, log_dir=logs) as stack:
        alice_driver, bob_driver = browser.chromium(), browser.chromium()
        try:
            alice = browser.ChatPage(alice_driver).open(stack.page_url_for("alice")).wait_connected()
            bob = browser.ChatPage(bob_driver).open(stack.page_url_for("bob")).wait_connected()
            for page in (alice, bob):
                page.join("general")
            alice.send("서버리스 웹소켓 API 테스트")
            bob.wait_until(lambda: "서버리스 웹소켓 API 테스트" in bob.contents())
            bob.send("안녕 alice! 잘 받았어요 👋")
            alice.wait_until(lambda: "안녕 alice! 잘 받았어요 👋" in alice.contents())
            alice.open_direct("bob")
            alice.send("안녕 bob, 비밀이야")
            bob.wait_until(lambda: any(c["key"] == "dm:alice" and c["unread"] for c in bob.conversations()))
            bob_driver.set_window_size(900, 640)
            time.sleep(0.3)
            bob_driver.save_screenshot(str(OUTPUT))
        finally:
            alice_driver.quit()
            bob_driver.quit()
    print(f"wrote {OUTPUT.relative_to(ROOT)} ({OUTPUT.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
