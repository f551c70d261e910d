"""`make screenshot`: web/chat-page.png for the README, taken by headless Chromium against a
local stack on free ports (alice and bob exchange a room message and a DM, then bob loads
their history). Korean text needs a Korean font in the system (Debian: fonts-nanum).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts import browser  # noqa: E402
from scripts.local_stack import LocalStack, Ports  # noqa: E402
from scripts.service_config import ROOT  # noqa: E402

OUTPUT = ROOT / "web" / "chat-page.png"


def main() -> int:
    reason = browser.missing()
    if reason:
        print(f"make screenshot: {reason}", file=sys.stderr)
        return 1
    logs = Path(tempfile.mkdtemp(prefix="screenshot-"))
    with (logs / "serverless-offline.log").open("w") as log, LocalStack(Ports.free(), output=log, log_dir=logs) as stack:
        alice_driver, bob_driver = browser.chromium(), browser.chromium()
        try:
            alice = browser.ChatPage(alice_driver).open(stack.page_url_for("alice")).wait_connected()
            bob = browser.ChatPage(bob_driver).open(stack.page_url_for("bob")).wait_connected()
            alice.send("서버리스 웹소켓 API 테스트")
            bob.wait_until(lambda: "서버리스 웹소켓 API 테스트" in bob.contents())
            bob.send("안녕 alice! 잘 받았어요")
            alice.send("안녕 bob, 비밀이야", to="bob")
            bob.wait_until(lambda: "안녕 bob, 비밀이야" in bob.contents())
            bob.send("hi", to="a#b")  # a refusal, shown in red
            bob.load_history("alice")
            bob.wait_until(lambda: "안녕 bob, 비밀이야" in bob.contents("history"))
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
