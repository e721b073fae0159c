"""Swagger UI pages in a real browser: every static file loads, every operation shows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.helpers import wait_until

pytestmark = pytest.mark.slow


def listed_operations(browser: webdriver.Chrome) -> set[str]:
    """'METHOD /path' for every operation Swagger UI rendered (waits until it rendered some)."""

    def rendered() -> set[str]:
        blocks = browser.find_elements(By.CSS_SELECTOR, ".opblock-summary")
        return {
            " ".join(
                (
                    block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text,
                    block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute(
                        "data-path"
                    )
                    or "",
                )
            )
            for block in blocks
        }

    return wait_until(rendered, timeout=30, interval=0.2, what="Swagger UI operations")


def failed_resources(browser: webdriver.Chrome, *, ignore: str = "\0") -> list[str]:
    """Resources the page asked for that did not load (the browser's console errors)."""
    return [
        entry["message"]
        for entry in browser.get_log("browser")
        if entry["level"] == "SEVERE" and ignore not in entry["message"]
    ]


def test_web_api_docs_list_every_operation(browser: webdriver.Chrome, browser_web: str) -> None:
    browser.get(f"{browser_web}/api/docs/")
    operations = listed_operations(browser)
    assert {
        "GET /api/data/",
        "POST /api/data/",
        "GET /api/data/{id}/",
        "DELETE /api/data/{id}/",
        "POST /api/predict/",
        "POST /api/train/",
        "GET /api/train/{job_id}/",
        "GET /health/live",
        "GET /health/ready",
    } <= operations, operations
    assert failed_resources(browser) == []


def test_algorithm_docs_list_every_operation(
    browser: webdriver.Chrome, start_service: Callable[..., str], tmp_path: Path, redis_db_url: str
) -> None:
    algorithm = start_service(
        "algorithm", REDIS_URL=redis_db_url, MODEL_DIR=str(tmp_path / "models")
    )
    browser.get(f"{algorithm}/docs")
    operations = listed_operations(browser)
    assert {"POST /predict", "POST /train", "GET /health/live"} <= operations, operations
    # The page names no icon, so the browser's own /favicon.ico guess gets a 404 (cosmetic).
    assert failed_resources(browser, ignore="/favicon.ico") == []


def test_web_api_docs_authorize_with_a_token_then_call_an_operation(
    browser: webdriver.Chrome, browser_web: str, transactional_db: Any, tokens: dict[str, str]
) -> None:
    """Swagger UI's Authorize button: without it the call is 401, with a reader token 200."""
    browser.get(f"{browser_web}/api/docs/")
    listed_operations(browser)
    operation = browser.find_element(
        By.XPATH, "//*[contains(@class,'opblock-get')][.//*[@data-path='/api/data/']]"
    )
    operation.find_element(By.CSS_SELECTOR, ".opblock-summary-control").click()
    wait_until(lambda: operation.find_elements(By.CSS_SELECTOR, ".try-out__btn"), timeout=10)
    operation.find_element(By.CSS_SELECTOR, ".try-out__btn").click()
    assert execute_and_read_status(browser, operation) == "401"

    browser.find_element(By.CSS_SELECTOR, ".btn.authorize").click()
    field = wait_until(lambda: browser.find_elements(By.ID, "auth-bearer-value"), timeout=10)[0]
    field.send_keys(tokens["reader"])
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .btn.modal-btn.authorize").click()
    browser.find_element(By.CSS_SELECTOR, ".auth-btn-wrapper .btn-done").click()
    assert execute_and_read_status(browser, operation) == "200"


def execute_and_read_status(browser: webdriver.Chrome, operation: WebElement) -> str:
    """Press Execute on an expanded operation; the status Swagger UI shows for the answer."""
    for old in operation.find_elements(By.CSS_SELECTOR, ".btn-clear"):
        old.click()  # forget the previous answer, so the next one is the one read
    operation.find_element(By.CSS_SELECTOR, ".execute").click()

    def status() -> str | None:
        cells = operation.find_elements(
            By.CSS_SELECTOR, ".live-responses-table .response .response-col_status"
        )
        return cells[0].text.strip() if cells and cells[0].text.strip() else None

    return wait_until(status, timeout=30, interval=0.2, what="Swagger UI shows the answer")
