"""Browser fixtures: headless Debian chromium through Playwright, and the shared deployment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, sync_playwright

from tests.support.deployment_fixtures import dagster_deployment

__all__ = ["artifacts", "browser", "dagster_deployment", "page"]

ROOT = Path(__file__).parents[2]
CHROMIUM = Path(os.environ.get("MARIGOLD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 900}


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """test-artifacts/ui/ at the repository root (gitignored): screenshots of every check."""
    folder = ROOT / "test-artifacts" / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserContext]:
    """Debian's chromium (apt-get install chromium), headless, with a fresh user-data-dir."""
    if not CHROMIUM.is_file():
        pytest.fail(
            f"no chromium at {CHROMIUM}: install Debian's (`apt-get install -y chromium`) or "
            "set MARIGOLD_CHROMIUM to a Chromium binary"
        )
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium_profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport=VIEWPORT,
        )
        context.set_default_timeout(60_000)
        context.set_default_navigation_timeout(120_000)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser: BrowserContext) -> Iterator[Page]:
    tab = browser.new_page()
    try:
        yield tab
    finally:
        tab.close()
