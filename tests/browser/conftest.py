"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the whole app on devhost.

The app is the e2e suite's (tests/e2e/conftest.py: devhost, PostgreSQL, Azurite, the local test site). The
browser is `/usr/bin/chromium` (`make tools` installs it); without it every test here is skipped with a
warning and a printed notice, never silently. Every page records the Content-Security-Policy violations it
sees and its console, so a test can assert that the dashboard runs under its CSP.
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, ViewportSize, expect, sync_playwright

from tests.devhost.conftest import REPO
from tests.e2e import conftest as e2e
from tests.e2e.conftest import Trawl

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}
ARTIFACTS = REPO / "test-artifacts"
SCREENSHOTS = REPO / "docs" / "screenshots"
# Recorded in the page before any of its scripts run: the browser fires this event for every blocked load or
# inline script/style.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.effectiveDirective} blocked ${event.blockedURI || "inline"}`);
});
"""


# The e2e suite's app, database and test site, as fixtures of this folder too (pytest finds fixtures by name here).
site = e2e.site
module_db_url = e2e.module_db_url
trawl = e2e.trawl


class BrowserUnavailable(UserWarning):
    """The dashboard's browser tests cannot run on this machine."""


@dataclass
class Dashboard:
    """A browser tab on the dashboard of one Trawl instance, with what its console said."""

    page: Page
    trawl: Trawl
    console: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"{self.trawl.host.base_url}/api/app/"

    def open(self, fragment: str = "") -> None:
        self.page.goto(self.url + fragment)

    def sign_in(self, user: str, roles: tuple[str, ...] = ("Jobs.Read", "Jobs.Submit")) -> None:
        """Sign in on the dev sign-in page as `user` with exactly `roles`, and wait for the jobs list."""
        self.open("#/signin")
        self.page.get_by_label("User name").fill(user)
        for role in ("Jobs.Read", "Jobs.Submit", "Jobs.Admin"):
            self.page.get_by_role("checkbox", name=role).set_checked(role in roles)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", level=1, name="Jobs")).to_be_visible()

    def csp_violations(self) -> list[str]:
        recorded: list[str] = self.page.evaluate("window.__cspViolations")
        return recorded + [line for line in self.console if "Content Security Policy" in line]

    def screenshot(self, name: str, readme: bool = False) -> Path:
        """A full-page screenshot in test-artifacts/ (git-ignored); with TRAWL_SAVE_SCREENSHOTS=1 the README's
        (`readme`) also in docs/screenshots/."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        if readme and os.environ.get("TRAWL_SAVE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            (SCREENSHOTS / f"{name}.png").write_bytes(path.read_bytes())
        return path


# Module-scoped, not session-scoped: Playwright's sync API keeps an asyncio loop running on the main thread while
# it is started, and every later test that calls asyncio.run() in this process would fail.
@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not CHROMIUM.exists():
        notice = (f"{CHROMIUM} is missing: the dashboard's browser tests are SKIPPED. Install Debian's chromium "
                  "(`make tools` does) to run them.")
        print(f"\n*** {notice} ***\n")
        warnings.warn(notice, BrowserUnavailable, stacklevel=1)
        pytest.skip(notice)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
    yield browser
    browser.close()


@pytest.fixture
def dashboard(browser: Browser, trawl: Trawl) -> Iterator[Dashboard]:
    """A fresh browser context (no session, no cache) at desktop size on this module's Trawl."""
    context = browser.new_context(viewport=DESKTOP)
    context.add_init_script(RECORD_CSP_VIOLATIONS)
    page = context.new_page()
    page.set_default_timeout(30_000)
    opened = Dashboard(page, trawl)

    def record(message: ConsoleMessage) -> None:
        opened.console.append(f"{message.type}: {message.text}")

    page.on("console", record)
    page.on("pageerror", lambda error: opened.console.append(f"pageerror: {error}"))
    yield opened
    context.close()
