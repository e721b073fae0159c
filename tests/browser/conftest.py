"""A real headless Chromium (Debian's chromium + chromium-driver) and real servers to point it at.

The driver is /usr/bin/chromedriver, named explicitly: Selenium Manager, which would otherwise try
to download a driver and a browser, is made to fail loudly if anything calls it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.selenium_manager import SeleniumManager

REPO_ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",  # we run as root in CI
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _refuse_selenium_manager(*args: object, **kwargs: object) -> dict[str, str]:
    raise AssertionError("Selenium Manager was called: it would download a driver")


@pytest.fixture(scope="session")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    """One headless Chromium for the session (it takes seconds to start), through the system's
    chromedriver; tests get it through `browser`, which clears what the last test left."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.is_file()]
    assert not missing, f"{missing} missing: apt-get install -y chromium chromium-driver"
    profile = tmp_path_factory.mktemp("chromium-profile")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", _refuse_selenium_manager)
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
            options.add_argument(flag)
        driver = webdriver.Chrome(
            service=Service(executable_path=str(CHROMEDRIVER)), options=options
        )
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chromium: webdriver.Chrome) -> webdriver.Chrome:
    """The session's Chromium as a fresh profile would be: a blank page, no cookies (cookies
    are per host, not per port: a login to one test's server would reach the next one's), no
    storage or cache, and no console messages of an earlier test."""
    chromium.get("about:blank")
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})
    chromium.execute_cdp_cmd("Network.clearBrowserCache", {})
    chromium.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": "*", "storageTypes": "all"})
    chromium.get_log("browser")  # read and so dropped: `failed_resources` sees this test's only
    return chromium


@pytest.fixture(scope="session")
def browser_web(web_without_algorithm: str) -> str:
    """The web service every page the browser tests open comes from: the session's, on the test
    database (what a test commits, its tokens and users, is flushed after it); no algorithm
    service behind it."""
    return web_without_algorithm
