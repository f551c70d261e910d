"""The chat page (web/) driven in Debian's headless Chromium through Selenium and chromedriver.

Used by the browser tests and by `make screenshot`. Chromium and chromedriver come from Debian
(`apt-get install chromium chromium-driver`, as .ci/run does); nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
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
    """A new headless Chromium with an empty profile of its own, removed by its quit()."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chat-page-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    quit_browser = driver.quit

    def quit_and_remove_profile() -> None:
        try:
            quit_browser()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_remove_profile
    return driver


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

    def text_of(self, element_id: str) -> str:
        return self.driver.execute_script("return document.getElementById(arguments[0]).textContent", element_id)

    def status(self) -> str:
        return self.text_of("status")

    def wait_until(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        """Wait for what the page shows. 30 s: an action of the page is a chain of frames (a join
        is answered, then its catch-up), and a frame whose reply was lost goes again after the
        client's requestTimeout, 10 s; on CI's loaded start (four stacks and browsers at once) a
        20 s wait for a join failed with nothing logged at WARNING or above."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"timed out; status {self.status()!r}, title {self.title()!r}, "
                    f"conversations {self.text_of('conversations-status')!r}, feed {self.feed()!r}"
                )
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

    # --- acting -----------------------------------------------------------------------------

    def send(self, text: str) -> None:
        """Send to the conversation shown."""
        self.type_into("text", text)
        self.element("send").click()

    def join(self, channel: str) -> None:
        """Join a channel; the page shows it once joined."""
        self.type_into("channel-name", channel)
        self.element("join").click()
        self.wait_until(lambda: self.title() == f"#{channel}")

    def leave(self, channel: str) -> None:
        self._click_conversation_button(f"channel:{channel}", "leave")

    def open_direct(self, user: str) -> None:
        self.type_into("dm-with", user)
        self.element("open-dm").click()
        self.wait_until(lambda: self.title() == f"@{user}")

    def show(self, key: str) -> None:
        """Switch to a conversation of the list: "room", "channel:<name>" or "dm:<user>"."""
        self._click_conversation_button(key, "open")
        self.wait_until(lambda: self.current() == key)

    def remove(self, key: str) -> None:
        """Remove a direct conversation from the list."""
        self._click_conversation_button(key, "remove")

    def older(self) -> None:
        self.wait_until(lambda: not self.element("older").get_property("disabled"))
        self.element("older").click()

    def _click_conversation_button(self, key: str, kind: str) -> None:
        """Click a button of the conversation list. The page draws the list again whenever it
        changes (a read elsewhere, the service's list after each sync): a button found just
        before that is gone, and is found again."""
        from selenium.common.exceptions import StaleElementReferenceException

        for attempt in range(5):
            try:
                self._conversation_button(key, kind).click()
                return
            except StaleElementReferenceException:
                if attempt == 4:
                    raise

    def _conversation_button(self, key: str, kind: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, f'#conversations li[data-key="{key}"] button.{kind}')

    # --- what it shows ------------------------------------------------------------------------

    def title(self) -> str:
        return self.text_of("conversation-title")

    def conversations(self) -> list[dict[str, Any]]:
        """The conversation list: key, label, whether it is the one shown, unread count, and for a
        direct conversation whether the other user is online (no key: not known)."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#conversations li')].map(li => ({"
            "  key: li.dataset.key, current: li.classList.contains('current'),"
            "  label: li.querySelector('button.open').firstChild.textContent,"
            "  unread: Number(li.querySelector('.unread')?.textContent ?? 0),"
            "  ...(li.querySelector('.online-dot, .offline-dot') ? {online: Boolean(li.querySelector('.online-dot'))} : {})}))"
        )

    def typing(self) -> str:
        """Who is typing in the conversation shown, as the page says it."""
        return self.text_of("typing")

    def current(self) -> str | None:
        return next((c["key"] for c in self.conversations() if c["current"]), None)

    def history_status(self) -> str:
        return self.text_of("history-status")

    def rows(self, list_id: str = "feed") -> list[dict[str, Any]]:
        """Each row of the feed: its text parts and classes, seq and source, as the page shows them."""
        return self.driver.execute_script(
            "return [...document.getElementById(arguments[0]).children].map(li => ({"
            "  classes: li.className, text: li.textContent, seq: li.dataset.seq ? Number(li.dataset.seq) : null,"
            "  source: li.dataset.source ?? null,"
            "  parts: Object.fromEntries([...li.children].map(s => [s.className || 'text', s.textContent])),"
            "  elements: li.querySelectorAll('*').length}))",
            list_id,
        )

    def feed(self) -> list[str]:
        return [row["text"] for row in self.rows("feed")]

    def contents(self) -> list[str]:
        """The content of every message shown, in the order shown."""
        return [row["parts"]["content"] for row in self.rows("feed") if "content" in row["parts"]]

    def seqs(self) -> list[int]:
        return [row["seq"] for row in self.rows("feed") if row["seq"] is not None]

    def marked_new(self) -> list[str]:
        """The conversations the list marks as having messages the page has not shown yet."""
        return self.driver.execute_script(
            "return [...document.querySelectorAll('#conversations li')].filter(li => li.querySelector('.new')).map(li => li.dataset.key)"
        )

    def online(self) -> dict[str, Any]:
        """Who is online in the channel shown: the count shown, the users listed (and those
        shown as leaving), each entry's text, the note."""
        return self.driver.execute_script(
            "const count = document.getElementById('online-count').textContent;"
            "return {count: count === '' ? null : Number(count),"
            "  users: [...document.querySelectorAll('#online li')].map(li => li.dataset.user),"
            "  leaving: [...document.querySelectorAll('#online li.leaving')].map(li => li.dataset.user),"
            "  texts: [...document.querySelectorAll('#online li')].map(li => li.textContent),"
            "  note: document.getElementById('online-status').textContent}"
        )

    def expiry_notice(self) -> str | None:
        """The token expiry notice, if it is shown."""
        return self.driver.execute_script(
            "return document.getElementById('expiry').hidden ? null : document.getElementById('expiry-text').textContent"
        )

    def renew(self, token: str) -> None:
        """Paste a token into the expiry notice's field and press Renew."""
        self.type_into("renew-token", token)
        self.element("renew").click()

    def notices(self, refusals: bool = False) -> list[str]:
        wanted = "refusal" if refusals else "notice"
        return [row["text"] for row in self.rows("feed") if wanted in row["classes"].split()]
