"""readiness.html in a real headless browser (Debian's chromium, driven by selenium)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from reporting_factories import mixed_items, run_result

from conformance.model import Status
from conformance.reporting import write_reports

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = Path(__file__).resolve().parents[2] / "reports" / "screenshots" / "readiness.png"

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver on PATH (apt-get install chromium chromium-driver)",
)

if CHROMIUM is not None and CHROMEDRIVER is not None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",  # /dev/shm is small in containers; chromium crashes on it
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1280,1600",
    ):
        options.add_argument(flag)
    # An explicit driver path keeps selenium from looking for (and downloading) a driver.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _visible_ids(driver: webdriver.Chrome, status: str) -> list[str]:
    articles = driver.find_elements(By.CSS_SELECTOR, f"article.item[data-status='{status}']")
    return [a.get_attribute("id") or "" for a in articles if a.is_displayed()]


def test_report_renders_filters_and_is_screenshotted(
    tmp_path: Path, browser: webdriver.Chrome
) -> None:
    run_dir = write_reports(run_result(mixed_items()), tmp_path / "reports")

    browser.get((run_dir / "readiness.html").as_uri())
    verdict = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "verdict"))

    assert verdict.is_displayed()
    assert verdict.text == "NOT READY"
    # NOT READY opens on what needs attention: passed, skipped, not applicable are hidden.
    assert browser.find_element(By.ID, "shown").text == "showing 6 of 11 items"
    assert _visible_ids(browser, "passed") == []
    assert _visible_ids(browser, "blocked") == ["item-LIVE-AUTH-ALG-NONE"]
    assert not browser.find_element(By.ID, "filter-status-passed").is_selected()
    # Each gating item is listed with its status and its finding, not its title alone.
    gating = browser.find_elements(By.CSS_SELECTOR, "#blockers li")
    blocked = next(li for li in gating if "LIVE-AUTH-ALG-NONE" in li.text)
    assert blocked.find_element(By.CSS_SELECTOR, ".badge").text == "blocked"
    assert "blocked by LIVE-TLS-CHAIN: not judged: the certificate" in blocked.text
    failed = next(li for li in gating if "NET-HTTPS-ONLY" in li.text)
    assert failed.find_element(By.CSS_SELECTOR, ".badge").text == "failed"
    assert "NET-HTTPS-ONLY is failed" in failed.text
    browser.find_element(By.ID, "show-all").click()
    assert browser.find_element(By.ID, "shown").text == "showing 11 of 11 items"
    sections = browser.find_elements(By.CSS_SELECTOR, "section.guide-section")
    assert [s.get_attribute("data-section") for s in sections] == [
        "3.1", "3.2", "4.1", "6", "7.1", "10.2"
    ]
    # Nothing was fetched: the page is one self-contained file.
    assert browser.execute_script("return performance.getEntriesByType('resource').length") == 0
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(SCREENSHOT))
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    assert len(_visible_ids(browser, "passed")) == 3
    browser.find_element(By.ID, "filter-status-passed").click()

    assert _visible_ids(browser, "passed") == []
    # Guide order: section 3.1 comes before 10.2.
    assert _visible_ids(browser, "failed") == [
        "item-ENV-JWT-SECRET-STRENGTH", "item-NET-HTTPS-ONLY"
    ]
    assert browser.find_element(By.ID, "shown").text == "showing 8 of 11 items"

    # Evidence is folded away until its <details> is opened.
    item = browser.find_element(By.ID, "item-NET-HTTPS-ONLY")
    curl = item.find_element(By.CSS_SELECTOR, "pre.curl")
    assert not curl.is_displayed()
    item.find_element(By.CSS_SELECTOR, "details.more > summary").click()
    assert curl.is_displayed()
    assert "Authorization: ***" in curl.text


def test_a_ready_report_opens_on_every_item(tmp_path: Path, browser: webdriver.Chrome) -> None:
    passing = [i for i in mixed_items() if i.status in (Status.PASSED, Status.NOT_APPLICABLE)]
    run_dir = write_reports(run_result(passing), tmp_path / "reports")
    browser.get((run_dir / "readiness.html").as_uri())
    verdict = WebDriverWait(browser, 30).until(lambda d: d.find_element(By.ID, "verdict"))
    assert verdict.text == "READY"
    shown = browser.find_element(By.ID, "shown").text
    assert shown == f"showing {len(passing)} of {len(passing)} items"
