"""The chat page (web/) driven in Debian's headless Chromium through Selenium and chromedriver.

Used by the browser tests and by `make screenshot`. Chromium and chromedriver come from Debian
(`apt-get install chromium chromium-driver`, as .ci/run does); nothing is downloaded.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

# Debian's paths; CHROMIUM and CHROMEDRIVER (as .ci/run reads them) point elsewhere.
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"))
# Flags for a closed network (no background connections to Google) and a root user.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--lang=ko-KR",
    "--window-size=900,760",
]


def missing() -> str | None:
    """Why no browser can run here, or None."""
    absent = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists()]
    if absent:
        return f"{' and '.join(absent)} not installed (Debian packages chromium and chromium-driver; .ci/run installs them)"
    return None


def chromium() -> Any:
    """A new headless Chromium with an empty profile of its own."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tempfile.mkdtemp(prefix='chat-page-')}")
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


class ChatPage:
    """One user's chat page, as a person would use it."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver

    def open(self, url: str) -> ChatPage:
        self.driver.get(url)
        return self

    def element(self, element_id: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.ID, element_id)

    def status(self) -> str:
        return self.element("status").text

    def wait_until(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; status {self.status()!r}, feed {self.feed()!r}")
            time.sleep(0.05)

    def wait_connected(self) -> ChatPage:
        self.wait_until(lambda: self.status().startswith("Connected"))
        return self

    def type_into(self, element_id: str, text: str) -> None:
        """Set a field as typing would (send_keys cannot type every character, emoji for one)."""
        self.driver.execute_script(
            "const field = document.getElementById(arguments[0]); field.value = arguments[1];"
            "field.dispatchEvent(new Event('input'));",
            element_id,
            text,
        )

    def send(self, text: str, to: str = "") -> None:
        self.type_into("to", to)
        self.type_into("text", text)
        self.element("send").click()

    def load_history(self, with_user: str = "") -> None:
        self.type_into("history-with", with_user)
        self.element("load-history").click()

    def rows(self, list_id: str) -> list[dict[str, Any]]:
        """Each row of #feed or #history: its text parts and classes, as the page shows them."""
        return self.driver.execute_script(
            "return [...document.getElementById(arguments[0]).children].map(li => ({"
            "  classes: li.className, text: li.textContent,"
            "  parts: Object.fromEntries([...li.children].map(s => [s.className || 'text', s.textContent])),"
            "  elements: li.querySelectorAll('*').length}))",
            list_id,
        )

    def feed(self) -> list[str]:
        return [row["text"] for row in self.rows("feed")]

    def contents(self, list_id: str = "feed") -> list[str]:
        return [row["parts"].get("content", "") for row in self.rows(list_id) if "content" in row["parts"]]

    def notices(self, refusals: bool = False) -> list[str]:
        wanted = "refusal" if refusals else "notice"
        return [row["text"] for row in self.rows("feed") if wanted in row["classes"].split()]
