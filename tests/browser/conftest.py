"""Browser fixtures: Playwright's sync API driving Debian's Chromium against the live server.

Nothing can be downloaded here, so there is no `playwright install`: the browser
is the system's /usr/bin/chromium, which `make test` installs. A missing or
broken Chromium fails these tests loudly; they never skip.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.conftest import ALL_QUEUES, ROOT, BeatProcess, WorkerProcess, worker_environment

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = ROOT / "var" / "screenshots"
OPERATOR = ("ops", "ops-password-1")
TIMEOUT_MS = 20_000


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "browser: drives a real Chromium through Playwright")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the module, closed (with Playwright's event loop) after it."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium", pytrace=False)
    # Playwright's sync API keeps an asyncio loop running in this thread, so Django
    # takes every ORM call of the test as one from async code and refuses it
    # (microsoft/playwright-python#439, microsoft/playwright-pytest#29). The test's
    # code is synchronous all the same; module scope stops the loop before other tests.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        expect.set_options(timeout=TIMEOUT_MS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def celery_worker(django_db_setup: None) -> Iterator[WorkerProcess]:
    """A real Celery worker and beat for the whole module, on the test database and broker.

    Starting them costs seconds (more on a busy machine), so the module's tests
    share them, as the saga tests share theirs; each test's database is flushed
    while they idle. Refunds may fail twice before a saga's compensation is left
    failed, so an operator has a failed compensation to retry (tok_refundFlaky).
    """
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()
    env = {**worker_environment(), "SAGA_COMPENSATION_MAX_ATTEMPTS": "2"}
    processes = [WorkerProcess(env, 2, ALL_QUEUES, wait=False), BeatProcess(env)]
    try:
        for process in processes:
            process.wait_ready()
        yield processes[0]
    finally:
        for process in processes:
            process.kill()
        broker.flushdb()


@pytest.fixture
def page(browser: Browser, live_server, transactional_db: None) -> Iterator[Page]:
    """A fresh browser tab (no cookies) on the live server, closed before the database is wiped."""
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def shoot(page: Page, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """Save a full-page screenshot of the current step under var/screenshots/<test>/."""
    folder = SCREENSHOTS / _slug(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    taken: list[Path] = []

    def take(step: str) -> Path:
        path = folder / f"{len(taken) + 1:02d}-{_slug(step)}.png"
        page.screenshot(path=path, full_page=True)
        taken.append(path)
        return path

    return take


def _slug(text: str) -> str:
    return re.sub(r"[^\w.]+", "-", text).strip("-")


@pytest.fixture
def operator(transactional_db: None, django_user_model) -> tuple[str, str]:
    """A superuser's username and password."""
    username, password = OPERATOR
    django_user_model.objects.create_superuser(username, f"{username}@example.com", password)
    return OPERATOR


def log_in(page: Page, username: str, password: str) -> None:
    """Log in through the admin's login form, as a person would."""
    page.goto("/admin/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Site administration")).to_be_visible()


@pytest.fixture
def admin_page(page: Page, operator: tuple[str, str]) -> Page:
    """A tab where the operator is logged into the admin."""
    log_in(page, *operator)
    return page
