"""The registry's admin in a real browser: log in, read runs with metrics, roll back, see audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.helpers import wait_until

pytestmark = pytest.mark.slow
PASSWORD = "correct horse battery staple"


def record_versions() -> list[str]:
    """Two trained versions, the second one champion with the first as previous."""
    from web.registry import services
    from web.registry.models import ModelVersion, TrainingRun

    made = []
    for index, macro_f1 in enumerate((0.8123, 0.8456)):
        created = datetime(2026, 11, 20, tzinfo=UTC) + timedelta(hours=index)
        version = f"{created:%Y%m%dT%H%M%S%f}Z-0000000{index}"
        run = TrainingRun.objects.create(
            id=f"run-{index}",
            status="succeeded",
            created_at=created,
            finished_at=created,
            rows=900,
            metrics={"accuracy": 0.9, "macro_f1": macro_f1},
        )
        ModelVersion.objects.create(
            version=version,
            run=run,
            created_at=created,
            rows=900,
            labels=["a", "b"],
            metrics=run.metrics,
            fingerprint={},
            sha256={},
            library_versions={},
        )
        services.move_alias(
            alias="champion", version=version, reason="trained", actor=services.Actor("worker")
        )
        made.append(version)
    return made


def test_an_admin_logs_in_sees_runs_rolls_back_and_finds_the_audit_row(
    browser: webdriver.Chrome, browser_web: str, transactional_db: Any
) -> None:
    from django.contrib.auth.models import User

    from web.registry.models import Alias

    User.objects.create_superuser("alice", "alice@example.com", PASSWORD)
    first, second = record_versions()
    web = browser_web

    browser.get(f"{web}/admin/login/")
    browser.find_element(By.NAME, "username").send_keys("alice")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    # The click only starts the navigation: wait for the page it leads to.
    wait_until(lambda: "/admin/login/" not in browser.current_url, timeout=10, what="logged in")
    assert "Log out" in browser.page_source or "logout" in browser.page_source

    browser.get(f"{web}/admin/registry/trainingrun/")
    runs = browser.find_element(By.ID, "result_list").text
    assert "run-0" in runs and "run-1" in runs
    assert "0.8123" in runs and "0.8456" in runs  # macro-F1 of each run

    browser.get(f"{web}/admin/registry/alias/")
    row = next(
        r
        for r in browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
        if "champion" in r.text.lower()
    )
    assert second in row.text and "default" in row.text  # the alias's model name
    row.find_element(By.CSS_SELECTOR, "input.action-select").click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("rollback_champion")
    browser.find_element(By.NAME, "reason").send_keys("bad release in the browser")
    browser.find_element(By.NAME, "index").click()
    messages = wait_until(
        lambda: browser.find_elements(By.CSS_SELECTOR, "ul.messagelist"),
        timeout=10,
        what="the rollback's message",
    )
    assert "Rolled back" in messages[0].text
    assert Alias.objects.get(name="champion").version_id == first

    browser.get(f"{web}/admin/registry/auditevent/")
    newest = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")[0].text
    assert "admin:alice" in newest and "alias.rollback" in newest
    assert "bad release in the browser" in newest
    # History stays as it happened: no change or delete buttons for audit rows.
    assert "Add audit event" not in browser.page_source
