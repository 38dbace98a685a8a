"""The console's browser tests share one Chromium (Debian's /usr/bin/chromium, never a
downloaded one), a fresh page per test, screenshots in ``test-artifacts/console/`` (git-ignored)
and the sign-in steps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
PASSWORD = "console-test-pass-Rq7!xv"

NO_CHROMIUM = "no Chromium at /usr/bin/chromium (apt-get install chromium)"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every browser test is skipped, with the reason, where there is no Chromium."""
    if CHROMIUM.exists():
        return
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.skip(reason=NO_CHROMIUM))


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 800})
    yield context.new_page()
    context.close()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def registered(live_server: Any) -> dict[str, Any]:
    """A user signed up through /auth/register (with a tenant of its own)."""
    email = f"console-{uuid.uuid4().hex[:10]}@example.com"
    r = httpx.post(live_server.url + "/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    return {"email": email, **r.json()}


def sign_in_with_token(page: Any, live_server: Any, token: str) -> None:
    page.goto(live_server.url + "/console/login")
    page.fill("input[name=token]", token)
    with page.expect_navigation():
        page.click("button:has-text('Sign in with token')")
